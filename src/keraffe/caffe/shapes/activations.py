"""Element-wise layers of one input: the output has the input's shape."""

from __future__ import annotations

from keraffe.caffe.shapes import LayerShapes, expect_bottoms, python_layer_kind, same_as_bottoms, shape_rule
from keraffe.errors import ShapeError


@shape_rule(
    "ReLU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log", "Threshold", "ELU",
    "Dropout", "Clip", "Swish", "ReLU6", "HardSwish", "HardSigmoid", "Softmax", "LRN",
    "ShuffleChannel", python_layer_kind("spatial_dropout", "SpatialDropoutLayer"),
)
def elementwise(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    return LayerShapes(same_as_bottoms(layer, bottoms))


@shape_rule("PReLU")
def prelu(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    if len(bottom) < 2 and not layer.prelu_param.channel_shared:
        raise ShapeError(f"per-channel PReLU needs a channel axis; input shape is {bottom}")
    slope = () if layer.prelu_param.channel_shared else (bottom[1],)
    return LayerShapes((bottom,), (slope,))


@shape_rule("MVN")
def mvn(layer, bottoms):
    """Caffe's MVNLayer::Reshape uses the legacy num/channels/height/width: the top is always 4-D."""
    expect_bottoms(layer, bottoms, 1)
    bottom = tuple(bottoms[0])
    if len(bottom) > 4:
        raise ShapeError(f"MVN reads its input as (N, C, H, W) and cannot take {len(bottom)} axes: {bottom}")
    return LayerShapes((bottom + (1,) * (4 - len(bottom)),))
