"""Eltwise, Mul, Concat, Slice, Flatten, Reshape, Squeeze, Permute, Crop, Tile, Reduction, ArgMax, ShuffleChannel,
Axpy, Reorg, SpaceToBatchND and BatchToSpaceND.

Layout is what matters here: Permute costs nothing (the Keras tensor stays, its
recorded layout changes), Flatten of an NHWC image keeps Keras' order and lets
InnerProduct reorder its weights instead, and only the layers whose meaning
depends on Caffe's memory order (Reshape, ArgMax, Reduction) see Caffe's order.
"""

from __future__ import annotations

import keras

from keraffe import keras_layers
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.shapes import canonical_axis, count
from keraffe.caffe.shapes.resize import DARKNET_REORG, reorg_setting
from keraffe.caffe.shapes.tensor_ops import concat_axis, permute_order, slice_axis, space_to_batch_setting
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.convert.caffe_to_keras.context import KerasValue
from keraffe.errors import ConversionError
from keraffe.layout import NHWC, Layout, batch_first, flattened_nhwc, identity


def _common_layout(ctx, node):
    """Every bottom in the first bottom's layout (Caffe order if that one is a flattened image)."""
    layout = ctx.value(node, 0).layout
    if layout.flattened_from is not None:
        layout = identity(layout.rank)
    return [ctx.input(node, i, layout) for i in range(len(node.inputs))], layout


@caffe_layer("Eltwise")
def eltwise(ctx, node):
    param = node.param.eltwise_param
    tensors, layout = _common_layout(ctx, node)
    name = ctx.blob_name(node)
    if param.operation == pb.EltwiseParameter.PROD:
        layer = keras.layers.Multiply(name=name)
    elif param.operation == pb.EltwiseParameter.MAX:
        layer = keras.layers.Maximum(name=name)
    else:
        coefficients = list(param.coeff) or [1.0] * len(tensors)
        if all(c == 1.0 for c in coefficients):
            layer = keras.layers.Add(name=name)
        elif coefficients == [1.0, -1.0]:
            layer = keras.layers.Subtract(name=name)
        else:
            layer = keras_layers.WeightedSum(coefficients, name=name)
    ctx.emit(node, 0, layer(tensors), layout)


@caffe_layer("Mul")
def mul(ctx, node):
    """Synopsys fork (TF's Mul): a broadcasting product, as in TF-converted squeeze-excite blocks.

    Both bottoms are taken in the first one's layout; a layout permutes axes the
    same way for both, so their size-1 axes still line up, and Keras' Multiply
    broadcasts them.
    """
    first, second = ctx.in_shape(node, 0), ctx.in_shape(node, 1)
    if len(first) != len(second) or first[0] != second[0]:
        raise ConversionError(
            f"layer '{node.name}' (Mul): bottoms {first} and {second} broadcast over the batch axis or differ "
            "in rank; only same-rank bottoms with one batch size convert"
        )
    tensors, layout = _common_layout(ctx, node)
    ctx.emit(node, 0, keras.layers.Multiply(name=ctx.blob_name(node))(tensors), layout)


@caffe_layer("Axpy")
def axpy(ctx, node):
    """SENet's fused a * x + y, as a broadcast multiply and an add."""
    x = ctx.value(node, 1)
    if x.layout != NHWC:
        raise ConversionError(f"layer '{node.name}' (Axpy) needs an NCHW image blob as its second bottom")
    a = ctx.input(node, 0, NHWC)
    y = ctx.input(node, 2, NHWC)
    scaled = keras.layers.Multiply(name=ctx.helper_name(node, "scale"))([x.tensor, a])
    ctx.emit(node, 0, keras.layers.Add(name=ctx.blob_name(node))([scaled, y]), NHWC)


@caffe_layer("Concat")
def concat(ctx, node):
    tensors, layout = _common_layout(ctx, node)
    axis = layout.keras_axis(concat_axis(node.param, layout.rank))
    if len(tensors) == 1:
        ctx.alias(node, 0, KerasValue(tensors[0], layout), note="Concat of one bottom")
        return
    ctx.emit(node, 0, keras.layers.Concatenate(axis=axis, name=ctx.blob_name(node))(tensors), layout)


