"""Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate; with broadcasting.

A squeeze-excite Multiply of an image by a (N, 1, 1, C) gate becomes Caffe's
Scale with two bottoms (the gate reshaped to (N, C), axis 0): Caffe
broadcasts a second bottom over the trailing axes it does not cover. Operands
that do not line up so are tiled (Caffe's Tile copies a size-1 axis) to the
output's shape first.
"""

from __future__ import annotations

import numpy as np

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


def elementwise(ctx, operation, call, kind: str, values=None, name=None) -> None:
    """An elementwise op of same-shaped tensors as Caffe's Eltwise; other shapes are broadcast first."""
    values = values if values is not None else [ctx.value(t) for t in call.inputs]
    name = name or ctx.layer_name(operation, call)
    start = len(ctx.net.layer)
    if len({_keras_shape(ctx, v) for v in values}) > 1:
        if _scale_or_bias(ctx, operation, call, kind, values, name):
            return
        values = tiled(ctx, name, values, call.outputs[0])
    layout = values[0].layout
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
        ctx.note(operation, ctx.caffe_types(start), "min(a, b) = -max(-a, -b)")
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
    if len(ctx.net.layer) - start > 1:
        ctx.note(operation, ctx.caffe_types(start), f"broadcast {kind}: the operands tiled to the output's shape")
    ctx.emit(operation, call, 0, call.outputs[0], name, layout, non_negative=non_negative)


def _keras_shape(ctx, value) -> tuple:
    if value.layout.flattened_from is not None:
        return (value.shape[0], int(np.prod(value.layout.flattened_from)))
    return tuple(value.layout.keras_shape(value.shape))


def tiled(ctx, name, values, out) -> list:
    """The operands in one layout, each tiled (Caffe's Tile) along the axes where it broadcasts."""
    from keraffe.convert.keras_to_caffe.context import CaffeValue
    from keraffe.layout import identity

    ranks = {len(v.shape) for v in values}
    if len(ranks) > 1:
        raise ConversionError(f"broadcasting tensors of ranks {sorted(ranks)} has no Caffe form")
    rank = ranks.pop()
    layout = next((v.layout for v in values if v.layout.flattened_from is None), identity(rank))
    target = tuple(ctx.batch_size if d is None else int(d) for d in out.shape)
    result = []
    for index, value in enumerate(values):
        keras_shape = list(_keras_shape(ctx, value))
        blob = ctx.blob_in(value, layout, name)
        for axis, size in enumerate(target):
            if keras_shape[axis] == size:
                continue
            if keras_shape[axis] != 1 or axis == 0:
                raise ConversionError(f"cannot broadcast shape {tuple(keras_shape[1:])} to {target[1:]}")
            layer = ctx.add("Tile", ctx.unique(f"{name}/tile{index}_{axis}"), [blob])
            layer.tile_param.axis = layout.perm[axis]
            layer.tile_param.tiles = size
            blob = layer.top[0]
            keras_shape[axis] = size
        result.append(CaffeValue(blob, layout, layout.caffe_shape(tuple(keras_shape)), value.non_negative))
    return result


def _scale_or_bias(ctx, operation, call, kind, values, name) -> bool:
    """Two operands, one broadcast over a run of the other's blob axes: Caffe's Scale or Bias with two bottoms.

    Returns False (nothing written) where the operands do not line up so.
    """
    if len(values) != 2 or kind not in ("prod", "sum", "subtract"):
        return False
    if any(v.layout.flattened_from is not None for v in values):
        return False
    big, small = sorted(values, key=lambda v: -len([d for d in v.shape if d != 1]))
    subtracted_is_small = values[1] is small
    if small.layout != big.layout:
        keras_shape = small.layout.keras_shape(small.shape)
        shape = [0] * len(keras_shape)
        for keras_axis, caffe_axis in enumerate(big.layout.perm):
            shape[caffe_axis] = keras_shape[keras_axis]
        if _broadcast_axis(big, type(small)("", big.layout, tuple(shape))) is None:
            return False
        small = type(small)(ctx.blob_in(small, big.layout, name), big.layout, tuple(shape))
    placed = _broadcast_axis(big, small)
    if placed is None:
        return False
    start = len(ctx.net.layer)
    big_blob, small_blob = big.blob, small.blob
    if kind == "subtract":
        # a - b = a + (-b): negate the subtracted operand (a Bias adds; the result is negated if it was the big one).
        negate = ctx.add("Power", ctx.unique(f"{name}/negate"), [small_blob if subtracted_is_small else big_blob])
        negate.power_param.scale = -1.0
        if subtracted_is_small:
            small_blob = negate.top[0]
        else:
            big_blob = negate.top[0]
    axis, segment = placed
    reshape = ctx.add("Reshape", ctx.unique(f"{name}/broadcast"), [small_blob])
    reshape.reshape_param.shape.dim.extend(segment)
    if axis == 0:
        del reshape.reshape_param.shape.dim[:]
        reshape.reshape_param.shape.dim.extend((0,) + segment[1:])
    type_name = "Scale" if kind == "prod" else "Bias"
    layer = ctx.add(type_name, name, [big_blob, reshape.top[0]])
    param = layer.scale_param if kind == "prod" else layer.bias_param
    param.axis = axis
    ctx.note(operation, ctx.caffe_types(start), f"broadcast {kind} as Caffe {type_name} with two bottoms")
    ctx.emit(operation, call, 0, call.outputs[0], name, big.layout)
    return True


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
