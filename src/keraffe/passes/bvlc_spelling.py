"""A pass for the reference runtimes: fork layers spelled with BVLC layers that compute the same thing.

keraffe verifies a conversion by running the Caffe net in an independent
runtime. The Caffe keraffe builds for that (and OpenCV) lack some fork layer
types that real nets use, so each of those is handed over as BVLC layers that
compute the same thing:

- MobileNet-YOLO's DepthwiseConvolution and ShuffleNet's ConvolutionDepthwise
  are BVLC's grouped Convolution with one group per input channel.
- Side pads (``pad_l``, ``pad_r``, ``pad_t``, ``pad_b``) are BVLC's ``pad_h``
  and ``pad_w`` when opposite sides agree; uneven ones on a convolution (TF's
  'same') are brocolli's Pad layer before the unpadded convolution.
- The Synopsys fork's ``relu_param { relu6: true }`` is the ReLU6 layer.
- The Synopsys fork's ResizeNearestNeighbor by an integer factor is the YOLO
  forks' (and brocolli's) nearest Upsample.
- ShuffleNet's ShuffleChannel is a Reshape to (N, g, C/g, H, W), a Permute of
  the two channel axes, and a Reshape back.
- ``AVE_EXC_PAD`` pooling without padding is BVLC's AVE, which already leaves
  out a window's overrun past the image.
- SENet's Axpy(a, x, y) = a * x + y is a Flatten of ``a``, a two-bottom Scale
  and an Eltwise sum.
- PSPNet's BN (slope, bias, mean, variance) is BatchNorm then Scale; SegNet's
  BN in inference mode (scale, shift) is a Scale.
- SegNet's Upsample (data and pooling mask) is brocolli's MaxUnPool, which
  writes each value where the mask says, on an output of the given size;
  Huawei's nearest Upsample ``scale: 1 stride: k`` is the forks' ``scale: k``.
- The Synopsys fork's Squeeze is a Reshape to its output shape, and its
  Reshape with ``pixelshuffler`` is brocolli's PixelShuffle (PyTorch's).
- The Synopsys fork's Mul (a product broadcast as NumPy does) is a Tile of
  each bottom along every axis it is broadcast on, then an Eltwise product.
- Interp, align-corners bilinear resizing, is a linear map along each spatial
  axis: an InnerProduct over the width, a Permute, one over the height, and a
  Permute back, with the interpolation weights as the InnerProduct weights.
  That is for real Caffe only: OpenCV gets DeepLab's Interp and runs its own,
  a judge that shares nothing with keraffe's interpolation weights; only its
  output size is written out as height and width (OpenCV 4.14 computes an
  empty output from shrink_factor, and takes no second bottom for the size).
  An Interp that crops its input first (pad_beg, pad_end) OpenCV cannot run:
  it gets the InnerProducts as well.
- The Synopsys fork's ResizeBilinear on NCHW, with aligned corners or
  half-pixel centres, is brocolli's BilinearInterpolate to the same size.
- The Synopsys fork's SpaceToBatchND on NCHW blocks of (1, B_h, B_w) is
  brocolli's Pad, a Reshape to (N, C, H/B_h, B_h, W/B_w, B_w), a Permute of the
  block offsets to the front and a Reshape to (B_h*B_w*N, C, H/B_h, W/B_w);
  BatchToSpaceND is the inverse Reshape, Permute and Reshape, then Slices that
  crop.
- The Synopsys fork's hard_sigmoid_param is brocolli's hardsigmoid_param.
- Python layers, which neither runtime runs here: ENet's SpatialDropoutLayer
  (test phase) is a Power layer scaling by 1 / (1 - p); the YOLOv2 port's
  darknet_reorg is the forks' Reorg with stride 2 (OpenCV has it); for OpenCV
  only, py-faster-rcnn's ProposalLayer is OpenCV's Proposal with the same
  feat_stride, ratios, scales and TEST settings (OpenCV reads its scales as
  py-faster-rcnn does; brocolli's C++ Proposal, with the same name, does not,
  so real Caffe gets the Python layer as it is and refuses it). OpenCV's has
  no minimum box size: it computes the same only where no box is smaller
  than 16 * im_info[2], which its judge must see to.
- For OpenCV only: its LRN leaves out lrn_param.k (it computes with k = 1).
  Across channels, x / (k + alpha/n * sum x²)^beta is k^-beta * x /
  (1 + (alpha/k)/n * sum x²)^beta: an LRN with alpha / k and k = 1, then a
  Power layer scaling by k^-beta.

Every rewrite keeps the original layer's name on the layer that produces the
original top, so a runtime's blobs are asked for by the same names.
"""