@caffe_layer("Slice")
def slice_(ctx, node):
    value = ctx.value(node)
    layout = value.layout if value.layout.flattened_from is None else identity(value.layout.rank)
    x = ctx.input(node, 0, layout)
    caffe_axis = slice_axis(node.param, layout.rank)
    axis = layout.keras_axis(caffe_axis)
    begin = 0
    for index in range(len(node.outputs)):
        size = ctx.out_shape(node, index)[caffe_axis]
        layer = keras_layers.AxisSlice(axis, begin, begin + size, name=ctx.blob_name(node, index))
        ctx.emit(node, index, layer(x), layout)
        begin += size


@caffe_layer("Flatten")
def flatten(ctx, node):
    value = ctx.value(node)
    in_shape = ctx.in_shape(node)
    out_shape = ctx.out_shape(node)
    rank = len(in_shape)
    start = canonical_axis(node.param.flatten_param.axis, rank)
    end = canonical_axis(node.param.flatten_param.end_axis, rank)
    name = ctx.blob_name(node)
    if start == 1 and end == rank - 1:
        flat = keras.layers.Flatten(name=name)(value.tensor)
        if value.layout == NHWC and in_shape[1] > 1 and count(in_shape, 2) > 1:
            ctx.emit(node, 0, flat, flattened_nhwc(tuple(in_shape[1:])))
        elif value.layout.is_identity or value.layout == NHWC or value.layout.flattened_from is not None:
            layout = value.layout if value.layout.flattened_from is not None else identity(2)
            ctx.emit(node, 0, flat, layout)
        else:
            flat = keras.layers.Flatten(name=name)(ctx.input(node, 0, identity(rank)))
            ctx.emit(node, 0, flat, identity(2))
        return
    x = ctx.input(node, 0, identity(rank))
    ctx.emit(node, 0, keras.layers.Reshape(out_shape[1:], name=name)(x), identity(len(out_shape)))


@caffe_layer("Reshape")
def reshape(ctx, node):
    """A Reshape of Caffe's order, after the Keras batch axis.

    The batch is Caffe's axis 0, or axis 1 for a time-major sequence (T, N, ...);
    the Reshape must keep every axis up to it, and reshapes what follows.
    """
    in_shape = ctx.in_shape(node)
    out_shape = ctx.out_shape(node)
    value = ctx.value(node)
    batch = value.layout.perm[0] if value.layout.flattened_from is None else 0
    if out_shape[:batch + 1] != in_shape[:batch + 1]:
        raise ConversionError(
            f"layer '{node.name}' (Reshape) changes the batch axis ({in_shape} -> {out_shape}); "
            "Keras models keep the batch axis"
        )
    factor = node.param.reshape_param.pixelshuffler
    if factor != 1:
        _pixel_shuffle(ctx, node, factor)
        return
    layout = batch_first(value.layout) if batch else identity(len(in_shape))
    x = ctx.input(node, 0, layout)
    out_layout = Layout((batch,) + tuple(a for a in range(len(out_shape)) if a != batch))
    target = out_layout.keras_shape(out_shape)[1:]
    ctx.emit(node, 0, keras.layers.Reshape(target, name=ctx.blob_name(node))(x), out_layout)


def _pixel_shuffle(ctx, node, factor: int) -> None:
    """The Synopsys fork's Reshape with ``pixelshuffler`` r: PyTorch's PixelShuffle.

    Output (c, h*r + i, w*r + j) is input channel c*r*r + i*r + j at (h, w). On
    NHWC that is a split of the channels into (C, r, r), a move of the two r axes
    next to H and W, and a merge: three standard layers, no arithmetic.
    """
    _, channels, height, width = ctx.in_shape(node)
    out_channels = channels // (factor * factor)
    name = ctx.blob_name(node)
    x = ctx.input_nhwc(node)
    x = keras.layers.Reshape((height, width, out_channels, factor, factor), name=f"{name}_split")(x)
    x = keras.layers.Permute((1, 4, 2, 5, 3), name=f"{name}_interleave")(x)
    x = keras.layers.Reshape((height * factor, width * factor, out_channels), name=name)(x)
    ctx.emit(node, 0, x, NHWC)


