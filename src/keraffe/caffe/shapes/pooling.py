"""Pooling, with Caffe's rounding modes and its rule that clips the last window."""

from __future__ import annotations

import dataclasses
import math

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.shapes import LayerShapes, Shape, count, expect_bottoms, shape_rule
from keraffe.errors import ShapeError


@dataclasses.dataclass(frozen=True)
class PoolGeometry:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    #: Padding before and after, (height, width).
    pad_begin: tuple[int, int]
    pad_end: tuple[int, int]
    ceil: bool
    global_pooling: bool
    output: tuple[int, int]


def pool_geometry(layer: pb.LayerParameter, bottom: Shape) -> PoolGeometry:
    """Resolve a pooling_param against a (N, C, H, W) input the way PoolingLayer does."""
    param = layer.pooling_param
    if len(bottom) != 4:
        raise ShapeError(f"Pooling needs a 4-axis (N, C, H, W) input, got {bottom}")
    height, width = bottom[2], bottom[3]
    if param.global_pooling:
        if param.HasField("kernel_size") or param.HasField("kernel_h") or param.HasField("kernel_w"):
            raise ShapeError("global_pooling takes its kernel from the input; do not set kernel_size")
        kernel = (height, width)
    elif param.HasField("kernel_h") or param.HasField("kernel_w"):
        kernel = (param.kernel_h, param.kernel_w)
    elif param.HasField("kernel_size"):
        kernel = (param.kernel_size, param.kernel_size)
    else:
        raise ShapeError("pooling_param needs kernel_size, kernel_h/kernel_w or global_pooling")
    if param.HasField("pad_h") or param.HasField("pad_w"):
        pad = (param.pad_h, param.pad_w)
    else:
        pad = (param.pad, param.pad)
    if param.HasField("stride_h") or param.HasField("stride_w"):
        stride = (param.stride_h, param.stride_w)
    else:
        stride = (param.stride, param.stride)
    pad_begin, pad_end = pad, pad
    if any(param.HasField(f) for f in ("pad_l", "pad_r", "pad_t", "pad_b")):
        pad_begin = (param.pad_t, param.pad_l)
        pad_end = (param.pad_b, param.pad_r)
    if param.global_pooling and (any(pad) or stride != (1, 1)):
        raise ShapeError("global_pooling needs pad 0 and stride 1")
    if min(kernel) <= 0 or min(stride) <= 0:
        raise ShapeError(f"kernel {kernel} and stride {stride} must be positive")
    if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise ShapeError(f"pad {pad} must be smaller than the kernel {kernel}")
    ceil = not (param.HasField("round_mode") and param.round_mode == pb.PoolingParameter.FLOOR)
    if param.HasField("ceil_mode"):
        ceil = param.ceil_mode
    output = []
    for size, k, s, p0, p1 in zip((height, width), kernel, stride, pad_begin, pad_end):
        span = float(size + p0 + p1 - k) / s
        out = (math.ceil(span) if ceil else math.floor(span)) + 1
        # Caffe: with padding, the last window must start inside the image or padding-before.
        if (p0 or p1) and (out - 1) * s >= size + p0:
            out -= 1
        output.append(out)
    return PoolGeometry(kernel, stride, pad_begin, pad_end, ceil, bool(param.global_pooling), tuple(output))


@shape_rule("Pooling")
def pooling(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    g = pool_geometry(layer, bottoms[0])
    top = bottoms[0][:2] + g.output
    # A second top (MAX only) carries the argmax mask, same shape.
    return LayerShapes((top,) * max(1, len(layer.top)))


def _rois(bottom: Shape) -> int:
    """The number of rois in an roi blob: its first axis, each row 5 numbers [image, x1, y1, x2, y2]."""
    if len(bottom) < 2 or count(bottom, 1) != 5:
        raise ShapeError(f"rois must be (R, 5) rows [image, x1, y1, x2, y2], got {bottom}")
    return bottom[0]


@shape_rule("ROIPooling")
def roi_pooling(layer, bottoms):
    """py-faster-rcnn's ROIPooling: (R, C, pooled_h, pooled_w)."""
    expect_bottoms(layer, bottoms, 2)
    features, rois = bottoms
    param = layer.roi_pooling_param
    if len(features) != 4:
        raise ShapeError(f"needs an (N, C, H, W) feature map, got {features}")
    if param.pooled_h <= 0 or param.pooled_w <= 0:
        raise ShapeError("roi_pooling_param needs positive pooled_h and pooled_w (the fork CHECKs them)")
    return LayerShapes(((_rois(rois), features[1], param.pooled_h, param.pooled_w),))


@shape_rule("PSROIPooling")
def psroi_pooling(layer, bottoms):
    """R-FCN's PSROIPooling: (R, output_dim, group_size, group_size) from output_dim * group_size² channels."""
    expect_bottoms(layer, bottoms, 2)
    features, rois = bottoms
    param = layer.psroi_pooling_param
    size, dim = param.group_size, param.output_dim
    if len(features) != 4:
        raise ShapeError(f"needs an (N, C, H, W) feature map, got {features}")
    if size <= 0 or dim <= 0:
        raise ShapeError("psroi_pooling_param needs positive output_dim and group_size (the fork CHECKs them)")
    if features[1] != dim * size * size:
        raise ShapeError(f"output_dim {dim} and group_size {size} read {dim * size * size} channels; the feature map "
                         f"has {features[1]} (the fork CHECKs they are equal)")
    return LayerShapes(((_rois(rois), dim, size, size),))


def spp_levels(layer: pb.LayerParameter, bottom: Shape) -> list[pb.LayerParameter]:
    """The Pooling layer of each pyramid level of an SPP layer, as BVLC's SPPLayer::GetPoolingParam builds them.

    Level i has 2**i bins a side: kernel = stride = ceil(size / bins), and
    padding (kernel * bins - size + 1) / 2, for height and width apart.
    """
    if len(bottom) != 4:
        raise ShapeError(f"SPP needs an (N, C, H, W) input, got {bottom}")
    param = layer.spp_param
    if param.pyramid_height < 1:
        raise ShapeError("spp_param needs pyramid_height of at least 1")
    levels = []
    for level in range(param.pyramid_height):
        bins = 2 ** level
        pooling = pb.LayerParameter(name=f"{layer.name}/level{level}", type="Pooling")
        p = pooling.pooling_param
        for size, kernel_field, stride_field, pad_field in ((bottom[2], "kernel_h", "stride_h", "pad_h"),
                                                            (bottom[3], "kernel_w", "stride_w", "pad_w")):
            kernel = math.ceil(size / bins)
            setattr(p, kernel_field, kernel)
            setattr(p, stride_field, kernel)
            setattr(p, pad_field, (kernel * bins - size + 1) // 2)
        p.pool = param.pool  # MAX, AVE, STOCHASTIC: the same numbers in both enums
        levels.append(pooling)
    return levels


@shape_rule("SPP")
def spp(layer, bottoms):
    """Pyramid height 1: the one pooling's (N, C, 1, 1); else every level flattened, concatenated: (N, C * sum 4**i)."""
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    geometries = []
    for level in spp_levels(layer, bottom):
        try:
            geometries.append(pool_geometry(level, bottom))
        except ShapeError as error:
            raise ShapeError(f"pyramid level {level.name.rsplit('level', 1)[1]} cannot pool a {bottom[2]}x"
                             f"{bottom[3]} input: {error}") from None
    if len(geometries) == 1:
        return LayerShapes((bottom[:2] + geometries[0].output,))
    return LayerShapes(((bottom[0], sum(bottom[1] * g.output[0] * g.output[1] for g in geometries)),))
