"""BatchNorm, Scale, Bias, the forks' BN, and SSD's Normalize."""

from __future__ import annotations

from keraffe.caffe.shapes import LayerShapes, canonical_axis, expect_bottoms, shape_rule
from keraffe.errors import ShapeError


@shape_rule("BatchNorm")
def batch_norm(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    channels = bottom[1] if len(bottom) > 1 else 1
    return LayerShapes((bottom,), ((channels,), (channels,), (1,)))


@shape_rule("BN")
def fork_bn(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    per_channel = (1, bottom[1], 1, 1)
    # SegNet's BN keeps scale and shift; brocolli and PSPNet also keep mean and variance.
    # The blob count is decided by the weights file; the first two shapes are common.
    return LayerShapes((bottom,), (per_channel,) * 4, required_params=2)


def _broadcast_shape(layer, bottom, axis_value, num_axes, what):
    axis = canonical_axis(axis_value, len(bottom)) if bottom else 0
    if num_axes == -1:
        return bottom[axis:]
    if num_axes < -1 or axis + num_axes > len(bottom):
        raise ShapeError(f"{what} axis {axis_value} with num_axes {num_axes} does not fit input {bottom}")
    return bottom[axis: axis + num_axes]


def _check_second_bottom(bottom, other, axis_value):
    if not other:
        return
    axis = canonical_axis(axis_value, len(bottom)) if len(other) else 0
    if bottom[axis: axis + len(other)] != other:
        raise ShapeError(f"second bottom {other} does not match input {bottom} from axis {axis}")


@shape_rule("Scale")
def scale(layer, bottoms):
    expect_bottoms(layer, bottoms, 1, 2)
    param = layer.scale_param
    bottom = bottoms[0]
    if len(bottoms) == 2:
        _check_second_bottom(bottom, bottoms[1], param.axis)
        params = [bottoms[1]] if param.bias_term else []
    else:
        factor = _broadcast_shape(layer, bottom, param.axis, param.num_axes, "scale")
        params = [factor, factor] if param.bias_term else [factor]
    return LayerShapes((bottom,), tuple(params))


@shape_rule("Bias")
def bias(layer, bottoms):
    expect_bottoms(layer, bottoms, 1, 2)
    param = layer.bias_param
    bottom = bottoms[0]
    if len(bottoms) == 2:
        _check_second_bottom(bottom, bottoms[1], param.axis)
        return LayerShapes((bottom,))
    return LayerShapes((bottom,), (_broadcast_shape(layer, bottom, param.axis, param.num_axes, "bias"),))


@shape_rule("Normalize")
def normalize(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    scale_shape = () if layer.norm_param.channel_shared else (bottom[1],)
    return LayerShapes((bottom,), (scale_shape,))