from __future__ import annotations

import numpy as np

from keraffe.caffe.interp import interp_matrix
from keraffe.caffe.net import CaffeNet, LayerNode
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.python_layers import python_layer_params
from keraffe.caffe.shapes import python_layer_kind
from keraffe.caffe.shapes.detection import PYTHON_PROPOSAL, PYTHON_PROPOSAL_TEST, python_proposal_setting
from keraffe.caffe.shapes.resize import DARKNET_REORG
from keraffe.caffe.shapes.tensor_ops import space_to_batch_setting
from keraffe.passes.depthwise_as_grouped import DEPTHWISE_ALIASES, as_grouped_convolution


Weights = dict[str, list[np.ndarray]]


def bvlc_spelling(net: CaffeNet, runtime: str = "caffe") -> tuple[pb.NetParameter, Weights]:
    """The net's deploy NetParameter and weights with fork layers spelled as BVLC layers, for ``runtime``."""
    source = net.to_net_parameter()
    weights = dict(net.weight_arrays())
    result = pb.NetParameter()
    result.CopyFrom(source)
    del result.layer[:]
    for node, layer in zip(net.layers, source.layer):
        if node.type in ("Convolution", *DEPTHWISE_ALIASES) and _lopsided(layer.convolution_param):
            layer = _pad_first(layer, result)
        extra = _OPENCV_SPELLINGS if runtime == "opencv" else _CAFFE_SPELLINGS
        spelled = _SPELLINGS.get(node.kind) or extra.get(node.kind)
        if spelled is not None:
            done = spelled(net, node, layer, weights, result)
            if done:
                continue
        copy = result.layer.add()
        copy.CopyFrom(layer)
        _tidy_params(node, copy)
    return result, weights


def _tidy_params(node: LayerNode, layer: pb.LayerParameter) -> None:
    for param in (layer.convolution_param, layer.pooling_param):
        _symmetric_pads_the_bvlc_way(param)
    pool = layer.pooling_param
    if node.type == "Pooling" and pool.pool == pb.PoolingParameter.AVE_EXC_PAD and not (
            pool.pad or pool.pad_h or pool.pad_w or pool.pad_l or pool.pad_r or pool.pad_t or pool.pad_b):
        pool.pool = pb.PoolingParameter.AVE


def _symmetric_pads_the_bvlc_way(param) -> None:
    sides = ("pad_l", "pad_r", "pad_t", "pad_b")
    if not any(param.HasField(side) for side in sides):
        return
    left, right, top, bottom = (getattr(param, side) for side in sides)
    if left != right or top != bottom:
        return
    for side in sides:
        param.ClearField(side)
    param.ClearField("pad")
    param.pad_h, param.pad_w = top, left


def _lopsided(param) -> bool:
    sides = ("pad_l", "pad_r", "pad_t", "pad_b")
    return any(param.HasField(side) for side in sides) and (param.pad_l != param.pad_r or param.pad_t != param.pad_b)


def _pad_first(layer: pb.LayerParameter, result: pb.NetParameter) -> pb.LayerParameter:
    """A convolution with uneven side pads as brocolli's Pad (zeros) and the convolution unpadded."""
    param = layer.convolution_param
    pad = result.layer.add(name=f"{layer.name}/pad", type="Pad", bottom=list(layer.bottom),
                           top=[f"{layer.name}/padded"])
    pad.pad_param.pad_u, pad.pad_param.pad_d = param.pad_t, param.pad_b
    pad.pad_param.pad_l, pad.pad_param.pad_r = param.pad_l, param.pad_r
    unpadded = pb.LayerParameter()
    unpadded.CopyFrom(layer)
    del unpadded.bottom[:]
    unpadded.bottom.append(pad.top[0])
    for side in ("pad_l", "pad_r", "pad_t", "pad_b", "pad_h", "pad_w", "pad"):
        unpadded.convolution_param.ClearField(side)
    return unpadded


