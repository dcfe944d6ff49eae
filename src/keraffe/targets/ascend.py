"""Huawei Ascend ATC (Caffe front end): the rules keraffe checks and the rewrites it applies.

Read from Huawei's CANN documentation (Supported Caffe Operators, ATC
Instructions; CANN 8.0.0 unless a rule says otherwise) and the Atlas 200 DK
ATC Tool Instructions. Caffe is a front end of Atlas inference (310P-class),
Atlas 200I/500 A2 and Atlas training products; Huawei no longer supports it
on Atlas A2/A3 and Ascend 950 (A-7), which no net can fix.
"""

from __future__ import annotations

from keraffe.caffe.releases import CAFFE_1_0_TYPES
from keraffe.targets.profile import ADVICE, Profile, Rule
from keraffe.targets.rules import (conv_geometry, depthwise_fix, finding, outside, pool_geometry,
                                   pool_method, spatial_pairs, swallows_crops_only, types_outside)

#: Huawei's list of Caffe operators (CANN 8.0.0 operatorlist_00098), in Caffe's type spellings (the list
#: writes INPUT, scale, PRelu, Relu6; ReLU covers its LeakyReLU/RReLU entries).
LAYER_TYPES = frozenset({
    "AbsVal", "ArgMax", "Atan2", "BatchedMatMul", "BatchNorm", "Bias", "BNLL", "ClassCal", "Clip", "Concat",
    "Convolution", "Crop", "Deconvolution", "DeconvolutionV1", "DFMBPSROIAlign", "Eltwise", "ELU", "Exp",
    "FilterGreaterThan", "Flatten", "FlownetResample", "FSRDetectionOutput", "L2Normalize", "Interp", "Log", "LRN",
    "LSTM", "InnerProduct", "Input", "MVN", "Normalize", "PassThrough", "Permute", "ROIPooling", "Pooling", "Power",
    "PriorBox", "PReLU", "Proposal", "PSROIPooling", "RCNNProposal", "Reduction", "ReLU6", "ReLU", "LeakyReLU",
    "RReLU", "Reshape", "Reverse", "RNN", "ROIAlign", "RPNProposalSSD", "Scale", "ScatterNdV2", "ShuffleChannel",
    "Similar", "Sigmoid", "Slice", "Softmax", "SpatialTransformer", "Split", "SPP", "SReLU", "SSDDetectionOutput",
    "TanH", "Threshold", "Tile", "Upsample", "Yolo", "Yolo3D", "Yolo3dNMS", "YoloNms", "YoloV2DetectionOutput",
    "YoloV3DetectionOutput", "Yolov5FourInputDecodeBox",
})
DEPTHWISE_ALIASES = frozenset({"ConvolutionDepthwise", "DepthwiseConvolution", "DepthwiseConv"})
#: The YOLO forks' detection heads; ATC wants Yolo x3 + YoloV3DetectionOutput (or Yolo + YoloV2DetectionOutput).
FORK_YOLO_HEADS = frozenset({"Yolov3DetectionOutput", "YoloDetectionOutput", "Region"})

MAX_SIZE = 4096
CHANNEL_BLOCK = 16


def _layer_types(view):
    for node in types_outside(view, LAYER_TYPES, DEPTHWISE_ALIASES | FORK_YOLO_HEADS):
        fix = False
        if node.type == "Dropout":
            fix = "dropout_as_identity"
        elif node.type == "Silence" and swallows_crops_only(view, node):
            fix = "slice_as_crop"
        yield finding(node, f"type {node.type} is not in Huawei's list of Caffe operators",
                      fix=fix or None, fixable=bool(fix))


def _fork_fields(view):
    for node in view.layers("Convolution", "Deconvolution", "Pooling"):
        param = node.param.pooling_param if node.type == "Pooling" else node.param.convolution_param
        sides = [f for f in ("pad_l", "pad_r", "pad_t", "pad_b") if param.HasField(f)]
        if sides:
            yield finding(node, f"{', '.join(sides)} are a fork's fields (Synopsys); the schema of BVLC 9b89154 "
                                "has pad, pad_h and pad_w only")


