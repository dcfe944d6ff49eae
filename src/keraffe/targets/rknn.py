"""Rockchip RKNN-Toolkit2 (Caffe front end, RKNPU2): the rules keraffe checks and the rewrites it applies.

Read from the operator lists Rockchip ships in the toolkit's repositories
(RKNNToolKit2_OP_Support 1.0.0 to 2.3.2, and the V2.3.2 compiler operator
list). The limits are the NPU's: on RK3566/68/88/62/76 an operator outside
them falls back to the CPU where a CPU kernel exists (slow, but it runs); on
RK2118 and RV1103/06(B) there is (almost) no such fallback. keraffe checks
the NPU limits, and where toolkit versions disagree, the strictest, so a
clean net runs on the NPU with every toolkit version cited.
"""

from __future__ import annotations

from keraffe.caffe.releases import CAFFE_1_0_TYPES
from keraffe.targets.profile import Profile, Rule
from keraffe.targets.rules import (conv_geometry, depthwise_fix, finding, global_chain_exists,
                                   is_depthwise, outside, pool_geometry, pool_method, spatial_pairs,
                                   swallows_crops_only, types_outside)

#: The Caffe layer types Rockchip lists (RK-MD 1.3.0-2.3.2), in Caffe's spellings (the list writes bn, Lstm, PRelu,
#: Relu, Relu6; Input is every net's).
LAYER_TYPES = frozenset({
    "BatchNorm", "BN", "BNLL", "Concat", "Convolution", "ConvolutionDepthwise", "Crop", "Deconvolution", "Dropout",
    "Eltwise", "Flatten", "HardSigmoid", "InnerProduct", "Input", "LRN", "LSTM", "Normalize", "Permute", "Power",
    "Pooling", "PReLU", "Proposal", "Reduction", "ReLU", "ReLU6", "Reorg", "Reshape", "Resize", "Reverse",
    "ROIPooling", "Scale", "Sigmoid", "Slice", "Softmax", "Split", "TanH", "Tile", "Transpose", "Upsample",
})
ELEMENTWISE = ("Eltwise", "BatchNorm", "Scale", "ReLU", "Sigmoid", "TanH", "PReLU", "Pooling")
MAX_CHANNELS = 8192
MAX_HEIGHT = 8192
MAX_WIDTH = 8176
POOL_KERNEL, POOL_STRIDE, POOL_PAD = 7, 8, 7
GLOBAL_POOL_SIZE = 7


def pooling_fits(kernel, stride, input_hw, global_pooling: bool = False) -> bool:
    """What RKNN's NPU pools: kernel 1-7, stride 1-8 (R-13); a global pooling over at most 7x7 (R-14)."""
    if global_pooling:
        return max(input_hw) <= GLOBAL_POOL_SIZE
    return max(kernel) <= POOL_KERNEL and max(stride) <= POOL_STRIDE


def _layer_types(view):
    for node in types_outside(view, LAYER_TYPES):
        fix = depthwise_fix(node)
        if node.type == "Silence":
            fixable = swallows_crops_only(view, node)
            fix = {"fix": "slice_as_crop" if fixable else None, "fixable": fixable}
        yield finding(node, f"type {node.type} is not in Rockchip's list of Caffe operators", **fix)


def _convolution(view):
    for node in view.layers("Convolution", "ConvolutionDepthwise"):
        g = conv_geometry(view, node)
        if g is None or len(g.kernel) != 2:
            continue
        depthwise = node.type == "ConvolutionDepthwise" or is_depthwise(view, node)
        kernel_max, dilation_max = (8, 32) if depthwise else (31, 31)
        problems = []
        if any(outside(k, 1, kernel_max) for k in g.kernel):
            problems.append(f"kernel {spatial_pairs(g.kernel)} (1-{kernel_max})")
        if any(outside(s, 1, 7) for s in g.stride):
            problems.append(f"stride {spatial_pairs(g.stride)} (1-7)")
        if any(outside(p, 0, 15) for p in g.pad_begin + g.pad_end):
            problems.append(f"pad {spatial_pairs(g.pad_begin)} (0-15)")
        if any(outside(d, 1, dilation_max) for d in g.dilation):
            problems.append(f"dilation {spatial_pairs(g.dilation)} (1-{dilation_max})")
        if problems:
            what = "depthwise convolution" if depthwise else "convolution"
            yield finding(node, f"{what}: " + "; ".join(problems))


def _deconvolution(view):
    for node in view.layers("Deconvolution"):
        g = conv_geometry(view, node)
        if g is None or len(g.kernel) != 2:
            continue
        problems = []
        if any(s not in (2, 4, 8) for s in g.stride):
            problems.append(f"stride {spatial_pairs(g.stride)} (2, 4 or 8)")
        if any(outside(k, 1, 31) for k in g.kernel):
            problems.append(f"kernel {spatial_pairs(g.kernel)} (1-31)")
        if any(outside(p, 0, 15) for p in g.pad_begin + g.pad_end):
            problems.append(f"pad {spatial_pairs(g.pad_begin)} (0-15)")
        if problems:
            yield finding(node, "; ".join(problems))


