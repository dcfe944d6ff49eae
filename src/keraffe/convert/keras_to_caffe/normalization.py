"""BatchNormalization, LayerNormalization, Rescaling and Normalization.

BatchNormalization over channels becomes Caffe's BatchNorm (with Keras'
epsilon, never dropped) and a Scale with gamma and beta. LayerNormalization
over channels is built from Caffe 1.0 layers: a channel mean computed by a
1x1 convolution (or inner product) with weights 1/C that also broadcasts it
back, and Power for the inverse square root.
"""

from __future__ import annotations

import numpy as np

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.errors import ConversionError
from keraffe.host_memory import weight_array



def _single_axis(operation, value, name) -> int:
    axes = operation.axis if isinstance(operation.axis, (list, tuple)) else [operation.axis]
    if len(axes) != 1:
        raise ConversionError(f"'{name}': normalisation over several axes {list(axes)} has no Caffe form")
    rank = len(value.shape)
    return value.layout.perm[axes[0] % rank] if value.layout.flattened_from is None else 1


def _scale_layer(ctx, name, bottom, top, axis, scale, bias):
    layer = ctx.add("Scale", name, [bottom], [top])
    if axis != 1:
        layer.scale_param.axis = axis
    layer.scale_param.bias_term = bias is not None
    ctx.weights[name] = [scale] + ([bias] if bias is not None else [])


def _per_channel(value, array):
    if value.layout.flattened_from is not None:
        return value.layout.to_caffe(np.asarray(array, np.float32)[None])[0]
    return np.asarray(array, np.float32)


