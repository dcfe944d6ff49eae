"""Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose and Conv3D.

A convolution is written with its own padding side by side (``pad_t``,
``pad_b``, ``pad_l``, ``pad_r``: TensorFlow's 'same' puts the odd pixel at the
end), reading the ZeroPadding2D before it, if any, as it is. The pass
:mod:`keraffe.passes.convolution_padding` then makes it a Caffe 1.0
convolution: symmetric padding, with zero rows added to the kernel on the short
side, so every window starts and ends where Keras' does.
"""

from __future__ import annotations

import numpy as np

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.convert.keras_to_caffe.activations import activation_name, emit_activation
from keraffe.errors import ConversionError
from keraffe.host_memory import weight_array
from keraffe.layout import NHWC, conv_kernel_to_caffe, deconv_kernel_to_caffe, depthwise_kernel_to_caffe
from keraffe.windows import same_padding, set_conv_param


def own_padding(operation, sizes, hint: str) -> list[tuple[int, int]]:
    """The layer's own (before, after) padding per spatial axis: TensorFlow's 'same', or none."""
    if operation.padding == "valid":
        return [(0, 0), (0, 0)]
    if operation.padding != "same":
        raise ConversionError(f"'{hint}': padding {operation.padding!r} is not supported")
    return [same_padding(sizes[axis], operation.kernel_size[axis], operation.strides[axis],
                         operation.dilation_rate[axis]) for axis in range(2)]


def add_convolution(ctx, name, bottom, top, weight, bias, group, strides, dilation, pads):
    """A Convolution with padding side by side (``pads`` per spatial axis), for the padding pass to settle."""
    layer = ctx.add("Convolution", name, [bottom], [top])
    param = layer.convolution_param
    set_conv_param(param, weight.shape[0], weight.shape[2:], strides, (0, 0), dilation, group, bias is not None)
    (param.pad_t, param.pad_b), (param.pad_l, param.pad_r) = pads
    ctx.weights[name] = [weight] + ([bias] if bias is not None else [])
    return layer


def _emit_conv(ctx, operation, call, *, weight, bias, group, strides, dilation):
    """One Caffe Convolution from the (zero padded) input, plus the layer's activation."""
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    bottom = ctx.blob_nchw(value, name)
    act = activation_name(getattr(operation, "activation", None))
    top = name if act == "linear" else f"{name}/linear"
    add_convolution(ctx, name, bottom, top, weight, bias, group, strides, dilation,
                    own_padding(operation, ctx.shapes[bottom][2:], name))
    return name, top, act


def _finish(ctx, operation, call, name, top, act, layout=NHWC):
    from keraffe.convert.keras_to_caffe.context import CaffeValue

    out = call.outputs[0]
    linear = CaffeValue(top, layout, ctx.caffe_shape(out, layout))
    if act == "linear":
        ctx.emit(operation, call, 0, out, top, layout)
        return
    emit_activation(ctx, operation, call, out, name, linear, act, standalone=False)


@keras_layer("Conv2D")
def conv2d(ctx, operation, call):
    weight = conv_kernel_to_caffe(weight_array(operation.kernel))
    bias = weight_array(operation.bias) if operation.use_bias else None
    name, top, act = _emit_conv(ctx, operation, call, weight=weight, bias=bias, group=operation.groups,
                                   strides=operation.strides, dilation=operation.dilation_rate)
    _finish(ctx, operation, call, name, top, act)


@keras_layer("DepthwiseConv2D")
def depthwise_conv2d(ctx, operation, call):
    kernel = weight_array(operation.kernel)
    weight = depthwise_kernel_to_caffe(kernel)
    bias = weight_array(operation.bias) if operation.use_bias else None
    name, top, act = _emit_conv(ctx, operation, call, weight=weight, bias=bias, group=kernel.shape[2],
                                   strides=operation.strides, dilation=operation.dilation_rate)
    _finish(ctx, operation, call, name, top, act)


@keras_layer("SeparableConv2D")
def separable_conv2d(ctx, operation, call):
    """Depthwise then pointwise, two Caffe convolutions; the pointwise one carries the layer's name."""
    depthwise = depthwise_kernel_to_caffe(weight_array(operation.depthwise_kernel))
    channels = weight_array(operation.depthwise_kernel).shape[2]
    name = ctx.layer_name(operation, call)
    dw_name = ctx.unique(f"{name}/depthwise")
    value = ctx.value(call.inputs[0])
    bottom = ctx.blob_nchw(value, name)
    add_convolution(ctx, dw_name, bottom, dw_name, depthwise, None, channels, operation.strides,
                    operation.dilation_rate, own_padding(operation, ctx.shapes[bottom][2:], name))
    pointwise = conv_kernel_to_caffe(weight_array(operation.pointwise_kernel))
    act = activation_name(operation.activation)
    top = name if act == "linear" else f"{name}/linear"
    layer = ctx.add("Convolution", name, [dw_name], [top])
    set_conv_param(layer.convolution_param, pointwise.shape[0], (1, 1), (1, 1), (0, 0), (1, 1), 1, operation.use_bias)
    ctx.weights[name] = [pointwise] + ([weight_array(operation.bias)] if operation.use_bias else [])
    ctx.note(operation, ["Convolution", "Convolution"], "depthwise and pointwise convolutions")
    _finish(ctx, operation, call, name, top, act)


