"""HiSilicon NNIE (nnie_mapper / RuyiStudio, Hi35xx): the rules keraffe checks and the rewrites it applies.

HiSilicon's own HiSVP Development Guide could not be read (no public text
copy); the rules here come from HiSilicon's SDK header and course material,
from MindSpore Lite's page on NNIE (Huawei) and, where nothing better was
found, from issue threads and blogs, each tagged with its confidence in
docs/targets.md. Which Caffe 1.0 layers the mapper's "standard" class leaves
out is not documented publicly: keraffe takes all of Caffe 1.0.
"""

from __future__ import annotations

import math

from keraffe.caffe.releases import CAFFE_1_0_TYPES
from keraffe.targets.profile import ADVICE, Profile, Rule
from keraffe.targets.rules import (depthwise_fix, finding, global_chain_exists, net_finding,
                                  pool_geometry, types_outside)

#: NNIE's extension layers (public layers outside Caffe that the mapper supports), HI-TAURUS 4.3 §4.3.1.
EXTENSION_TYPES = frozenset({"ROIPooling", "PSROIPooling", "Normalize", "Upsample", "PassThrough"})
#: Further extension examples the guide lists, as a blog quotes it (CSDN u011622208/105676120).
EXTENSION_EXAMPLES = frozenset({"CReLU", "DepthwiseConv", "RReLU", "MatMul", "Permute"})
#: Layers the mapper hands to the CPU: the net is split around them (HI-TAURUS 4.3 §4.3.1).
CPU_TYPES = frozenset({"Custom", "Proposal"})

LAYER_TYPES = CAFFE_1_0_TYPES | EXTENSION_TYPES | EXTENSION_EXAMPLES | CPU_TYPES

MAX_SEGMENTS = 8
MAX_SEGMENT_BLOBS = 16
MAX_NAME = 31
#: The global-pooling kernel bound, as the only public statement gives it (a blog; see pooling_kernel_fits).
POOL_KERNEL_BUDGET = 2048
POOL_ROW_BLOCK = 16


def pooling_kernel_fits(kernel, stride, input_hw, global_pooling: bool = False) -> bool:
    """kernel_h < 2048 / (ceil(W / (16 * stride_w)) * stride_w): a blog's bound for NNIE pooling kernels.

    The blog (N-13) prints "kernel<2048/(w/(16*stride_w)stride_w)", brackets
    lost; this is the reading under which its own example holds (a global
    pooling over 234x310 fails; 13x31 stride 13x31, then 18x10 stride 1,
    pass). No vendor number was found: the bound is unconfirmed, and the
    chained pooling keraffe writes when it fails is exact whatever the real
    bound is.
    """
    width = input_hw[1]
    stride_w = stride[1]
    return kernel[0] < POOL_KERNEL_BUDGET / (math.ceil(width / (POOL_ROW_BLOCK * stride_w)) * stride_w)


def _layer_types(view):
    for node in types_outside(view, LAYER_TYPES):
        yield finding(node, f"type {node.type} is neither Caffe 1.0 nor an NNIE extension layer",
                      **depthwise_fix(node))


def _permute_order(view):
    for node in view.layers("Permute"):
        order = tuple(node.param.permute_param.order)
        rank = len(view.bottom(node) or ()) or 4
        full = order + tuple(a for a in range(rank) if a not in order)
        if full != (0, 2, 3, 1):
            yield finding(node, f"order {full}; the mapper takes (0, 2, 3, 1) only")


def _pooling_kernel(view):
    for node in view.layers("Pooling"):
        g = pool_geometry(view, node)
        if g is None:
            continue
        hw = view.bottom(node)[2:]
        stride = (1, 1) if g.global_pooling else g.stride
        if not pooling_kernel_fits(g.kernel, stride, hw):
            bound = POOL_KERNEL_BUDGET / (math.ceil(hw[1] / (POOL_ROW_BLOCK * stride[1])) * stride[1])
            what = "global pooling" if g.global_pooling else "pooling"
            yield finding(node, f"{what} kernel height {g.kernel[0]} over a {hw[0]}x{hw[1]} input is not below "
                                f"{bound:.1f} (unconfirmed bound)",
                          fixable=global_chain_exists(node, hw, pooling_kernel_fits))


def _image_channels(view):
    for node in view.layers("Input"):
        for tensor in node.outputs:
            shape = view.shape(tensor)
            if shape is not None and len(shape) == 4 and shape[1] not in (1, 3):
                yield finding(node, f"input '{tensor.blob}' has {shape[1]} channels: as an image (U8) input it "
                                    "needs 1 or 3; with other counts it must be a float input ([image_type] 0)")


def _segments(view):
    """NNIE segments: runs of layers between CPU layers, in net order, each with its inputs and outputs."""
    net = view.net
    runs, current = [], []
    for node in net.layers:
        if node.type in CPU_TYPES:
            if current:
                runs.append(current)
            current = []
        elif node.type != "Input":
            current.append(node)
    if current:
        runs.append(current)
    return runs


def _segment_limits(view):
    runs = _segments(view)
    if len(runs) > MAX_SEGMENTS:
        yield net_finding(f"the net splits into {len(runs)} NNIE segments around its CPU layers; at most "
                          f"{MAX_SEGMENTS}")
    for index, run in enumerate(runs, start=1):
        inside = {t for node in run for t in node.outputs}
        read = {t for node in run for t in node.inputs}
        inputs = read - inside
        outputs = {t for t in inside if t in view.net.outputs or any(
            c not in run for c in view.consumers.get(t, []))}
        for what, blobs in (("inputs", inputs), ("outputs", outputs)):
            if len(blobs) > MAX_SEGMENT_BLOBS:
                yield net_finding(f"segment {index} (from '{run[0].name}') has {len(blobs)} {what}; at most "
                                  f"{MAX_SEGMENT_BLOBS}")
        roi = [n for n in run if n.type in ("ROIPooling", "PSROIPooling")]
        if len(roi) > 2:
            yield net_finding(f"segment {index} has {len(roi)} ROI pooling layers; at most 2")
    total = len(view.layers("ROIPooling", "PSROIPooling"))
    if total > 4:
        yield net_finding(f"the net has {total} ROI pooling layers; at most 4")


