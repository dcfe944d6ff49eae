"""Layers at the net's edges: inputs, learned constants, losses."""

from __future__ import annotations

from keraffe.caffe.shapes import LayerShapes, shape_rule
from keraffe.errors import ShapeError


@shape_rule("Input")
def input_(layer, bottoms):
    shapes = [tuple(int(d) for d in s.dim) for s in layer.input_param.shape]
    tops = len(layer.top)
    if len(shapes) == 1:
        shapes = shapes * tops
    if len(shapes) != tops:
        raise ShapeError(f"{len(shapes)} shapes for {tops} tops")
    return LayerShapes(tuple(shapes))


@shape_rule("DummyData")
def dummy_data(layer, bottoms):
    param = layer.dummy_data_param
    tops = len(layer.top)
    if len(param.shape):
        shapes = [tuple(int(d) for d in s.dim) for s in param.shape]
    else:
        shapes = [tuple(int(v[i if len(v) > 1 else 0]) for v in (param.num, param.channels, param.height, param.width))
                  for i in range(tops)]
    if len(shapes) == 1:
        shapes = shapes * tops
    return LayerShapes(tuple(shapes[:tops]))


@shape_rule("Parameter")
def parameter(layer, bottoms):
    shape = tuple(int(d) for d in layer.parameter_param.shape.dim)
    return LayerShapes((shape,), (shape,))


@shape_rule(
    "SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss", "InfogainLoss",
    "MultinomialLogisticLoss", "ContrastiveLoss", "MultiBoxLoss", "SmoothL1Loss",
)
def loss(layer, bottoms):
    # A loss is a scalar; SoftmaxWithLoss may also expose its probabilities.
    tops = [()]
    if len(layer.top) > 1 and bottoms:
        tops.append(bottoms[0])
    return LayerShapes(tuple(tops))


@shape_rule("Accuracy")
def accuracy(layer, bottoms):
    tops = [()]
    if len(layer.top) > 1 and bottoms:
        axis = layer.accuracy_param.axis % len(bottoms[0])
        tops.append((bottoms[0][axis],))
    return LayerShapes(tuple(tops))