def _rounding(view):
    from keraffe.passes.ceil_pooling_as_floor import rounding_differs, rows_for_floor

    for node in view.layers("Pooling"):
        g = pool_geometry(view, node)
        if g is None or not rounding_differs(node.param, view.bottom(node)):
            continue
        yield finding(node, f"{pool_method(node)} pooling rounds its {spatial_pairs(g.output)} output up; rounding "
                            "down (the NPU's only mode) gives fewer rows or columns",
                      fixable=rows_for_floor(view.net, node, view.consumers) is not None)


def _pool_window(view):
    from keraffe.passes.chain_global_pooling import is_global

    for node in view.layers("Pooling"):
        g = pool_geometry(view, node)
        if g is None or is_global(node.param, view.bottom(node)):
            continue
        problems = []
        if any(outside(k, 1, POOL_KERNEL) for k in g.kernel):
            problems.append(f"kernel {spatial_pairs(g.kernel)} (1-{POOL_KERNEL})")
        if any(outside(s, 1, POOL_STRIDE) for s in g.stride):
            problems.append(f"stride {spatial_pairs(g.stride)} (1-{POOL_STRIDE})")
        if any(outside(p, 0, POOL_PAD) for p in g.pad_begin + g.pad_end):
            problems.append(f"pad {spatial_pairs(g.pad_begin)} (0-{POOL_PAD})")
        if problems:
            yield finding(node, "; ".join(problems))


def _global_pooling(view):
    from keraffe.passes.chain_global_pooling import is_global

    for node in view.layers("Pooling"):
        bottom = view.bottom(node)
        if bottom is None or len(bottom) != 4 or not is_global(node.param, bottom):
            continue
        if max(bottom[2:]) > GLOBAL_POOL_SIZE:
            yield finding(node, f"global pooling over {bottom[2]}x{bottom[3]}; the NPU's takes at most "
                                f"{GLOBAL_POOL_SIZE}x{GLOBAL_POOL_SIZE}",
                          fixable=global_chain_exists(node, bottom[2:], pooling_fits))


def _elementwise_size(view):
    for node in view.layers(*ELEMENTWISE):
        shape = view.bottom(node)
        if shape is None or len(shape) < 2:
            continue
        problems = []
        if shape[1] > MAX_CHANNELS:
            problems.append(f"{shape[1]} channels (at most {MAX_CHANNELS})")
        if len(shape) == 4 and shape[2] > MAX_HEIGHT:
            problems.append(f"height {shape[2]} (at most {MAX_HEIGHT})")
        if len(shape) == 4 and shape[3] > MAX_WIDTH:
            problems.append(f"width {shape[3]} (at most {MAX_WIDTH})")
        if problems:
            yield finding(node, "input of " + "; ".join(problems))


def _concat_axis(view):
    for node in view.layers("Concat"):
        param = node.param.concat_param
        axis = param.concat_dim if param.HasField("concat_dim") else param.axis
        rank = len(view.bottom(node) or (0,) * 4)
        if (axis + rank if axis < 0 else axis) not in (1, 2, 3):
            yield finding(node, f"axis {axis}; 1, 2 or 3 only")


def _softmax_axis(view):
    for node in view.layers("Softmax"):
        axis = node.param.softmax_param.axis
        rank = len(view.bottom(node) or (0, 0))
        if (axis + rank if axis < 0 else axis) != 1:
            yield finding(node, f"axis {axis}; the channel axis (1) only")


def _upsample(view):
    for node in view.layers("Upsample"):
        if len(node.inputs) != 1:
            continue
        param = node.param.upsample_param
        factor = param.stride if param.HasField("stride") else param.scale
        if outside(factor, 2, 8):
            yield finding(node, f"factor {factor}; whole factors 2-8 only")


RK_MD_ALL = "RK-MD-1.0.0 (Caffe table); RK-MD-1.2.0-1.4.0 (ONNX Conv, Caffe \"same as onnx Conv\"); RK-OPLIST-2.3.2 " \
            "§3.1.5/§3.2.5"