def _report_names(view):
    net = view.net
    for tensor in [*net.inputs, *net.outputs]:
        if len(tensor.blob) > MAX_NAME:
            producer = next(n for n in net.layers if tensor in n.outputs)
            yield finding(producer, f"blob '{tensor.blob}' ({len(tensor.blob)} characters) is an input or output "
                                    f"the runtime names in {MAX_NAME + 1} bytes: at most {MAX_NAME} characters")


def _reshape(view):
    for node in view.layers("Reshape"):
        top = view.top(node)
        dims = list(node.param.reshape_param.shape.dim)
        if top is not None and len(top) > 4:
            yield finding(node, f"output has {len(top)} axes {top}; the mapper takes 4")
        elif dims and node.param.reshape_param.axis == 0 and dims[0] != 0:
            yield finding(node, f"shape starts with dim {dims[0]}; the mapper wants 0 (keep the batch axis)")


RULES = (
    Rule("N-4", "every layer", "Layer types outside Caffe 1.0 and NNIE's extension layers (ROIPooling, PSROIPooling, "
         "Normalize, Upsample, PassThrough; the guide's examples add CReLU, DepthwiseConv, RReLU, MatMul, Permute) "
         "must be rewritten as Custom or Proposal layers, which run on the CPU",
         "HI-TAURUS 4.3 §4.3.1 (classes, Custom/Proposal); CSDN \"摘录自:HiSVP开发指南\" (example list)", "VH / B",
         _layer_types, fix="depthwise_as_grouped",
         remedy="none automatic for this type: declare the layer Custom (custom_param with one shape per top) or "
         "Proposal and implement it on the CPU (HiSVP Development Guide §3.2); the forks' depthwise convolutions "
         "keraffe rewrites itself"),
    Rule("N-9", "Permute", "Only the order (0,1,2,3) -> (0,2,3,1)",
         "I: github.com/Wulingtian/yolov5_onnx2caffe/issues/8; C: README in a yolov5 caffe->wk repo "
         "(index id 36000268014)", "I/C", _permute_order,
         remedy="none: for a Keras model, keep channels-last Flatten/Reshape directly before a Dense layer "
         "(keraffe folds that transpose into the weights), or run the transpose on the CPU (Custom)"),
    Rule("N-13", "Pooling", "kernel_h < 2048 / (ceil(W / (16 * stride_w)) * stride_w): read from a blog's "
         "formula, the reading under which its own example holds; no vendor number was found (unconfirmed)",
         "B: blog.youkuaiyun.com/z649431508/article/details/113425275", "B (unconfirmed)", _pooling_kernel,
         fix="chain_global_pooling"),
    Rule("N-7", "Input", "A U8 image input has 1 (gray) or 3 (RGB) channels; other inputs are float "
         "([image_type] 0)", "HI-TAURUS 4.2.2 (HI_MPI_SVP_NNIE_Forward 注意, from \"HiSVP API 参考\"); "
         "MS-NNIE \"image_type Restrictions\"", "VH", _image_channels, severity=ADVICE,
         remedy="feed it as a float input ([image_type] 0), or give the image 1 or 3 channels"),
    Rule("N-5", "the whole net", "At most 8 NNIE segments (runs between CPU layers); at most 16 inputs and 16 "
         "outputs per segment; at most 2 ROI pooling layers per segment and 4 in the net",
         "HI-NNIE-H (macros, SVP_NNIE_SEG_S, SVP_NNIE_FORWARD_CTRL_S comments \"[1, 16]\"); MS-NNIE "
         "\"Segmentation Mechanism and Restrictions\"", "VH", _segment_limits,
         remedy="none: move CPU layers together, or split the net into several models"),
    Rule("N-6", "input and output blobs", "Node names (the blobs the runtime reports) fit a 32-byte field: at most "
         "31 characters", "HI-NNIE-H (SVP_NNIE_NODE_S.szName)",
         "VH (limit of the runtime struct; mapper behaviour for longer names not documented)", _report_names,
         remedy="none automatic: rename the blob (and keep the name map for your code)"),
    Rule("N-12", "Reshape", "Reshape outputs are 4-D with the first dim 0 (users report 5-D YOLOv5 reshapes "
         "must be folded to 4-D)", "C: same yolov5 README (\"此处要改为4维，且第一维为0\")", "C", _reshape,
         remedy="none automatic: fold the reshape to 4 axes, batch axis written as 0"),
)

PROFILE = Profile(
    name="nnie",
    title="HiSilicon NNIE (nnie_mapper / RuyiStudio)",
    versions="Hi35xx NNIE mapper (Hi3516DV300 SDK header; MindSpore Lite r2.0 NNIE page)",
    layer_types=LAYER_TYPES,
    rules=RULES,
    rewrites=("depthwise_as_grouped", "chain_global_pooling"),
    channel_multiple=None,
    channel_note="none documented: the only alignment found is the mapper's [internal_stride] (a row stride in "
                 "bytes, 16 in an example config), which is not a channel multiple",
    keras_export_types=CAFFE_1_0_TYPES | {"Permute"},
    description="HiSilicon NNIE: Caffe 1.0 plus extension layers, Permute (0,2,3,1) only, limits checked "
                "by keraffe check",
    pooling_fits=pooling_kernel_fits,
)