def _spatial_size(view):
    for node in view.layers():
        for tensor in node.outputs:
            shape = view.shape(tensor)
            if shape is not None and len(shape) == 4 and (shape[2] > MAX_SIZE or shape[3] > MAX_SIZE):
                yield finding(node, f"blob '{tensor.blob}' is {shape[2]}x{shape[3]} (H x W); at most {MAX_SIZE}")


def _rank(view):
    for node in view.layers():
        for tensor in node.outputs:
            shape = view.shape(tensor)
            if shape is not None and len(shape) > 4:
                yield finding(node, f"blob '{tensor.blob}' has {len(shape)} axes {shape}; at most 4")


def _weights_file(view):
    if view.weights is None:
        return
    for node in view.layers():
        stored = view.weights.layers.get(node.name)
        if stored is not None and stored.type and stored.type != node.type:
            yield finding(node, f"the caffemodel's layer '{node.name}' has type {stored.type}, the prototxt's "
                                f"{node.type}; names and types must match, case included")


def _depthwise(view):
    for node in view.layers(*DEPTHWISE_ALIASES):
        yield finding(node, f"{node.type} must be written as Convolution with group = num_output = input channels",
                      **depthwise_fix(node))


def _conv_filter(view):
    for node in view.layers("Convolution"):
        g = conv_geometry(view, node)
        if g is not None and any(outside(k, 1, 255) for k in g.kernel):
            yield finding(node, f"filter {spatial_pairs(g.kernel)}; each side must be 1-255")


def _deconv_stride(view):
    for node in view.layers("Deconvolution"):
        g = conv_geometry(view, node)
        if g is not None and len(g.stride) == 2 and not 1 <= g.stride[0] * g.stride[1] < 256:
            yield finding(node, f"stride {spatial_pairs(g.stride)}: stride_h * stride_w must be below 256")


def _pool_method(view):
    for node in view.layers("Pooling"):
        method = pool_method(node)
        if method not in ("MAX", "AVE"):
            yield finding(node, f"pool {method}; only MAX and AVE")


def _pool_window(view):
    for node in view.layers("Pooling"):
        g = pool_geometry(view, node)
        if g is None or g.global_pooling:
            continue
        problems = []
        if any(outside(k, 1, 255) for k in g.kernel):
            problems.append(f"kernel {spatial_pairs(g.kernel)} (each side 1-255)")
        if any(outside(s, 1, 63) or s > 2 * k for s, k in zip(g.stride, g.kernel)):
            problems.append(f"stride {spatial_pairs(g.stride)} (each 1-63 and at most twice the kernel)")
        if any(p >= k for p, k in zip(g.pad_begin + g.pad_end, g.kernel + g.kernel)):
            problems.append(f"pad {spatial_pairs(g.pad_begin)} (below the kernel)")
        if problems:
            yield finding(node, "; ".join(problems))


def _inner_product(view):
    for node in view.layers("InnerProduct"):
        param = node.param.inner_product_param
        problems = []
        if param.num_output > 32768:
            problems.append(f"num_output {param.num_output} (at most 32768)")
        if param.axis != 1:
            problems.append(f"axis {param.axis} (must be 1)")
        if problems:
            yield finding(node, "; ".join(problems))


def _concat(view):
    for node in view.layers("Concat"):
        if len(node.inputs) > 16:
            yield finding(node, f"{len(node.inputs)} inputs; at most 16")


def _batchnorm(view):
    for node in view.layers("BatchNorm"):
        param = node.param.batch_norm_param
        if param.HasField("use_global_stats") and not param.use_global_stats:
            yield finding(node, "use_global_stats is false (batch statistics); ATC needs the stored ones")


def _upsample(view):
    from keraffe.passes.upsample_stride_spelling import needs_stride_spelling

    for node in view.layers("Upsample"):
        if needs_stride_spelling(node.param):
            scale = node.param.upsample_param.scale
            yield finding(node, f"written scale: {scale}; ATC reads scale as a factor on the values and wants "
                                f"scale: 1 stride: {scale}")