def _relu6(net, node, layer, weights, result) -> bool:
    if not layer.relu_param.relu6:
        return False
    copy = result.layer.add()
    copy.CopyFrom(layer)
    copy.type = "ReLU6"
    copy.relu_param.ClearField("relu6")
    if not copy.relu_param.ListFields():
        copy.ClearField("relu_param")
    return True


def _depthwise(net, node, layer, weights, result) -> bool:
    copy = result.layer.add()
    copy.CopyFrom(as_grouped_convolution(net, node, layer))
    _tidy_params(node, copy)
    return True


def _axpy(net, node, layer, weights, result) -> bool:
    scale, x, y = layer.bottom
    flat = result.layer.add(name=f"{layer.name}/scale_flat", type="Flatten", bottom=[scale],
                            top=[f"{layer.name}/scale_flat"])
    scaled = result.layer.add(name=f"{layer.name}/scaled", type="Scale", bottom=[x, flat.top[0]],
                              top=[f"{layer.name}/scaled"])
    scaled.scale_param.axis = 0
    result.layer.add(name=layer.name, type="Eltwise", bottom=[scaled.top[0], y], top=list(layer.top))
    return True


def _fork_bn(net, node, layer, weights, result) -> bool:
    blobs = weights.pop(layer.name, None)
    if blobs is None or len(blobs) not in (2, 4):
        if blobs is not None:
            weights[layer.name] = blobs
        return False
    top = layer.top[0]
    channels = net.shapes[node.inputs[0]][1]
    flat = [np.asarray(b, np.float32).reshape(channels) for b in blobs]
    bottom = layer.bottom[0]
    if len(flat) == 4:
        slope, bias, mean, variance = flat
        norm = result.layer.add(name=f"{layer.name}/normalize", type="BatchNorm", bottom=[bottom], top=[top])
        norm.batch_norm_param.use_global_stats = True
        norm.batch_norm_param.eps = layer.bn_param.eps
        weights[norm.name] = [mean, variance, np.ones(1, np.float32)]
        bottom = top
    else:
        slope, bias = flat
    affine = result.layer.add(name=layer.name, type="Scale", bottom=[bottom], top=[top])
    affine.scale_param.bias_term = True
    weights[layer.name] = [slope, bias]
    return True


def _interp(net, node, layer, weights, result) -> bool:
    param = layer.interp_param
    if param.pad_beg > 0 or param.pad_end > 0:
        return False
    _, _, in_h, in_w = net.shapes[node.inputs[0]]
    _, _, out_h, out_w = net.shapes[node.outputs[0]]
    crop = (-param.pad_beg, -param.pad_end)
    name = layer.name
    steps = [
        ("InnerProduct", f"{name}/along_width", interp_matrix(in_w, out_w, *crop)),
        ("Permute", f"{name}/swap", None),
        ("InnerProduct", f"{name}/along_height", interp_matrix(in_h, out_h, *crop)),
        ("Permute", name, None),
    ]
    bottom = layer.bottom[0]
    for type_name, step_name, matrix in steps:
        top = layer.top[0] if step_name == name else step_name
        step = result.layer.add(name=step_name, type=type_name, bottom=[bottom], top=[top])
        if matrix is None:
            step.permute_param.order.extend([0, 1, 3, 2])
        else:
            step.inner_product_param.num_output = matrix.shape[0]
            step.inner_product_param.axis = 3
            step.inner_product_param.bias_term = False
            weights[step_name] = [matrix]
        bottom = top
    return True


def _segnet_upsample(net, node, layer, weights, result) -> bool:
    if len(layer.bottom) != 2:
        return _huawei_upsample(layer, result)
    _, _, height, width = net.shapes[node.outputs[0]]
    unpool = result.layer.add(name=layer.name, type="MaxUnPool", bottom=list(layer.bottom), top=list(layer.top))
    unpool.max_unpool_param.dst_h, unpool.max_unpool_param.dst_w = height, width
    return True


