"""keraffe's own Keras layers back to the Caffe layers they were made from, and keras.applications' own layers.

A Caffe net converted to Keras and back comes out with the same layer types
and weights. Layers whose Caffe type the target lacks are refused by name.
"""

from __future__ import annotations

import numpy as np

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.errors import ConversionError
from keraffe.host_memory import weight_array
from keraffe.layout import NHWC, Layout, identity



def _unary(ctx, operation, call, type_name):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    layer = ctx.add(type_name, name, [value.blob])
    ctx.emit(operation, call, 0, call.outputs[0], name, value.layout)
    return layer


@keras_layer("keraffe>AbsVal")
def absval(ctx, operation, call):
    _unary(ctx, operation, call, "AbsVal")


@keras_layer("keraffe>Power")
def power(ctx, operation, call):
    p = _unary(ctx, operation, call, "Power").power_param
    p.power, p.scale, p.shift = operation.power, operation.scale, operation.shift


@keras_layer("keraffe>Exp")
def exp(ctx, operation, call):
    p = _unary(ctx, operation, call, "Exp").exp_param
    p.base, p.scale, p.shift = operation.base, operation.scale, operation.shift


@keras_layer("keraffe>Log")
def log(ctx, operation, call):
    p = _unary(ctx, operation, call, "Log").log_param
    p.base, p.scale, p.shift = operation.base, operation.scale, operation.shift


@keras_layer("keraffe>Threshold")
def threshold(ctx, operation, call):
    _unary(ctx, operation, call, "Threshold").threshold_param.threshold = operation.threshold


@keras_layer("keraffe>Clip")
def clip(ctx, operation, call):
    p = _unary(ctx, operation, call, "Clip").clip_param
    p.min, p.max = operation.min, operation.max


@keras_layer("keraffe>Swish")
def swish(ctx, operation, call):
    _unary(ctx, operation, call, "Swish").swish_param.beta = operation.beta


@keras_layer("keraffe>WeightedSum")
def weighted_sum(ctx, operation, call):
    values = [ctx.value(t) for t in call.inputs]
    layout = values[0].layout
    name = ctx.layer_name(operation, call)
    layer = ctx.add("Eltwise", name, [ctx.blob_in(v, layout, name) for v in values])
    layer.eltwise_param.coeff.extend(operation.coefficients)
    ctx.emit(operation, call, 0, call.outputs[0], name, layout)


@keras_layer("CustomScaleLayer")
def custom_scale(ctx, operation, call):
    """keras.applications.InceptionResNetV2's residual: x + r * scale."""
    values = [ctx.value(t) for t in call.inputs]
    layout = values[0].layout
    name = ctx.layer_name(operation, call)
    layer = ctx.add("Eltwise", name, [ctx.blob_in(v, layout, name) for v in values])
    layer.eltwise_param.coeff.extend([1.0, float(operation.scale)])
    ctx.emit(operation, call, 0, call.outputs[0], name, layout)