@keras_layer("Conv3D")
def conv3d(ctx, operation, call):
    """Caffe's N-D Convolution over (N, C, D, H, W); uneven 'same' padding made symmetric with zero rows."""
    from keraffe.layout import NDHWC, conv3d_kernel_to_caffe
    from keraffe.windows import padded_kernel, undilate_for_uneven_padding

    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError("only channels_last Conv3D converts")
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    bottom = ctx.blob_in(value, NDHWC, name)
    weight = conv3d_kernel_to_caffe(weight_array(operation.kernel))
    sizes = NDHWC.caffe_shape(value.layout.keras_shape(value.shape))[2:]
    if operation.padding == "same":
        pads = [same_padding(sizes[axis], operation.kernel_size[axis], operation.strides[axis],
                             operation.dilation_rate[axis]) for axis in range(3)]
    elif operation.padding == "valid":
        pads = [(0, 0)] * 3
    else:
        raise ConversionError(f"'{name}': padding {operation.padding!r} is not supported")
    weight, dilation = undilate_for_uneven_padding(weight, pads, operation.dilation_rate)
    widened = weight.shape
    weight, caffe_pad = padded_kernel(weight, pads, dilation, name)
    act = activation_name(operation.activation)
    top = name if act == "linear" else f"{name}/linear"
    layer = ctx.add("Convolution", name, [bottom], [top])
    param = layer.convolution_param
    param.num_output = weight.shape[0]
    param.kernel_size.extend(int(k) for k in weight.shape[2:])
    if any(s != 1 for s in operation.strides):
        param.stride.extend(int(s) for s in operation.strides)
    if any(caffe_pad):
        param.pad.extend(int(p) for p in caffe_pad)
    if any(d != 1 for d in dilation):
        param.dilation.extend(int(d) for d in dilation)
    if operation.groups != 1:
        param.group = operation.groups
    param.bias_term = bool(operation.use_bias)
    ctx.weights[name] = [weight] + ([weight_array(operation.bias)] if operation.use_bias else [])
    if weight.shape != widened:
        ctx.note(operation, ["Convolution"], "uneven padding made symmetric with zero rows added to the kernel")
    _finish(ctx, operation, call, name, top, act, NDHWC)


@keras_layer("Conv2DTranspose")
def conv2d_transpose(ctx, operation, call):
    """Caffe's Deconvolution computes the full transposed convolution and crops ``pad`` from both ends.

    Keras crops (before, after) by its own rules; when after > before, zero
    rows at the start of the kernel shift the full output, so a symmetric crop
    of ``after`` lands exactly; when before > after (output_padding, which can
    make ``after`` negative), zero rows at the kernel's end lengthen the full
    output instead.
    """
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    bottom = ctx.blob_nchw(value, name)
    out_hw = ctx.caffe_shape(call.outputs[0], NHWC)[2:]
    weight = deconv_kernel_to_caffe(weight_array(operation.kernel))
    crops = []
    for axis in range(2):
        size = ctx.shapes[bottom][2 + axis]
        effective = operation.dilation_rate[axis] * (operation.kernel_size[axis] - 1) + 1
        full = (size - 1) * operation.strides[axis] + effective
        # The forward convolution of 'same' pads (full - out) in total, the smaller half first.
        before = max(full - out_hw[axis], 0) // 2 if operation.padding == "same" else 0
        after = full - before - out_hw[axis]
        crops.append((before, after))
    widen = []
    caffe_pad = []
    for axis, (before, after) in enumerate(crops):
        if before == after:
            widen.append((0, 0))
            caffe_pad.append(before)
        elif operation.dilation_rate[axis] == 1:
            # Zero rows at the kernel's start shift the full output later (a longer crop before); zero rows at
            # its end lengthen it (output_padding with 'valid': rows that get only the bias, after < 0).
            widen.append((max(after - before, 0), max(before - after, 0)))
            caffe_pad.append(max(before, after))
        else:
            raise ConversionError(f"'{name}': transposed-convolution crop ({before}, {after}) has no exact Caffe form")
    if any(w for pair in widen for w in pair):
        weight = np.pad(weight, [(0, 0), (0, 0), widen[0], widen[1]])
        ctx.note(operation, ["Deconvolution"], "uneven crop made symmetric with zero rows added to the kernel")
    act = activation_name(operation.activation)
    top = name if act == "linear" else f"{name}/linear"
    layer = ctx.add("Deconvolution", name, [bottom], [top])
    set_conv_param(layer.convolution_param, weight.shape[1], weight.shape[2:], operation.strides, caffe_pad,
                   operation.dilation_rate, 1, operation.use_bias)
    ctx.weights[name] = [weight] + ([weight_array(operation.bias)] if operation.use_bias else [])
    _finish(ctx, operation, call, name, top, act)
