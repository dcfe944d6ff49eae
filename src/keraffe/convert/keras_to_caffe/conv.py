"""Conv2D, DepthwiseConv2D, SeparableConv2D and Conv2DTranspose.

Caffe pads symmetrically; TensorFlow's 'same' puts the odd pixel at the end,
and ZeroPadding2D may pad unevenly. Both convert exactly: the Caffe kernel is
enlarged with zero rows on the short side (a zero weight adds an exact zero),
so every window starts and ends where Keras' does. Dilated kernels cannot be
shifted by one pixel that way, so with uneven padding a dilated kernel is
written out undilated (its gaps as zero taps) first.
"""

from __future__ import annotations

import math

import numpy as np

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.convert.keras_to_caffe.activations import activation_name, emit_activation
from keraffe.errors import ConversionError
from keraffe.host_memory import weight_array
from keraffe.layout import NHWC, conv_kernel_to_caffe, deconv_kernel_to_caffe, depthwise_kernel_to_caffe


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) for one axis."""
    effective = dilation * (kernel - 1) + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def explicit_padding(operation, value, hint: str) -> list[tuple[int, int]]:
    """(before, after) padding per spatial axis: pending ZeroPadding2D plus the layer's own 'same'."""
    pending = getattr(value, "pending_padding", None) or ((0, 0), (0, 0))
    pads = []
    for axis in range(2):
        before, after = pending[axis]
        if operation.padding == "same":
            # 'same' pads the tensor the layer sees: the blob with the pending zero padding around it.
            b, a = same_padding(value.shape[2 + axis] + before + after, operation.kernel_size[axis],
                                operation.strides[axis], operation.dilation_rate[axis])
            before, after = before + b, after + a
        elif operation.padding != "valid":
            raise ConversionError(f"'{hint}': padding {operation.padding!r} is not supported")
        pads.append((before, after))
    return pads


def unread_padding_dropped(pads, sizes, kernel, strides, dilation) -> list[tuple[int, int]]:
    """``pads`` with trailing padding no window reads made symmetric, where Caffe's own padding then fits.

    Caffe pads both sides alike. A Caffe net converted to Keras pads (1, 0) where
    Caffe pads 1 but its last window stops short of the bottom padding; padding
    (1, 1) reads the same windows and gives the same output size, so the
    convolution keeps its own kernel rather than one widened with zero rows.
    """
    result = []
    for (before, after), size, k, stride, rate in zip(pads, sizes, kernel, strides, dilation):
        extent = rate * (k - 1) + 1
        out = (size + before + after - extent) // stride + 1
        read_after = max(0, (out - 1) * stride + extent - before - size)  # padding rows the last window reaches
        symmetric_out = (size + 2 * before - extent) // stride + 1
        if after < before and read_after <= after and symmetric_out == out:
            after = before
        result.append((before, after))
    return result