def _huawei_upsample(layer, result) -> bool:
    """Huawei's ``scale: 1 stride: k`` is the YOLO forks' (and brocolli's) ``scale: k``."""
    param = layer.upsample_param
    if not param.HasField("stride") or param.scale != 1:
        return False  # the YOLO forks' nearest-neighbour Upsample, which brocolli's Caffe has
    copy = result.layer.add()
    copy.CopyFrom(layer)
    copy.upsample_param.ClearField("stride")
    copy.upsample_param.scale = param.stride
    return True


def _squeeze(net, node, layer, weights, result) -> bool:
    reshape = result.layer.add(name=layer.name, type="Reshape", bottom=list(layer.bottom), top=list(layer.top))
    reshape.reshape_param.shape.dim.extend([0, *net.shapes[node.outputs[0]][1:]])
    return True


def _pixel_shuffle_reshape(net, node, layer, weights, result) -> bool:
    if layer.reshape_param.pixelshuffler == 1:
        return False
    shuffle = result.layer.add(name=layer.name, type="PixelShuffle", bottom=list(layer.bottom), top=list(layer.top))
    shuffle.pixelshuffle_param.upscale_factor = layer.reshape_param.pixelshuffler
    return True


def _shuffle_channel(net, node, layer, weights, result) -> bool:
    n, channels, height, width = net.shapes[node.inputs[0]]
    groups = layer.shuffle_channel_param.group
    split = result.layer.add(name=f"{layer.name}/split", type="Reshape", bottom=list(layer.bottom),
                             top=[f"{layer.name}/split"])
    split.reshape_param.shape.dim.extend([0, groups, channels // groups, height, width])
    swap = result.layer.add(name=f"{layer.name}/swap", type="Permute", bottom=[split.top[0]],
                            top=[f"{layer.name}/swapped"])
    swap.permute_param.order.extend([0, 2, 1, 3, 4])
    merge = result.layer.add(name=layer.name, type="Reshape", bottom=[swap.top[0]], top=list(layer.top))
    merge.reshape_param.shape.dim.extend([0, channels, height, width])
    return True


def _resize_nearest(net, node, layer, weights, result) -> bool:
    nhwc = layer.resize_nearest_neighbor_param.data_format.upper() == "NHWC"
    spatial = slice(1, 3) if nhwc else slice(2, 4)
    in_h, in_w = net.shapes[node.inputs[0]][spatial]
    out_h, out_w = net.shapes[node.outputs[0]][spatial]
    if out_h % in_h or out_w % in_w or out_h // in_h != out_w // in_w:
        return False
    bottom, top = layer.bottom[0], layer.top[0]
    if nhwc:  # an (N, H, W, C) blob: to NCHW and back around the Upsample
        to_nchw = result.layer.add(name=f"{layer.name}/to_nchw", type="Permute", bottom=[bottom],
                                   top=[f"{layer.name}/to_nchw"])
        to_nchw.permute_param.order.extend([0, 3, 1, 2])
        bottom, top = to_nchw.top[0], f"{layer.name}/nchw"
    upsample = result.layer.add(name=layer.name if not nhwc else f"{layer.name}/upsample", type="Upsample",
                                bottom=[bottom], top=[top])
    upsample.upsample_param.scale = out_h // in_h
    if nhwc:
        back = result.layer.add(name=layer.name, type="Permute", bottom=[top], top=list(layer.top))
        back.permute_param.order.extend([0, 2, 3, 1])
    return True


def _broadcast_mul(net, node, layer, weights, result) -> bool:
    out = net.shapes[node.outputs[0]]
    bottoms = []
    for index, bottom in enumerate(layer.bottom):
        shape = net.shapes[node.inputs[index]]
        if len(shape) != len(out):
            return False
        for axis, (have, want) in enumerate(zip(shape, out)):
            if have != want:
                name = f"{layer.name}/tile{index}_{axis}"
                tile = result.layer.add(name=name, type="Tile", bottom=[bottom], top=[name])
                tile.tile_param.axis = axis
                tile.tile_param.tiles = want
                bottom = name
        bottoms.append(bottom)
    product = result.layer.add(name=layer.name, type="Eltwise", bottom=bottoms, top=list(layer.top))
    product.eltwise_param.operation = pb.EltwiseParameter.PROD
    return True


def _resize_bilinear(net, node, layer, weights, result) -> bool:
    param = layer.resize_bilinear_param
    if param.data_format.upper() != "NCHW" or not (param.align_corners or param.half_pixel_centers):
        return False
    out_h, out_w = net.shapes[node.outputs[0]][2:]
    resize = result.layer.add(name=layer.name, type="BilinearInterpolate", bottom=list(layer.bottom),
                              top=list(layer.top))
    resize.bilinear_interpolate_param.dst_h, resize.bilinear_interpolate_param.dst_w = out_h, out_w
    resize.bilinear_interpolate_param.align_corners = param.align_corners
    return True


def _spatial_blocks(node, net, what):
    shape = net.shapes[node.inputs[0]]
    blocks, amounts = space_to_batch_setting(node.param, len(shape), what)
    if len(shape) != 4 or len(blocks) != 3 or blocks[0] != 1 or amounts[0] != (0, 0):
        return None
    return shape, blocks[1:], amounts[1:]


def _space_to_batch(net, node, layer, weights, result) -> bool:
    found = _spatial_blocks(node, net, "paddings")
    if found is None:
        return False
    (n, c, h, w), (bh, bw), ((top, bottom), (left, right)) = found
    bottom_blob = layer.bottom[0]
    if top or bottom or left or right:
        pad = result.layer.add(name=f"{layer.name}/pad", type="Pad", bottom=[bottom_blob], top=[f"{layer.name}/pad"])
        pad.pad_param.pad_u, pad.pad_param.pad_d, pad.pad_param.pad_l, pad.pad_param.pad_r = top, bottom, left, right
        bottom_blob = pad.top[0]
    ph, pw = (h + top + bottom) // bh, (w + left + right) // bw
    split = result.layer.add(name=f"{layer.name}/split", type="Reshape", bottom=[bottom_blob],
                             top=[f"{layer.name}/split"])
    split.reshape_param.shape.dim.extend([n, c, ph, bh, pw, bw])
    move = result.layer.add(name=f"{layer.name}/offsets_first", type="Permute", bottom=[split.top[0]],
                            top=[f"{layer.name}/offsets_first"])
    move.permute_param.order.extend([3, 5, 0, 1, 2, 4])
    merge = result.layer.add(name=layer.name, type="Reshape", bottom=[move.top[0]], top=list(layer.top))
    merge.reshape_param.shape.dim.extend([bh * bw * n, c, ph, pw])
    return True


def _batch_to_space(net, node, layer, weights, result) -> bool:
    found = _spatial_blocks(node, net, "crops")
    if found is None:
        return False
    (batch, c, h, w), (bh, bw), crops = found
    n = batch // (bh * bw)
    split = result.layer.add(name=f"{layer.name}/split", type="Reshape", bottom=list(layer.bottom),
                             top=[f"{layer.name}/split"])
    split.reshape_param.shape.dim.extend([bh, bw, n, c, h, w])
    move = result.layer.add(name=f"{layer.name}/offsets_inside", type="Permute", bottom=[split.top[0]],
                            top=[f"{layer.name}/offsets_inside"])
    move.permute_param.order.extend([2, 3, 4, 0, 5, 1])
    steps = [(2, h * bh, crops[0]), (3, w * bw, crops[1])]
    cropping = [(axis, size, crop) for axis, size, crop in steps if crop != (0, 0)]
    merged = layer.top[0] if not cropping else f"{layer.name}/merged"
    merge = result.layer.add(name=layer.name if not cropping else f"{layer.name}/merge", type="Reshape",
                             bottom=[move.top[0]], top=[merged])
    merge.reshape_param.shape.dim.extend([n, c, h * bh, w * bw])
    bottom_blob = merged
    for number, (axis, size, (begin, end)) in enumerate(cropping):
        last = number == len(cropping) - 1
        kept = layer.top[0] if last else f"{layer.name}/crop{axis}"
        tops = ([f"{layer.name}/cut{axis}_begin"] if begin else []) + [kept] + ([f"{layer.name}/cut{axis}_end"] if end else [])
        cut = result.layer.add(name=layer.name if last else f"{layer.name}/crop{axis}", type="Slice",
                               bottom=[bottom_blob], top=tops)
        cut.slice_param.axis = axis
        cut.slice_param.slice_point.extend(([begin] if begin else []) + ([size - end] if end else []))
        bottom_blob = kept
    return True


def _hard_sigmoid(net, node, layer, weights, result) -> bool:
    if not layer.HasField("hard_sigmoid_param"):
        return False
    copy = result.layer.add()
    copy.CopyFrom(layer)
    copy.hardsigmoid_param.CopyFrom(layer.hard_sigmoid_param)
    copy.ClearField("hard_sigmoid_param")
    return True


def _spatial_dropout(net, node, layer, weights, result) -> bool:
    params = python_layer_params(layer)
    if str(params.get("phase", "")) == "TRAIN":
        return False
    scale = result.layer.add(name=layer.name, type="Power", bottom=list(layer.bottom), top=list(layer.top))
    scale.power_param.scale = 1.0 / (1.0 - float(params["p"]))
    return True


def _darknet_reorg(net, node, layer, weights, result) -> bool:
    reorg = result.layer.add(name=layer.name, type="Reorg", bottom=list(layer.bottom), top=list(layer.top))
    reorg.reorg_param.stride = 2
    return True


_SPELLINGS = {
    **{alias: _depthwise for alias in DEPTHWISE_ALIASES},
    "Axpy": _axpy,
    "BN": _fork_bn,
    "Upsample": _segnet_upsample,
    "Squeeze": _squeeze,
    "Reshape": _pixel_shuffle_reshape,
    "ReLU": _relu6,
    "ShuffleChannel": _shuffle_channel,
    "ResizeNearestNeighbor": _resize_nearest,
    "Mul": _broadcast_mul,
    "ResizeBilinear": _resize_bilinear,
    "SpaceToBatchND": _space_to_batch,
    "BatchToSpaceND": _batch_to_space,
    "HardSigmoid": _hard_sigmoid,
    python_layer_kind("spatial_dropout", "SpatialDropoutLayer"): _spatial_dropout,
    DARKNET_REORG: _darknet_reorg,
}


def _python_proposal(net, node, layer, weights, result) -> bool:
    setting = python_proposal_setting(layer, net.shapes[node.inputs[0]][1])
    spelled = result.layer.add(name=layer.name, type="Proposal", bottom=list(layer.bottom), top=list(layer.top))
    param = spelled.proposal_param
    param.feat_stride = setting.feat_stride
    param.ratio.extend(setting.ratios)
    param.scale.extend(setting.scales)
    param.pre_nms_topn = PYTHON_PROPOSAL_TEST["pre_nms_topn"]
    param.post_nms_topn = PYTHON_PROPOSAL_TEST["post_nms_topn"]
    param.nms_thresh = PYTHON_PROPOSAL_TEST["nms_thresh"]
    return True


def _lrn_with_k(net, node, layer, weights, result) -> bool:
    param = layer.lrn_param
    if param.k == 1.0 or param.norm_region != pb.LRNParameter.ACROSS_CHANNELS:
        return False
    lrn = result.layer.add()
    lrn.CopyFrom(layer)
    lrn.name, lrn.top[0] = f"{layer.name}/unit_k", f"{layer.name}/unit_k"
    lrn.lrn_param.alpha = param.alpha / param.k
    lrn.lrn_param.ClearField("k")
    scale = result.layer.add(name=layer.name, type="Power", bottom=[lrn.top[0]], top=list(layer.top))
    scale.power_param.scale = param.k ** -param.beta
    return True


def _interp_sized(net, node, layer, weights, result) -> bool:
    param = layer.interp_param
    if param.pad_beg or param.pad_end:  # OpenCV's Interp cannot crop first: it gets the InnerProducts too
        return _interp(net, node, layer, weights, result)
    if len(layer.bottom) == 1 and not (param.HasField("shrink_factor") or param.HasField("zoom_factor")):
        return False
    _, _, height, width = net.shapes[node.outputs[0]]
    sized = result.layer.add()
    sized.CopyFrom(layer)
    del sized.bottom[1:]  # PSPNet's second bottom only gives the size, which OpenCV's Interp does not take
    for field in ("shrink_factor", "zoom_factor"):
        sized.interp_param.ClearField(field)
    sized.interp_param.height, sized.interp_param.width = height, width
    return True


_OPENCV_SPELLINGS = {PYTHON_PROPOSAL: _python_proposal, "LRN": _lrn_with_k, "Interp": _interp_sized}
_CAFFE_SPELLINGS = {"Interp": _interp}
