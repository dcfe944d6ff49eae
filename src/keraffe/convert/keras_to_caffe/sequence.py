"""Conv1D and the 1-D poolings, over (N, L, C) Keras sequences.

A sequence is a Caffe (N, C, L) blob (Keras' channels-last, Caffe's channels
first, as for images). Caffe convolves and pools 4-axis blobs, so each layer
reshapes to (N, C, L, 1) (no data moves), works on the first spatial axis, and
reshapes back.
"""

from __future__ import annotations

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.convert.keras_to_caffe.activations import activation_name, emit_activation
from keraffe.convert.keras_to_caffe.context import CaffeValue
from keraffe.convert.keras_to_caffe.pooling import refuse_uneven_same_average_on_torch
from keraffe.errors import ConversionError
from keraffe.host_memory import weight_array
from keraffe.layout import NLC, conv1d_kernel_to_caffe, identity
from keraffe.windows import padded_kernel, plan_axis, same_padding, set_conv_param



def _as_image(ctx, value, name):
    """The (N, C, L) blob reshaped to (N, C, L, 1)."""
    if len(value.shape) != 3:
        raise ConversionError(f"'{name}' needs an (N, L, C) sequence, got Caffe shape {value.shape}")
    blob = ctx.blob_in(value, NLC, name)
    layer = ctx.add("Reshape", ctx.unique(f"{name}/as_image"), [blob])
    layer.reshape_param.shape.dim.extend([0, value.shape[1] if value.layout == NLC else value.shape[2], -1, 1])
    return layer.top[0]


def _back_to_sequence(ctx, name, bottom, top, channels):
    layer = ctx.add("Reshape", ctx.unique(f"{name}/as_sequence"), [bottom], [top])
    layer.reshape_param.shape.dim.extend([0, channels, -1])
    return top


@keras_layer("Conv1D")
def conv1d(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    image = _as_image(ctx, value, name)
    length = ctx.caffe_shape(call.inputs[0], NLC)[2]
    weight = conv1d_kernel_to_caffe(weight_array(operation.kernel))
    k, s, d = operation.kernel_size[0], operation.strides[0], operation.dilation_rate[0]
    if operation.padding == "same":
        pads = [same_padding(length, k, s, d), (0, 0)]
    elif operation.padding == "causal":
        pads = [(d * (k - 1), 0), (0, 0)]
    else:
        pads = [(0, 0), (0, 0)]
    weight, caffe_pad = padded_kernel(weight, pads, (d, 1), name)
    act = activation_name(operation.activation)
    conv_top = ctx.unique(f"{name}/image")
    layer = ctx.add("Convolution", name, [image], [conv_top])
    set_conv_param(layer.convolution_param, weight.shape[0], weight.shape[2:], (s, 1), caffe_pad, (d, 1),
                   operation.groups, operation.use_bias)
    ctx.weights[name] = [weight] + ([weight_array(operation.bias)] if operation.use_bias else [])
    out = call.outputs[0]
    channels = weight.shape[0]
    top = name if act == "linear" else f"{name}/linear"
    _back_to_sequence(ctx, name, conv_top, top, channels)
    ctx.note(operation, ["Reshape", "Convolution", "Reshape"], "1-D convolution as a (k x 1) Caffe convolution")
    if act == "linear":
        ctx.emit(operation, call, 0, out, top, NLC)
        return
    emit_activation(ctx, operation, call, out, name, CaffeValue(top, NLC, ctx.caffe_shape(out, NLC)), act,
                    standalone=False)


def _pool1d(ctx, operation, call, method):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    image = _as_image(ctx, value, name)
    length = ctx.caffe_shape(call.inputs[0], NLC)[2]
    k, s = operation.pool_size[0], operation.strides[0]
    out = ctx.caffe_shape(call.outputs[0], NLC)[2]
    before = same_padding(length, k, s)[0] if operation.padding == "same" else 0
    if method == "ave" and operation.padding == "same":
        refuse_uneven_same_average_on_torch(operation, name, [length], [k], [s])
    plan = plan_axis(length, k, s, before, out, ctx.target.floor_pooling, None)
    if plan is None or plan.skip_start or plan.skip_end or (method == "ave" and operation.padding == "same" and plan.pad):
        raise ConversionError(f"'{name}': this 1-D pooling has no single-layer Caffe form")
    pooled = ctx.unique(f"{name}/image")
    layer = ctx.add("Pooling", name, [image], [pooled])
    p = layer.pooling_param
    p.pool = p.MAX if method == "max" else p.AVE
    p.kernel_h, p.kernel_w = k, 1
    p.stride_h, p.stride_w = s, 1
    p.pad_h, p.pad_w = plan.pad, 0
    if not plan.ceil:
        p.round_mode = p.FLOOR
    _back_to_sequence(ctx, name, pooled, name, value.shape[1])
    ctx.emit(operation, call, 0, call.outputs[0], name, NLC, non_negative=value.non_negative)


@keras_layer("MaxPooling1D")
def max_pooling1d(ctx, operation, call):
    _pool1d(ctx, operation, call, "max")


@keras_layer("AveragePooling1D")
def average_pooling1d(ctx, operation, call):
    _pool1d(ctx, operation, call, "ave")


def _global1d(ctx, operation, call, method):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    image = _as_image(ctx, value, name)
    keepdims = bool(getattr(operation, "keepdims", False))
    pooled = ctx.unique(f"{name}/image")
    layer = ctx.add("Pooling", name if not keepdims else ctx.unique(f"{name}/pool"), [image], [pooled])
    layer.pooling_param.pool = layer.pooling_param.MAX if method == "max" else layer.pooling_param.AVE
    layer.pooling_param.global_pooling = True
    flat = ctx.add("Reshape", ctx.unique(f"{name}/flatten") if not keepdims else name, [pooled],
                   [name])
    flat.reshape_param.shape.dim.extend([0, -1] if not keepdims else [0, -1, 1])
    ctx.emit(operation, call, 0, call.outputs[0], name, identity(2) if not keepdims else NLC,
             non_negative=value.non_negative)


@keras_layer("GlobalAveragePooling1D")
def global_average_pooling1d(ctx, operation, call):
    _global1d(ctx, operation, call, "ave")


@keras_layer("GlobalMaxPooling1D")
def global_max_pooling1d(ctx, operation, call):
    _global1d(ctx, operation, call, "max")