@caffe_layer("Squeeze")
def squeeze(ctx, node):
    """Size-1 axes dropped: the Keras tensor loses the same axes and keeps its order (no data moves)."""
    value = ctx.value(node)
    in_shape, out_shape = ctx.in_shape(node), ctx.out_shape(node)
    if out_shape[:1] != in_shape[:1]:
        raise ConversionError(f"layer '{node.name}' (Squeeze) drops the batch axis ({in_shape} -> {out_shape}); "
                              "Keras models keep the batch axis")
    if value.layout.flattened_from is not None:
        value = KerasValue(ctx.input(node, 0, identity(value.layout.rank)), identity(value.layout.rank))
    param_axes = {canonical_axis(a, len(in_shape)) for a in node.param.squeeze_param.axis}
    dropped = param_axes or {i for i, d in enumerate(in_shape) if d == 1 and i > 0}
    kept = [a for a in value.layout.perm if a not in dropped]
    renumber = {a: i for i, a in enumerate(sorted(kept))}
    layout = Layout(tuple(renumber[a] for a in kept))
    keras_shape = tuple(in_shape[a] for a in kept)[1:]
    ctx.emit(node, 0, keras.layers.Reshape(keras_shape, name=ctx.blob_name(node))(value.tensor), layout)


@caffe_layer("Permute")
def permute(ctx, node):
    """No data moves: the output blob is the same Keras tensor read with another axis order.

    That holds when Permute moves Caffe's axis 0 too (a CRNN's (N, C, H, W) ->
    (W, N, C, H)): the Keras batch axis stays first and the layout says which
    Caffe axis it is; a later layer that would need the batch moved refuses.
    """
    value = ctx.value(node)
    if value.layout.flattened_from is not None:
        value = KerasValue(ctx.input(node, 0, identity(value.layout.rank)), identity(value.layout.rank))
    order = permute_order(node.param, value.layout.rank)
    layout = Layout(tuple(order.index(p) for p in value.layout.perm))
    ctx.alias(node, 0, KerasValue(value.tensor, layout), note=f"Permute {order}: same Keras tensor, layout "
                                                               f"{layout.describe()}")


@caffe_layer("Crop")
def crop(ctx, node):
    in_shape = ctx.in_shape(node)
    out_shape = ctx.out_shape(node)
    rank = len(in_shape)
    param = node.param.crop_param
    axis = canonical_axis(param.axis, rank)
    offsets = list(param.offset)
    begins = [0] * rank
    for i in range(axis, rank):
        begins[i] = offsets[0] if len(offsets) == 1 else (offsets[i - axis] if offsets else 0)
    name = ctx.blob_name(node)
    value = ctx.value(node)
    if rank == 4 and axis >= 2 and value.layout == NHWC:
        cropping = tuple((begins[i], in_shape[i] - begins[i] - out_shape[i]) for i in (2, 3))
        ctx.emit(node, 0, keras.layers.Cropping2D(cropping, name=name)(value.tensor), NHWC)
        return
    layout = value.layout if value.layout.flattened_from is None else identity(rank)
    x = ctx.input(node, 0, layout)
    changed = [i for i in range(rank) if out_shape[i] != in_shape[i] or begins[i]]
    for n, caffe_axis in enumerate(changed):
        layer_name = name if n == len(changed) - 1 else ctx.helper_name(node, f"crop_axis{caffe_axis}")
        x = keras_layers.AxisSlice(layout.keras_axis(caffe_axis), begins[caffe_axis],
                                   begins[caffe_axis] + out_shape[caffe_axis], name=layer_name)(x)
    if not changed:
        ctx.alias(node, 0, KerasValue(x, layout), note="Crop that keeps everything")
        return
    ctx.emit(node, 0, x, layout)


@caffe_layer("Tile")
def tile(ctx, node):
    value = ctx.value(node)
    layout = value.layout if value.layout.flattened_from is None else identity(value.layout.rank)
    x = ctx.input(node, 0, layout)
    axis = layout.keras_axis(canonical_axis(node.param.tile_param.axis, layout.rank))
    ctx.emit(node, 0, keras_layers.Tile(axis, node.param.tile_param.tiles, name=ctx.blob_name(node))(x), layout)


_REDUCTIONS = {pb.ReductionParameter.SUM: "sum", pb.ReductionParameter.ASUM: "asum",
               pb.ReductionParameter.SUMSQ: "sumsq", pb.ReductionParameter.MEAN: "mean"}


@caffe_layer("Reduction")
def reduction(ctx, node):
    p = node.param.reduction_param
    rank = len(ctx.in_shape(node))
    axis = canonical_axis(p.axis, rank)
    if axis == 0:
        raise ConversionError(f"layer '{node.name}' (Reduction) reduces over the batch axis")
    x = ctx.input(node, 0, identity(rank))
    layer = keras_layers.Reduction(_REDUCTIONS[p.operation], axis, p.coeff, name=ctx.blob_name(node))
    ctx.emit(node, 0, layer(x), identity(axis))