RULES = (
    Rule("R-2", "every layer", "Only the Caffe layer types Rockchip lists (AbsVal, ArgMax, Bias, ELU, Exp, Log, "
         "Threshold, MVN, Embed, Interp, Silence, Parameter, Clip, Swish, DetectionOutput are not; load_caffe fails "
         "on DetectionOutput, issue 138)", "RK-MD-1.3.0, 1.4.0, 1.6.0, 2.3.2; I: "
         "github.com/rockchip-linux/rknn-toolkit2/issues/138", "V / I", _layer_types,
         remedy="none automatic for this type: express it with listed layers (crop Silences keraffe rewrites "
         "itself)"),
    Rule("R-4/5/6/8/9", "Convolution, ConvolutionDepthwise", "kernel_h, kernel_w in [1, 31]; stride [1, 7]; pad "
         "each side [0, 15]; dilation [1, 31]. Depthwise (one group per channel): kernel [1, 8], dilation [1, 32]",
         RK_MD_ALL + "; RK-OPLIST-2.3.2 §6 (dilation); RK-MD-1.0.0...2.3.2, RK-OPLIST-2.3.2 §3.2.6 (depthwise)", "V",
         _convolution,
         remedy="none: split the kernel or stride in steps (the CPU runs it otherwise, where it has a kernel)"),
    Rule("R-10", "Deconvolution", "stride 2, 4 or 8 (1.0-1.4; V2.3.2 adds 1); kernel [1, 31]; pad [0, 15]",
         "RK-MD-1.0.0, 1.3.0, 1.4.0; RK-OPLIST-2.3.2 §3.2.20", "V", _deconvolution,
         remedy="none: upsample in steps of 2, 4 or 8"),
    Rule("R-12", "Pooling", "ceil_mode must be 0 (floor); Caffe's default is ceil (MaxPool; AVE likewise, R-13)",
         "RK-MD-1.0.0 (Caffe Pooling row), RK-MD-1.3.0/1.4.0 (ONNX MaxPool); RK-OPLIST-2.3.2 §3.2.44",
         "V (NPU-only)", _rounding, fix="ceil_pooling_as_floor",
         remedy="none where an AVE window reaching past the input (copies would enter its average), or a MAX "
         "window starting past it, is kept by the net: crop the input so both roundings agree"),
    Rule("R-13", "Pooling (MAX/AVE)", "kernel [1, 7]; stride [1, 8]; pad [0, 7] (non-global)",
         "RK-MD-1.0.0; RK-MD-1.3.0/1.4.0; RK-OPLIST-2.3.2 §3.2.44/§3.2.46", "V (NPU-only)", _pool_window,
         remedy="none: pool in steps"),
    Rule("R-14", "Pooling (global)", "Global pooling input H, W in (0, 7] (V2.3.2 NPU op spec; 1.0.0: average "
         "[1, 128], max [1, 7]; 1.2-1.4: [1, 343]): keraffe takes the strictest", "RK-MD-1.0.0; RK-MD-1.2.0-1.4.0; "
         "RK-OPLIST-2.3.2 §3.1.46, §3.2.47, §3.6.30", "V (conflicting across versions)", _global_pooling,
         fix="chain_global_pooling", remedy="none for this size (an average over a prime size no stage takes)"),
    Rule("R-15", "Eltwise, BatchNorm, Scale, ReLU, Sigmoid, TanH, PReLU, Pooling", "channel [1, 8192], height "
         "[1, 8192], width [1, 8176]", "RK-MD-1.0.0, 1.2.0, 1.3.0; RK-MD-1.0.0 (Pooling)", "V", _elementwise_size,
         remedy="none automatic: split the channels (Slice, the op, Concat)"),
    Rule("R-17", "Concat", "axis 1, 2 or 3 (1.0-1.2; V2.3.2 adds 0)", "RK-MD-1.0.0; RK-OPLIST-2.3.2 §3.2.4", "V",
         _concat_axis, remedy="none: concatenate along a feature axis"),
    Rule("R-18", "Softmax", "axis 1 only (1.3.0/1.4.0; V2.3.2 adds axis 3)", "RK-MD-1.3.0/1.4.0; RK-OPLIST-2.3.2 "
         "§3.2.56", "V", _softmax_axis, remedy="none: move the axis to 1 first"),
    Rule("R-21", "Upsample", "integer factors 2-8 (1.3.0/1.4.0: [1, 8])", "RK-OPLIST-2.3.2 §3.2.54; "
         "RK-MD-1.3.0/1.4.0", "V", _upsample, remedy="none: upsample in steps"),
)

PROFILE = Profile(
    name="rknn",
    title="Rockchip RKNN-Toolkit2 (RKNPU2)",
    versions="RKNN-Toolkit2 1.0.0-2.3.2 operator lists (the strictest where they disagree)",
    layer_types=LAYER_TYPES,
    rules=RULES,
    rewrites=("depthwise_as_grouped", "chain_global_pooling", "ceil_pooling_as_floor", "slice_as_crop"),
    channel_multiple=None,
    channel_note="none documented as a preference: Rockchip documents only output-layout alignment (NC1HWC2: 16 "
                 "(conv) / 8 channels for int8 on RK3566/68, 32 / 16 on RK3588, RK3562, RK3576, RV1103/06; "
                 "RK-OPLIST-2.3.2 §5.2)",
    keras_export_types=(CAFFE_1_0_TYPES & LAYER_TYPES) | {"Silence", "Permute"},
    description="Rockchip RKNN-Toolkit2: Rockchip's Caffe layer list, NPU kernel/stride/pad limits, MaxPool rounding "
                "down only",
    pooling_fits=pooling_fits,
)