def _yolo(view):
    for node in view.layers(*FORK_YOLO_HEADS):
        yield finding(node, f"{node.type} is a YOLO fork's head; ATC needs three Yolo layers (1 bottom, 3 tops each) "
                            "and a YoloV3DetectionOutput (10 bottoms with img_info, 2 tops) instead")
    for node in view.layers("Yolo"):
        if len(node.inputs) != 1 or len(node.outputs) != 3:
            yield finding(node, f"{len(node.inputs)} bottom(s) and {len(node.outputs)} top(s); Yolo takes 1 and "
                                "gives 3 (coords, obj, classes)")
    for node in view.layers("YoloV3DetectionOutput"):
        if len(node.inputs) != 10 or len(node.outputs) != 2:
            yield finding(node, f"{len(node.inputs)} bottom(s) and {len(node.outputs)} top(s); it takes 10 (three "
                                "coords, obj and classes, then img_info) and gives 2")


def _channel_block(view):
    for node in view.layers("Convolution", "Deconvolution", "InnerProduct"):
        top = view.top(node)
        channels = top[1] if top is not None and len(top) >= 2 else None
        if channels is not None and channels % CHANNEL_BLOCK:
            yield finding(node, f"{channels} output channels: the NC1HWC0 layout pads them to "
                                f"{-(-channels // CHANNEL_BLOCK) * CHANNEL_BLOCK} (C0 = {CHANNEL_BLOCK} for FP16, 32 "
                                "for INT8)")


