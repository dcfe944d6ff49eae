"""Layers that change spatial size: Upsample (two forks), Interp, Reorg, the Synopsys resizes."""

from __future__ import annotations

import numpy as np

from keraffe.caffe.shapes import LayerShapes, div_toward_zero, expect_bottoms, python_layer_kind, shape_rule
from keraffe.errors import ShapeError


def _spatial_4d(bottom):
    if len(bottom) != 4:
        raise ShapeError(f"needs a 4-axis (N, C, H, W) input, got {bottom}")
    return bottom[2], bottom[3]


@shape_rule("Upsample")
def upsample(layer, bottoms):
    """SegNet's unpooling takes the pooling mask as a second bottom; the YOLO forks' is nearest."""
    expect_bottoms(layer, bottoms, 1, 2)
    param = layer.upsample_param
    bottom = bottoms[0]
    if len(bottoms) == 2:
        height, width = _spatial_4d(bottom)
        if bottoms[1] != bottom:
            raise ShapeError(f"the mask {bottoms[1]} must have the input's shape {bottom}")
        if param.HasField("upsample_h") and param.HasField("upsample_w"):
            out = (param.upsample_h, param.upsample_w)
        else:
            scale_h = param.scale_h if param.HasField("scale_h") else param.scale
            scale_w = param.scale_w if param.HasField("scale_w") else param.scale
            out = (height * scale_h - int(param.pad_out_h), width * scale_w - int(param.pad_out_w))
        return LayerShapes((bottom[:2] + out,))
    # Huawei ATC's spelling (Ascend): `stride` is the factor and `scale` multiplies the values.
    scale = param.stride if param.HasField("stride") else param.scale
    if param.dims_num == 3:
        return LayerShapes((bottom[:-1] + (bottom[-1] * scale,),))
    if len(bottom) < 2:
        raise ShapeError(f"needs at least two spatial axes, got {bottom}")
    return LayerShapes((bottom[:-2] + (bottom[-2] * scale, bottom[-1] * scale),))


def interp_output(layer, bottoms) -> tuple[int, int]:
    """DeepLab's rules, plus PSPNet's second bottom giving the size directly."""
    param = layer.interp_param
    height, width = _spatial_4d(bottoms[0])
    if len(bottoms) == 2:
        return _spatial_4d(bottoms[1])
    eff_h = height + param.pad_beg + param.pad_end
    eff_w = width + param.pad_beg + param.pad_end
    has_shrink, has_zoom = param.HasField("shrink_factor"), param.HasField("zoom_factor")
    if has_shrink and not has_zoom:
        s = param.shrink_factor
        return div_toward_zero(eff_h - 1, s) + 1, div_toward_zero(eff_w - 1, s) + 1
    if has_zoom and not has_shrink:
        z = param.zoom_factor
        return eff_h + (eff_h - 1) * (z - 1), eff_w + (eff_w - 1) * (z - 1)
    if param.HasField("height") and param.HasField("width"):
        return param.height, param.width
    if has_shrink and has_zoom:
        s, z = param.shrink_factor, param.zoom_factor
        h = div_toward_zero(eff_h - 1, s) + 1
        w = div_toward_zero(eff_w - 1, s) + 1
        return h + (h - 1) * (z - 1), w + (w - 1) * (z - 1)
    raise ShapeError("interp_param needs shrink_factor, zoom_factor, or height and width")


@shape_rule("Interp")
def interp(layer, bottoms):
    expect_bottoms(layer, bottoms, 1, 2)
    return LayerShapes((bottoms[0][:2] + interp_output(layer, bottoms),))


#: The darknet reorg Python layer of the YOLOv2 Caffe port (synopsys-caffe-models' yolov2.py): stride 2.
DARKNET_REORG = python_layer_kind("yolov2", "darknet_reorg")


def reorg_setting(layer) -> tuple[int, bool]:
    """(stride, reverse) of a Reorg layer, or of the darknet reorg Python layer (stride 2, forward)."""
    if layer.type == "Python":
        return 2, False
    if not layer.reorg_param.HasField("stride"):
        raise ShapeError("reorg_param needs stride (the forks CHECK it)")
    return layer.reorg_param.stride, layer.reorg_param.reverse


@shape_rule("Reorg", DARKNET_REORG)
def reorg(layer, bottoms):
    """Darknet's reorg as the YOLO forks copy it; it writes past its top unless every size divides."""
    expect_bottoms(layer, bottoms, 1)
    n, c, h, w = bottoms[0] if len(bottoms[0]) == 4 else (None,) * 4
    if n is None:
        raise ShapeError(f"needs a 4-axis input, got {bottoms[0]}")
    s, reverse = reorg_setting(layer)
    if s <= 0:
        raise ShapeError(f"stride {s} must be positive")
    if reverse:
        if c % (s * s):
            raise ShapeError(f"reverse reorg by {s} needs channels divisible by {s * s}, got {c}")
        return LayerShapes(((n, c // (s * s), h * s, w * s),))
    if c % (s * s) or h % s or w % s:
        raise ShapeError(f"reorg by {s} needs channels divisible by {s * s} and height and width by {s}; "
                         f"got {c}, {h}, {w}")
    return LayerShapes(((n, c * s * s, h // s, w // s),))


@shape_rule("ResizeBilinear", "ResizeNearestNeighbor")
def synopsys_resize(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    param = layer.resize_bilinear_param if layer.type == "ResizeBilinear" else layer.resize_nearest_neighbor_param
    bottom = bottoms[0]
    _spatial_4d(bottom)
    nhwc = param.data_format.upper() == "NHWC"
    height, width = (bottom[1], bottom[2]) if nhwc else (bottom[2], bottom[3])
    if param.HasField("output_height") and param.HasField("output_width"):
        out = (param.output_height, param.output_width)
    else:
        # The fork computes floor(size * scale) in float.
        out = (int(np.floor(np.float32(height) * np.float32(param.scale_height))),
               int(np.floor(np.float32(width) * np.float32(param.scale_width))))
    if nhwc:
        return LayerShapes(((bottom[0],) + out + (bottom[3],),))
    return LayerShapes((bottom[:2] + out,))