@caffe_layer("ArgMax")
def argmax(ctx, node):
    p = node.param.argmax_param
    rank = len(ctx.in_shape(node))
    axis = canonical_axis(p.axis, rank) if p.HasField("axis") else None
    if axis == 0:
        raise ConversionError(f"layer '{node.name}' (ArgMax) works across the batch axis")
    x = ctx.input(node, 0, identity(rank))
    layer = keras_layers.ArgMax(p.top_k, axis, p.out_max_val, name=ctx.blob_name(node))
    ctx.emit(node, 0, layer(x), identity(len(ctx.out_shape(node))))


@caffe_layer("ShuffleChannel")
def shuffle_channel(ctx, node):
    """(N, g, C/g, H, W) -> (N, C/g, g, H, W) on channels, done on NHWC's last axis."""
    groups = node.param.shuffle_channel_param.group
    n, c, h, w = ctx.in_shape(node)
    if c % groups:
        raise ConversionError(f"layer '{node.name}' (ShuffleChannel): group {groups} does not divide {c} channels")
    x = ctx.input_nhwc(node)
    x = keras.layers.Reshape((h, w, groups, c // groups), name=ctx.helper_name(node, "split"))(x)
    x = keras.layers.Permute((1, 2, 4, 3), name=ctx.helper_name(node, "swap"))(x)
    ctx.emit(node, 0, keras.layers.Reshape((h, w, c), name=ctx.blob_name(node))(x), NHWC)


@caffe_layer("Reorg", DARKNET_REORG)
def reorg(ctx, node):
    """Darknet's reorg (MobileNet-YOLO's Reorg, the YOLOv2 port's darknet_reorg Python layer), as three moves.

    Darknet's loop is not a space-to-depth of its input: it reads the (C, H, W)
    buffer as (C/s², H·s, W·s), takes TensorFlow's space-to-depth of that, and
    reads the result as (C·s², H/s, W/s). Reversed, it is depth-to-space (ONNX's
    DCR order). Each is a Reshape, a Permute and a Reshape on Caffe's order.
    """
    stride, reverse = reorg_setting(node.param)
    _, channels, height, width = ctx.in_shape(node)
    x = ctx.input(node, 0, identity(4))
    if reverse:
        fewer = channels // (stride * stride)
        x = keras.layers.Reshape((stride, stride, fewer, height, width), name=ctx.helper_name(node, "split"))(x)
        x = keras.layers.Permute((3, 4, 1, 5, 2), name=ctx.helper_name(node, "interleave"))(x)
        x = keras.layers.Reshape((fewer, height * stride, width * stride), name=ctx.blob_name(node))(x)
    else:
        fewer = channels // (stride * stride)
        x = keras.layers.Reshape((fewer, height, stride, width, stride), name=ctx.helper_name(node, "split"))(x)
        x = keras.layers.Permute((3, 5, 1, 2, 4), name=ctx.helper_name(node, "gather"))(x)
        x = keras.layers.Reshape((channels * stride * stride, height // stride, width // stride),
                                 name=ctx.blob_name(node))(x)
    ctx.emit(node, 0, x, identity(4))


@caffe_layer("SpaceToBatchND", "BatchToSpaceND")
def space_to_batch(ctx, node):
    """The Synopsys fork's TF ops on the blob's own axes 1..M, in Caffe's order.

    TF's dilated convolution (SpaceToBatchND, a convolution, BatchToSpaceND) is
    folded into one dilated convolution before this (keraffe.passes.fold_space_to_batch);
    what is left moves values between the batch and the blocked axes.
    """
    rank = len(ctx.in_shape(node))
    x = ctx.input(node, 0, identity(rank))
    if node.type == "SpaceToBatchND":
        blocks, pads = space_to_batch_setting(node.param, rank, "paddings")
        layer = keras_layers.SpaceToBatchND(blocks, pads, name=ctx.blob_name(node))
    else:
        blocks, crops = space_to_batch_setting(node.param, rank, "crops")
        layer = keras_layers.BatchToSpaceND(blocks, crops, name=ctx.blob_name(node))
    ctx.emit(node, 0, layer(x), identity(rank))