HW_CAFFEOPS = "HW-CAFFEOPS"
RULES = (
    Rule("A-28", "every layer", "Only the Caffe operators Huawei lists (Dropout, Silence, Embed, Parameter, Swish, "
         "HardSigmoid are not)", "HW-CAFFEOPS 00098", "V", _layer_types,
         remedy="none automatic for this type: express it with listed layers (Dropout and crop Silences keraffe "
         "rewrites itself)"),
    Rule("A-1", "Convolution, Deconvolution, Pooling", "Operators of BVLC caffe-master commit "
         "9b891540183ddc834a02b2bd81b31afae71b2153: fork-only fields do not parse",
         "HW-CAFFEOPS 概述说明 operatorlist_00099 (CANN 8.0.0/9.0.0, EN and ZH); HW-ATC \"Caffe框架算子规格\" "
         "(6.0.1 atctool_0176, 7.0.0 atlasatc_16_0198)", "V", _fork_fields,
         remedy="none automatic: make the padding symmetric (pad_h/pad_w), or pad with a layer first"),
    Rule("A-2", "every blob", "Unless an operator page says otherwise, inputs and outputs have w <= 4096 and "
         "h <= 4096", "HW-CAFFEOPS operatorlist_00099", "V", _spatial_size,
         remedy="none: feed a smaller input or tile it"),
    Rule("A-3", "every blob", "Caffe input data at most 4-D; Reshape/ExpandDims-type ops must not output 5-D",
         "HW-ATC \"Command-Line Options / 参数概览 — General Restrictions\" (CANN 8.0.0 atctool_0040, 9.0.0 "
         "atlasatc_16_0039)", "V", _rank, remedy="none: fold the extra axis into another"),
    Rule("A-5", "weights file", "Op name and op type identical (case-sensitive) in .prototxt and .caffemodel",
         "HW-ATC --framework page (CANN 9.0.0 atlasatcparam_16_0014) and CANN 8.0.0 General Restrictions", "V",
         _weights_file, remedy="none automatic: write the caffemodel from the same net (keraffe does on export)"),
    Rule("A-10", "ConvolutionDepthwise, DepthwiseConvolution", "ConvolutionDepthwise/DepthwiseConv must be "
         "rewritten as Convolution with group == num_output; names in prototxt and caffemodel still match",
         "HW-CAFFEOPS 00110 (8.0.0, 9.0.0)", "V", _depthwise, fix="depthwise_as_grouped"),
    Rule("A-11", "Convolution", "Filter_W, Filter_h in 1-255", "HW-CAFFEOPS operatorlist_0357 (8.0.RC3), 00110 "
         "(9.0.0); 6.0.1 fwoperatorlist_0013", "V", _conv_filter, remedy="none: split the kernel"),
    Rule("A-13", "Deconvolution", "1 <= stride_h * stride_w < 256", "HW-CAFFEOPS 00112 (8.0.0), operatorlist_0265 "
         "(8.0.RC2)", "V", _deconv_stride, remedy="none: upsample in steps"),
    Rule("A-14", "Pooling", "pool MAX (0) or AVE (1) only (no STOCHASTIC)", "HW-CAFFEOPS 00136 (8.0.0, 8.3.RC1, "
         "8.5.0, 9.0.0)", "V", _pool_method, remedy="none: an average that leaves padding out needs a divisor map"),
    Rule("A-15/16/17", "Pooling", "kernel_h/kernel_w 1-255; stride 1-63 and stride <= 2 * kernel; pad < kernel "
         "(non-global pooling)", "HW-CAFFEOPS 00136", "V", _pool_window, remedy="none: pool in steps"),
    Rule("A-19", "InnerProduct", "num_output <= 32768; axis must be 1", "HW-CAFFEOPS 00127 (8.0.0, 8.5.0, 9.0.0)",
         "V", _inner_product, remedy="none automatic: split the outputs over several InnerProducts and Concat them"),
    Rule("A-20", "Concat", "At most 16 bottoms", "HW-CAFFEOPS 00109 (8.0.0, 9.0.0 EN)", "V", _concat,
         fix="split_wide_concat"),
    Rule("A-24", "BatchNorm", "use_global_stats must be true; normalizes only over C (old DDK)",
         "HiLens \"Caffe Operator Boundaries\"", "V (old)", _batchnorm,
         remedy="none: a deploy net uses the stored statistics (set use_global_stats: true if that is meant)"),
    Rule("A-25", "Upsample", "YOLOv3 prototxts must change upsample_param { scale: 2 } to { scale: 1 stride: 2 } "
         "(y = scale * x[i / stride], nearest)", "HW-ATC \"Modifying YOLOv3 Prototxt\" (atlasatc_16_0048, 8.0.0 "
         "EN / 9.0.0 ZH); HW-CAFFEOPS 00167 (8.0.0 EN)", "V", _upsample, fix="upsample_stride_spelling"),
    Rule("A-26/27", "YOLO heads", "YOLOv3 needs three added Yolo layers (1 bottom, 3 tops) before "
         "YoloV3DetectionOutput (10 bottoms incl. img_info, 2 tops)", "HW-ATC atlasatc_16_0048 / _0049; "
         "HW-CAFFEOPS 00173, 00172", "V", _yolo,
         remedy="none automatic (it adds NMS and an img_info input, so outputs change): rewrite the head as in "
         "Huawei's \"Modifying YOLOv3 Prototxt\""),
    Rule("A-C0", "Convolution, Deconvolution, InnerProduct", "Channels are stored in blocks of C0 (NC1HWC0): C0 is "
         "16 for FP16, 32 for INT8; a count off the block is padded",
         "Atlas 200 DK V100R020C00 ATC Tool Instructions (Issue 01, 2021-01-29) §1 Key Terms \"Format\"; AscendCL "
         "aclFormat (CANN 8.0.RC3 aclcppdevg_03_1348); TBE \"AI Core\" (atlasopdev_10_0008)",
         "V (layout; not stated as a performance rule)", _channel_block, severity=ADVICE,
         remedy="prune to a multiple of 16 (keraffe prune --target ascend rounds to it)"),
)

PROFILE = Profile(
    name="ascend",
    title="Huawei Ascend ATC (Caffe front end)",
    versions="CANN 8.0.0 (Supported Caffe Operators, ATC Instructions), with 6.0.1-9.0.0 pages where cited",
    layer_types=LAYER_TYPES,
    rules=RULES,
    rewrites=("depthwise_as_grouped", "dropout_as_identity", "slice_as_crop", "split_wide_concat",
              "upsample_stride_spelling"),
    channel_multiple=CHANNEL_BLOCK,
    channel_note="C0 = 16 for FP16 (32 for INT8): the channel block of Ascend's NC1HWC0 layout",
    keras_export_types=(CAFFE_1_0_TYPES & LAYER_TYPES) | {"Dropout", "Silence", "Permute"},
    description="Huawei Ascend ATC: BVLC 9b89154 operators, H and W up to 4096, Huawei's Upsample spelling",
    max_concat_inputs=16,
)
