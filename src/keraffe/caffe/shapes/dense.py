"""InnerProduct and Embed."""

from __future__ import annotations

from keraffe.caffe.shapes import LayerShapes, canonical_axis, count, expect_bottoms, shape_rule
from keraffe.errors import ShapeError


@shape_rule("InnerProduct")
def inner_product(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    param = layer.inner_product_param
    bottom = bottoms[0]
    axis = canonical_axis(param.axis, len(bottom))
    inputs = count(bottom, axis)
    outputs = param.num_output
    if outputs <= 0:
        raise ShapeError("inner_product_param.num_output must be positive")
    weight = (inputs, outputs) if param.transpose else (outputs, inputs)
    params = [weight] + ([(outputs,)] if param.bias_term else [])
    top = bottom[:axis] + (outputs,)
    return LayerShapes((top,), tuple(params), count(bottom, 0, axis) * inputs * outputs)


@shape_rule("Embed")
def embed(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    param = layer.embed_param
    params = [(param.input_dim, param.num_output)] + ([(param.num_output,)] if param.bias_term else [])
    return LayerShapes((bottoms[0] + (param.num_output,),), tuple(params))