def padded_kernel(weight: np.ndarray, pads, dilation, hint: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Caffe weight (O, I, kH, kW) widened with zero rows so symmetric padding acts like ``pads``."""
    caffe_pads = []
    widen = []
    for axis, (before, after) in enumerate(pads):
        pad = max(before, after)
        step = dilation[axis]
        # A zero tap of a dilated kernel moves its window by the dilation, not by one pixel.
        if (pad - before) % step or (pad - after) % step:
            raise ConversionError(
                f"'{hint}': uneven padding ({before}, {after}) with dilation {step} has no exact Caffe form"
            )
        widen.append(((pad - before) // step, (pad - after) // step))
        caffe_pads.append(pad)
    if any(w for pair in widen for w in pair):
        weight = np.pad(weight, [(0, 0), (0, 0), widen[0], widen[1]])
    return weight, tuple(caffe_pads)


def undilate_for_uneven_padding(weight: np.ndarray, pads, dilation) -> tuple[np.ndarray, tuple[int, int]]:
    """A dilated kernel written out with its zeros (dilation 1) when the padding is uneven, else unchanged.

    Zero rows shift a dilated kernel by whole dilation steps only; written out
    undilated, a zero row shifts it by one pixel, and the extra zero taps add
    exact zeros.
    """
    if all(before == after for before, after in pads) or all(d == 1 for d in dilation):
        return weight, tuple(dilation)
    dh, dw = (int(d) for d in dilation)
    kh, kw = weight.shape[2:]
    spread = np.zeros(weight.shape[:2] + ((kh - 1) * dh + 1, (kw - 1) * dw + 1), weight.dtype)
    spread[:, :, ::dh, ::dw] = weight
    return spread, (1, 1)


def set_conv_param(param, num_output, kernel_hw, stride, pad, dilation, group, bias_term) -> None:
    param.num_output = int(num_output)
    if kernel_hw[0] == kernel_hw[1]:
        param.kernel_size.append(int(kernel_hw[0]))
    else:
        param.kernel_h, param.kernel_w = int(kernel_hw[0]), int(kernel_hw[1])
    if stride[0] == stride[1]:
        if stride[0] != 1:
            param.stride.append(int(stride[0]))
    else:
        param.stride_h, param.stride_w = int(stride[0]), int(stride[1])
    if pad[0] == pad[1]:
        if pad[0]:
            param.pad.append(int(pad[0]))
    else:
        param.pad_h, param.pad_w = int(pad[0]), int(pad[1])
    if any(d != 1 for d in dilation):
        if dilation[0] == dilation[1]:
            param.dilation.append(int(dilation[0]))
        else:
            param.dilation.extend(int(d) for d in dilation)
    if group != 1:
        param.group = int(group)
    if not bias_term:
        param.bias_term = False


def _emit_conv(ctx, operation, node, *, weight, bias, group, strides, dilation, base_name=None):
    """One Caffe Convolution from the (padded) input, plus the layer's activation."""
    from keraffe.convert.keras_to_caffe.pooling import absorb_crop

    value = ctx.value(node.input_tensors[0], allow_pending=True)
    name = base_name or ctx.layer_name(operation, node)
    value = absorb_crop(ctx, value, name)
    bottom = ctx.blob_nchw(value, name)
    pads = explicit_padding(operation, value, name)
    pads = unread_padding_dropped(pads, value.shape[2:], operation.kernel_size, strides, dilation)
    weight, dilation = undilate_for_uneven_padding(weight, pads, dilation)
    weight, caffe_pad = padded_kernel(weight, pads, dilation, name)
    act = activation_name(getattr(operation, "activation", None))
    top = name if act == "linear" else f"{name}/linear"
    layer = ctx.add("Convolution", name, [bottom], [top])
    set_conv_param(layer.convolution_param, weight.shape[0], weight.shape[2:], strides, caffe_pad, dilation, group,
                   bias is not None)
    ctx.weights[name] = [weight] + ([bias] if bias is not None else [])
    if weight.shape[2:] != tuple(operation.kernel_size):
        ctx.note(operation, ["Convolution"], "uneven padding made symmetric with zero rows added to the kernel")
    return value, name, top, act


def _finish(ctx, operation, node, name, top, act, layout=NHWC):
    from keraffe.convert.keras_to_caffe.context import CaffeValue

    out = node.outputs[0]
    linear = CaffeValue(top, layout, ctx.caffe_shape(out, layout))
    if act == "linear":
        ctx.emit(operation, node, 0, out, top, layout)
        return
    emit_activation(ctx, operation, node, out, name, linear, act, standalone=False)


@keras_layer("Conv2D")
def conv2d(ctx, operation, node):
    weight = conv_kernel_to_caffe(weight_array(operation.kernel))
    bias = weight_array(operation.bias) if operation.use_bias else None
    _, name, top, act = _emit_conv(ctx, operation, node, weight=weight, bias=bias, group=operation.groups,
                                   strides=operation.strides, dilation=operation.dilation_rate)
    _finish(ctx, operation, node, name, top, act)


@keras_layer("DepthwiseConv2D")
def depthwise_conv2d(ctx, operation, node):
    kernel = weight_array(operation.kernel)
    weight = depthwise_kernel_to_caffe(kernel)
    bias = weight_array(operation.bias) if operation.use_bias else None
    _, name, top, act = _emit_conv(ctx, operation, node, weight=weight, bias=bias, group=kernel.shape[2],
                                   strides=operation.strides, dilation=operation.dilation_rate)
    _finish(ctx, operation, node, name, top, act)


@keras_layer("SeparableConv2D")
def separable_conv2d(ctx, operation, node):
    """Depthwise then pointwise, two Caffe convolutions; the pointwise one carries the layer's name."""
    depthwise = depthwise_kernel_to_caffe(weight_array(operation.depthwise_kernel))
    channels = weight_array(operation.depthwise_kernel).shape[2]
    name = ctx.layer_name(operation, node)
    dw_name = ctx.unique(f"{name}/depthwise")
    from keraffe.convert.keras_to_caffe.pooling import absorb_crop

    value = absorb_crop(ctx, ctx.value(node.input_tensors[0], allow_pending=True), name)
    bottom = ctx.blob_nchw(value, name)
    pads = explicit_padding(operation, value, name)
    depthwise, dilation = undilate_for_uneven_padding(depthwise, pads, operation.dilation_rate)
    depthwise, caffe_pad = padded_kernel(depthwise, pads, dilation, name)
    layer = ctx.add("Convolution", dw_name, [bottom], [dw_name])
    set_conv_param(layer.convolution_param, depthwise.shape[0], depthwise.shape[2:], operation.strides, caffe_pad,
                   dilation, channels, False)
    ctx.weights[dw_name] = [depthwise]
    pointwise = conv_kernel_to_caffe(weight_array(operation.pointwise_kernel))
    act = activation_name(operation.activation)
    top = name if act == "linear" else f"{name}/linear"
    layer = ctx.add("Convolution", name, [dw_name], [top])
    set_conv_param(layer.convolution_param, pointwise.shape[0], (1, 1), (1, 1), (0, 0), (1, 1), 1, operation.use_bias)
    ctx.weights[name] = [pointwise] + ([weight_array(operation.bias)] if operation.use_bias else [])
    ctx.note(operation, ["Convolution", "Convolution"], "depthwise and pointwise convolutions")
    _finish(ctx, operation, node, name, top, act)


@keras_layer("Conv2DTranspose")
def conv2d_transpose(ctx, operation, node):
    """Caffe's Deconvolution computes the full transposed convolution and crops ``pad`` from both ends.

    Keras crops (before, after) by its own rules; when after > before, zero
    rows at the start of the kernel shift the full output, so a symmetric crop
    of ``after`` lands exactly; when before > after (output_padding, which can
    make ``after`` negative), zero rows at the kernel's end lengthen the full
    output instead.
    """
    value = ctx.value(node.input_tensors[0], allow_pending=True)
    name = ctx.layer_name(operation, node)
    if getattr(value, "pending_padding", None):
        raise ConversionError(f"'{name}': ZeroPadding2D before Conv2DTranspose has no exact Caffe form")
    bottom = ctx.blob_nchw(value, name)
    out_hw = ctx.caffe_shape(node.outputs[0], NHWC)[2:]
    weight = deconv_kernel_to_caffe(weight_array(operation.kernel))
    crops = []
    for axis in range(2):
        size = value.shape[2 + axis]
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
    _finish(ctx, operation, node, name, top, act)
