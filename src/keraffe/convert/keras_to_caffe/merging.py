"""Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate; with broadcasting where Caffe has it.

A squeeze-excite Multiply of an image by a (N, 1, 1, C) gate becomes Caffe's
Scale with two bottoms (the gate reshaped to (N, C), axis 0): Caffe
broadcasts a second bottom over the trailing axes it does not cover.
"""

from __future__ import annotations

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.errors import ConversionError


def _broadcast_axis(big, small) -> tuple[int, tuple[int, ...]] | None:
    """Where a smaller blob's non-unit axes sit inside a bigger one (Caffe's Scale/Bias rule).

    Keras' operands are per sample: when the smaller blob's other axes follow
    the batch axis, the batch axis is kept (Scale/Bias at axis 0, the Reshape
    keeping the batch as 0), so the net stays right at any batch size, not
    only the batch of one it is written with.
    """
    shape = list(small.shape)
    dims = [i for i, d in enumerate(shape) if d != 1]
    inner = [i for i in dims if i != 0]
    if inner == list(range(1, len(inner) + 1)):
        dims = [0] + inner
    if not dims:
        return None
    first, last = dims[0], dims[-1]
    segment = tuple(shape[first: last + 1])
    if tuple(big.shape[first: last + 1]) != segment:
        return None
    return first, segment


def elementwise(ctx, operation, call, kind: str) -> None:
    values = [ctx.value(t) for t in call.inputs]
    name = ctx.layer_name(operation, call)
    layout = values[0].layout
    shapes = {v.shape for v in values}
    if len(shapes) > 1:
        _broadcast(ctx, operation, call, kind, values, name)
        return
    blobs = [ctx.blob_in(v, layout, name) for v in values]
    non_negative = all(v.non_negative for v in values) and kind in ("sum", "prod", "max", "average")
    if kind == "min":
        negated = []
        for i, blob in enumerate(blobs):
            layer = ctx.add("Power", ctx.unique(f"{name}/negate{i}"), [blob])
            layer.power_param.scale = -1.0
            negated.append(layer.top[0])
        biggest = ctx.add("Eltwise", ctx.unique(f"{name}/max"), negated)
        biggest.eltwise_param.operation = biggest.eltwise_param.MAX
        layer = ctx.add("Power", name, [biggest.top[0]])
        layer.power_param.scale = -1.0
        ctx.note(operation, ["Power", "Eltwise", "Power"], "min(a, b) = -max(-a, -b)")
        ctx.emit(operation, call, 0, call.outputs[0], name, layout)
        return
    layer = ctx.add("Eltwise", name, blobs)
    param = layer.eltwise_param
    if kind == "prod":
        param.operation = param.PROD
    elif kind == "max":
        param.operation = param.MAX
    elif kind == "subtract":
        param.coeff.extend([1.0, -1.0])
    elif kind == "average":
        param.coeff.extend([1.0 / len(blobs)] * len(blobs))
    elif kind != "sum":
        raise ConversionError(f"unknown element-wise operation {kind}")
    ctx.emit(operation, call, 0, call.outputs[0], name, layout, non_negative=non_negative)


def _broadcast(ctx, operation, call, kind, values, name):
    if len(values) != 2 or kind not in ("prod", "sum"):
        raise ConversionError(f"broadcasting {kind} of shapes {[v.shape for v in values]} has no Caffe form")
    big, small = sorted(values, key=lambda v: -len([d for d in v.shape if d != 1]))
    big_blob = ctx.blob_in(big, big.layout, name)
    if small.layout != big.layout:
        keras_shape = small.layout.keras_shape(small.shape)
        shape = [0] * len(keras_shape)
        for keras_axis, caffe_axis in enumerate(big.layout.perm):
            shape[caffe_axis] = keras_shape[keras_axis]
        small = type(small)(ctx.blob_in(small, big.layout, name), big.layout, tuple(shape))
    placed = _broadcast_axis(big, small)
    if placed is None:
        raise ConversionError(
            f"cannot broadcast shape {small.shape} over {big.shape} in Caffe (its Scale/Bias need the smaller "
            "blob's axes to match a run of the bigger one's)"
        )
    axis, segment = placed
    reshape = ctx.add("Reshape", ctx.unique(f"{name}/broadcast"), [small.blob])
    reshape.reshape_param.shape.dim.extend(segment)
    if axis == 0:
        del reshape.reshape_param.shape.dim[:]
        reshape.reshape_param.shape.dim.extend((0,) + segment[1:])
    type_name = "Scale" if kind == "prod" else "Bias"
    layer = ctx.add(type_name, name, [big_blob, reshape.top[0]])
    param = layer.scale_param if kind == "prod" else layer.bias_param
    param.axis = axis
    ctx.note(operation, ["Reshape", type_name], f"broadcast {kind} as Caffe {type_name} with two bottoms")
    ctx.emit(operation, call, 0, call.outputs[0], name, big.layout)


@keras_layer("Add")
def add(ctx, operation, call):
    elementwise(ctx, operation, call, "sum")


@keras_layer("Subtract")
def subtract(ctx, operation, call):
    elementwise(ctx, operation, call, "subtract")


@keras_layer("Multiply")
def multiply(ctx, operation, call):
    elementwise(ctx, operation, call, "prod")


@keras_layer("Average")
def average(ctx, operation, call):
    elementwise(ctx, operation, call, "average")


@keras_layer("Maximum")
def maximum(ctx, operation, call):
    elementwise(ctx, operation, call, "max")


@keras_layer("Minimum")
def minimum(ctx, operation, call):
    elementwise(ctx, operation, call, "min")


@keras_layer("Concatenate")
def concatenate(ctx, operation, call):
    from keraffe.layout import identity

    values = [ctx.value(t) for t in call.inputs]
    name = ctx.layer_name(operation, call)
    layout = values[0].layout
    if layout.flattened_from is not None or any(v.layout != layout for v in values):
        layout = identity(len(values[0].shape)) if layout.flattened_from is not None else layout
    blobs = [ctx.blob_in(v, layout, name) for v in values]
    rank = len(values[0].shape)
    axis = layout.perm[operation.axis % rank]
    layer = ctx.add("Concat", name, blobs)
    if axis != 1:
        layer.concat_param.axis = axis
    ctx.emit(operation, call, 0, call.outputs[0], name, layout, non_negative=all(v.non_negative for v in values))