@keras_layer("BatchNormalization")
def batch_normalization(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    axis = _single_axis(operation, value, name)
    mean = _per_channel(value, weight_array(operation.moving_mean))
    variance = _per_channel(value, weight_array(operation.moving_variance))
    gamma = _per_channel(value, weight_array(operation.gamma)) if operation.scale else None
    beta = _per_channel(value, weight_array(operation.beta)) if operation.center else None
    out = call.outputs[0]
    if axis == 1:
        needs_scale = gamma is not None or beta is not None
        bn_name = ctx.unique(f"{name}/bn") if needs_scale else name
        bn_top = bn_name if needs_scale else name
        layer = ctx.add("BatchNorm", bn_name, [value.blob], [bn_top])
        layer.batch_norm_param.eps = float(operation.epsilon)
        ctx.weights[bn_name] = [mean, variance, np.ones(1, np.float32)]
        if needs_scale:
            ones = np.ones_like(mean)
            _scale_layer(ctx, name, bn_top, name, 1, gamma if gamma is not None else ones, beta)
            ctx.note(operation, ["BatchNorm", "Scale"], f"Caffe BatchNorm (eps {operation.epsilon:g}) + Scale")
        ctx.emit(operation, call, 0, out, name, value.layout)
        return
    # Another axis: Caffe's BatchNorm only normalises axis 1; fold into one Scale.
    inv = 1.0 / np.sqrt(variance.astype(np.float64) + float(operation.epsilon))
    factor = inv * (gamma if gamma is not None else 1.0)
    shift = (beta if beta is not None else 0.0) - mean * factor
    _scale_layer(ctx, name, value.blob, name, axis, factor.astype(np.float32), np.asarray(shift, np.float32))
    ctx.note(operation, ["Scale"], f"batch normalisation over Caffe axis {axis} folded into one Scale")
    ctx.emit(operation, call, 0, out, name, value.layout)


def _channel_mean(ctx, name, bottom, value, axis, channels):
    """A layer whose output at each position is the mean over channels, repeated on every channel."""
    rank = len(value.shape)
    weight = np.full((channels, channels), 1.0 / channels, np.float32)
    if axis == 1 and rank == 4:
        layer = ctx.add("Convolution", name, [bottom])
        layer.convolution_param.num_output = channels
        layer.convolution_param.kernel_size.append(1)
        layer.convolution_param.bias_term = False
        ctx.weights[name] = [weight.reshape(channels, channels, 1, 1)]
    elif axis == rank - 1:
        layer = ctx.add("InnerProduct", name, [bottom])
        layer.inner_product_param.num_output = channels
        layer.inner_product_param.bias_term = False
        if axis != 1:
            layer.inner_product_param.axis = axis
        ctx.weights[name] = [weight]
    else:
        raise ConversionError(f"'{name}': channel mean over Caffe axis {axis} of a rank-{rank} blob")
    return layer.top[0]


@keras_layer("LayerNormalization")
def layer_normalization(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    if getattr(operation, "rms_scaling", False):
        raise ConversionError(f"'{name}': LayerNormalization(rms_scaling=True) is not supported")
    axis = _single_axis(operation, value, name)
    channels = value.shape[axis]
    start = len(ctx.net.layer)
    mean = _channel_mean(ctx, ctx.unique(f"{name}/mean"), value.blob, value, axis, channels)
    centred = ctx.add("Eltwise", ctx.unique(f"{name}/centred"), [value.blob, mean])
    centred.eltwise_param.coeff.extend([1.0, -1.0])
    square = ctx.add("Power", ctx.unique(f"{name}/square"), [centred.top[0]])
    square.power_param.power = 2.0
    variance = _channel_mean(ctx, ctx.unique(f"{name}/variance"), square.top[0], value, axis, channels)
    inverse = ctx.add("Power", ctx.unique(f"{name}/inverse_std"), [variance])
    inverse.power_param.power = -0.5
    inverse.power_param.shift = float(operation.epsilon)
    has_affine = operation.scale or operation.center
    normed_name = ctx.unique(f"{name}/normalised") if has_affine else name
    normed = ctx.add("Eltwise", normed_name, [centred.top[0], inverse.top[0]], [normed_name])
    normed.eltwise_param.operation = normed.eltwise_param.PROD
    if has_affine:
        gamma = weight_array(operation.gamma) if operation.scale else np.ones(channels, np.float32)
        beta = weight_array(operation.beta) if operation.center else None
        _scale_layer(ctx, name, normed_name, name, axis, gamma, beta)
    ctx.note(operation, ctx.caffe_types(start), "layer normalisation built from Caffe 1.0 layers")
    ctx.emit(operation, call, 0, call.outputs[0], name, value.layout)


def _affine(ctx, operation, call, name, value, scale, offset, note):
    """y = x * scale + offset, with scalar or per-channel factors (Power or Scale)."""
    scale = np.asarray(scale, np.float32)
    offset = np.asarray(offset, np.float32)
    if scale.size == 1 and offset.size == 1:
        # One value, whatever its rank: Normalization(axis=None) or one channel keeps a (1,) array.
        scale, offset = float(scale.reshape(())), float(offset.reshape(()))
        layer = ctx.add("Power", name, [value.blob])
        if scale != 1.0:
            layer.power_param.scale = scale
        if offset != 0.0:
            layer.power_param.shift = offset
    else:
        rank = len(value.shape)
        channel_axis = value.layout.perm[rank - 1]
        channels = value.shape[channel_axis]
        scale = np.broadcast_to(scale.reshape(-1), (channels,)).copy()
        offset = np.broadcast_to(offset.reshape(-1), (channels,)).copy()
        _scale_layer(ctx, name, value.blob, name, channel_axis, scale, offset)
    ctx.note(operation, [ctx.net.layer[-1].type], note)
    ctx.emit(operation, call, 0, call.outputs[0], name, value.layout)


@keras_layer("Rescaling")
def rescaling(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    _affine(ctx, operation, call, name, value, operation.scale, operation.offset, "x * scale + offset")


@keras_layer("Normalization")
def normalization(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    mean = weight_array(operation.mean).reshape(-1)
    variance = weight_array(operation.variance).reshape(-1)
    import keras

    std = np.maximum(np.sqrt(variance.astype(np.float64)), keras.backend.epsilon())
    if getattr(operation, "invert", False):
        scale, offset = std, mean.astype(np.float64)
    else:
        scale, offset = 1.0 / std, -mean / std
    _affine(ctx, operation, call, name, value, scale, offset, "(x - mean) / std as one scale and shift")