@keras_layer("keraffe>LRN")
def lrn(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    layer = ctx.add("LRN", name, [ctx.blob_nchw(value, name)])
    p = layer.lrn_param
    p.local_size, p.alpha, p.beta, p.k = operation.local_size, operation.alpha, operation.beta, operation.k
    if operation.region == "within_channel":
        p.norm_region = p.WITHIN_CHANNEL
    ctx.emit(operation, call, 0, call.outputs[0], name, NHWC)


def _pooling(ctx, operation, call, method, with_mask=False):
    """One Caffe Pooling for a keraffe pooling layer (its output size stored), FLOOR rounding where needed."""
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    tops = [name, ctx.unique(f"{name}/mask")] if with_mask else None
    layer = ctx.add("Pooling", name, [ctx.blob_nchw(value, name)], tops)
    p = layer.pooling_param
    p.pool = p.MAX if method == "max" else p.AVE
    p.kernel_h, p.kernel_w = operation.pool_size
    p.stride_h, p.stride_w = operation.strides
    p.pad_h, p.pad_w = operation.padding
    from keraffe.caffe.shapes.pooling import pool_geometry

    if pool_geometry(layer, value.shape).output != tuple(operation.output_size):
        if not ctx.target.floor_pooling:
            raise ConversionError(f"'{name}' rounds its output size down; target '{ctx.target.name}' always rounds up")
        p.round_mode = p.FLOOR
    for index, top in enumerate(layer.top):
        ctx.emit(operation, call, index, call.outputs[index], top, NHWC)


@keras_layer("keraffe>CaffePooling2D")
def caffe_pooling(ctx, operation, call):
    _pooling(ctx, operation, call, operation.method)


@keras_layer("keraffe>MaxPoolingWithMask")
def max_pooling_with_mask(ctx, operation, call):
    """Caffe's MAX Pooling with its second top, the argmax mask (h * W + w) SegNet's Upsample reads."""
    _pooling(ctx, operation, call, "max", with_mask=True)


@keras_layer("keraffe>AxisScale")
def axis_scale(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    caffe_shape = list(Layout(value.layout.perm).caffe_shape((1,) + tuple(operation.param_shape)))
    covered = [i for i, d in enumerate(caffe_shape) if d != 1] or [1]
    axis, last = covered[0], covered[-1]
    arrays = []
    for used, variable in ((operation.use_scale, getattr(operation, "scale", None)),
                           (operation.use_bias, getattr(operation, "bias", None))):
        if used:
            full = value.layout.axes_to_caffe(weight_array(variable)[None])
            arrays.append(full.reshape(caffe_shape)[tuple(slice(None) if axis <= i <= last else 0
                                                         for i in range(len(caffe_shape)))])
    if operation.use_scale:
        layer = ctx.add("Scale", name, [value.blob])
        p = layer.scale_param
        p.bias_term = bool(operation.use_bias)
    else:
        layer = ctx.add("Bias", name, [value.blob])
        p = layer.bias_param
    if axis != 1:
        p.axis = axis
    if last - axis + 1 != 1:
        p.num_axes = last - axis + 1
    ctx.weights[name] = arrays
    ctx.emit(operation, call, 0, call.outputs[0], name, value.layout)


@keras_layer("keraffe>AxisSlice")
def axis_slice(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    rank = len(value.shape)
    axis = value.layout.perm[operation.axis % rank]
    size = value.shape[axis]
    layer = ctx.add("Slice", name, [value.blob], [])
    layer.slice_param.axis = axis
    tops, unused = [], []
    if operation.begin:
        layer.slice_param.slice_point.append(operation.begin)
        tops.append(ctx.unique(f"{name}/before"))
        unused.append(tops[-1])
    tops.append(name)
    if operation.end < size:
        layer.slice_param.slice_point.append(operation.end)
        tops.append(ctx.unique(f"{name}/after"))
        unused.append(tops[-1])
    layer.top.extend(tops)
    if unused:
        ctx.add("Silence", ctx.unique(f"{name}/discard"), unused, [])
    ctx.emit(operation, call, 0, call.outputs[0], name, value.layout)


@keras_layer("keraffe>GroupedConv2DTranspose")
def grouped_deconv(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    (top, bottom), (left, right) = operation.cropping
    if top != bottom or left != right:
        raise ConversionError(f"'{name}': uneven cropping of a grouped transposed convolution")
    layer = ctx.add("Deconvolution", name, [ctx.blob_nchw(value, name)])
    from keraffe.layout import deconv_kernel_to_caffe
    from keraffe.windows import set_conv_param

    weight = deconv_kernel_to_caffe(weight_array(operation.kernel))
    set_conv_param(layer.convolution_param, operation.filters, operation.kernel_size, operation.strides, (top, left),
                   operation.dilation_rate, operation.groups, operation.use_bias)
    ctx.weights[name] = [weight] + ([weight_array(operation.bias)] if operation.use_bias else [])
    ctx.emit(operation, call, 0, call.outputs[0], name, NHWC)


@keras_layer("keraffe>L2Normalize")
def l2_normalize(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    layer = ctx.add("Normalize", name, [ctx.blob_nchw(value, name)])
    p = layer.norm_param
    p.across_spatial, p.channel_shared, p.eps = operation.across_spatial, operation.channel_shared, operation.eps
    scale = weight_array(operation.scale)
    ctx.weights[name] = [scale.reshape(()) if operation.channel_shared else scale]
    ctx.emit(operation, call, 0, call.outputs[0], name, NHWC)


@keras_layer("keraffe>Interp")
def interp(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    layer = ctx.add("Interp", name, [ctx.blob_nchw(value, name)])
    p = layer.interp_param
    p.height, p.width = operation.output_size
    if operation.pad_beg:
        p.pad_beg = operation.pad_beg
    if operation.pad_end:
        p.pad_end = operation.pad_end
    ctx.emit(operation, call, 0, call.outputs[0], name, NHWC)


@keras_layer("keraffe>MVN")
def mvn(ctx, operation, call):
    """Caffe's MVN normalises each item over axes 2.. (1.. across channels); the Keras axes must be those.

    Caffe's top is always 4-axis ((N, C, L) becomes (N, C, L, 1)), so a blob of
    fewer axes gets a Reshape back to its own shape.
    """
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    rank = len(value.shape)
    axes = {value.layout.perm[a % rank] for a in operation.axes} if value.layout.flattened_from is None else None
    across = axes == set(range(1, rank))
    if rank > 4 or axes is None or not (across or axes == set(range(2, rank))):
        raise ConversionError(
            f"'{name}' (MVN) normalises over Keras axes {list(operation.axes)} of a tensor whose Caffe blob has "
            f"shape {value.shape}; Caffe's MVN normalises a blob of at most 4 axes over axes 2 and on, or 1 and on "
            "(across_channels)")
    top = name if rank == 4 else ctx.unique(f"{name}/4d")
    p = ctx.add("MVN", top, [value.blob]).mvn_param
    if not operation.normalize_variance:
        p.normalize_variance = False
    if across:
        p.across_channels = True
    if operation.eps != p.eps:
        p.eps = operation.eps
    if rank != 4:
        reshape = ctx.add("Reshape", name, [top])  # dims of 0 copy the bottom's: (N, C, L, 1) -> (N, C, L)
        reshape.reshape_param.shape.dim.extend([0] * rank)
    ctx.emit(operation, call, 0, call.outputs[0], name, value.layout)


@keras_layer("keraffe>Tile")
def tile(ctx, operation, call):
    """Tiling along one axis is the same operation in any axis order: Caffe's Tile on that axis of the blob."""
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    rank = len(value.shape)
    if value.layout.flattened_from is not None:
        raise ConversionError(f"'{name}' (Tile) on a flattened image tensor: Caffe's flattening orders it otherwise")
    layer = ctx.add("Tile", name, [value.blob])
    layer.tile_param.axis = value.layout.perm[operation.axis % rank]
    layer.tile_param.tiles = operation.tiles
    ctx.emit(operation, call, 0, call.outputs[0], name, value.layout)


_REDUCTIONS = {"sum": "SUM", "asum": "ASUM", "sumsq": "SUMSQ", "mean": "MEAN"}


@keras_layer("keraffe>Reduction")
def reduction(ctx, operation, call):
    """Caffe's Reduction over axes ``axis``.. of the blob in Caffe's own order (the Keras layer's order too)."""
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    rank, axis = len(value.shape), operation.axis
    if value.layout.flattened_from is None and tuple(value.layout.perm[:axis]) == tuple(range(axis)):
        bottom = value.blob  # the axes reduced are the same set in either order, so no transpose is needed
    else:
        bottom = ctx.blob_in(value, identity(rank), name)
    layer = ctx.add("Reduction", name, [bottom])
    p = layer.reduction_param
    p.operation = getattr(p, _REDUCTIONS[operation.operation])
    p.axis = operation.axis
    if operation.coeff != 1.0:
        p.coeff = operation.coeff
    ctx.emit(operation, call, 0, call.outputs[0], name, identity(operation.axis))


@keras_layer("keraffe>ArgMax")
def argmax(ctx, operation, call):
    """Caffe's ArgMax. Along one axis, that axis of the blob (any order); over everything, the blob in
    Caffe's order, since the indices count positions in Caffe's flattening."""
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    rank = len(value.shape)
    along_one_axis = operation.axis is not None and value.layout.flattened_from is None
    layout = value.layout if along_one_axis else identity(rank)
    layer = ctx.add("ArgMax", name, [ctx.blob_in(value, layout, name)])
    p = layer.argmax_param
    if operation.top_k != 1:
        p.top_k = operation.top_k
    if operation.out_max_val:
        p.out_max_val = True
    if along_one_axis:
        p.axis = layout.perm[operation.axis % rank]
    elif operation.axis is not None:
        p.axis = operation.axis
    out_layout = layout if along_one_axis else identity(len(call.outputs[0].shape))
    ctx.emit(operation, call, 0, call.outputs[0], name, out_layout)
