"""Convolution, the forks' depthwise convolutions, and Deconvolution."""

from __future__ import annotations

import math

import keras

from keraffe import keras_layers
from keraffe.caffe.shapes.conv import conv_geometry
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.errors import ConversionError
from keraffe.layout import NHWC, conv_kernel_to_keras, deconv_kernel_to_keras, depthwise_kernel_to_keras


def plan_padding(in_sizes, kernels, strides, pads_begin, outs):
    """Pick the Keras padding that reproduces Caffe's windows exactly.

    'valid' when no padding is needed, 'same' when TensorFlow's placement of
    'same' padding equals Caffe's, otherwise explicit zero padding: Caffe's pad
    before, and after only as much as the last window reaches. ``kernels`` are
    effective (dilated) sizes. Returns (mode, ((top, bottom), (left, right)) or None).
    """
    valid = same = True
    explicit = []
    for size, k, s, p, out in zip(in_sizes, kernels, strides, pads_begin, outs):
        valid &= p == 0 and (size - k) // s + 1 == out
        total = max((out - 1) * s + k - size, 0)
        same &= out == math.ceil(size / s) and p == total // 2
        explicit.append((p, max(0, (out - 1) * s + k - size - p)))
    if valid:
        return "valid", None
    if same:
        return "same", None
    return "valid", tuple(explicit)


@caffe_layer("Convolution", "ConvolutionDepthwise", "DepthwiseConvolution")
def convolution(ctx, node):
    in_shape = ctx.in_shape(node)
    g = conv_geometry(node.param, in_shape)
    if len(g.kernel) != 2 or g.axis != 1:
        raise ConversionError(
            f"layer '{node.name}' ({node.type}): only 2-D convolution over NCHW blobs converts; "
            f"this one has {len(g.kernel)} spatial axes from axis {g.axis}"
        )
    channels = in_shape[1]
    out_hw = ctx.out_shape(node)[2:]
    effective = [d * (k - 1) + 1 for k, d in zip(g.kernel, g.dilation)]
    strided_dilation = any(s > 1 for s in g.stride) and any(d > 1 for d in g.dilation)
    conv_strides = (1, 1) if strided_dilation else g.stride
    full_outs = [(o - 1) * s + 1 for o, s in zip(out_hw, g.stride)] if strided_dilation else out_hw
    mode, explicit = plan_padding(in_shape[2:], effective, conv_strides, g.pad_begin, full_outs)
    name = ctx.blob_name(node)
    common = dict(strides=conv_strides, padding=mode, dilation_rate=g.dilation, use_bias=g.bias_term)
    conv_name = ctx.helper_name(node, "conv") if strided_dilation else name
    if g.group == channels and g.group > 1:
        layer = keras.layers.DepthwiseConv2D(g.kernel, depth_multiplier=g.num_output // channels, name=conv_name,
                                             **common)
        to_keras = lambda w: depthwise_kernel_to_keras(w, channels)  # noqa: E731
    else:
        layer = keras.layers.Conv2D(g.num_output, g.kernel, groups=g.group, name=conv_name, **common)
        to_keras = conv_kernel_to_keras
    weights = ctx.weights(node)
    arrays = None if weights is None else [to_keras(weights[0])] + ([weights[1]] if g.bias_term else [])
    weights = None  # a released Caffe array can go once converted
    pad_layer = None
    if explicit:
        pad_layer = keras.layers.ZeroPadding2D(explicit, name=ctx.helper_name(node, "pad"))
    subsample = keras_layers.Subsample2D(g.stride, name=name) if strided_dilation else None
    for index in range(len(node.inputs)):
        x = ctx.input(node, index, NHWC)
        if pad_layer is not None:
            x = pad_layer(x)
        y = ctx.call_with_weights(node, layer, x, arrays) if index == 0 else layer(x)
        if subsample is not None:
            y = subsample(y)
        ctx.emit(node, index, y, NHWC)


@caffe_layer("Deconvolution")
def deconvolution(ctx, node):
    in_shape = ctx.in_shape(node)
    g = conv_geometry(node.param, in_shape)
    if len(g.kernel) != 2 or g.axis != 1:
        raise ConversionError(f"layer '{node.name}' (Deconvolution): only 2-D deconvolution over NCHW blobs converts")
    out_hw = ctx.out_shape(node)[2:]
    effective = [d * (k - 1) + 1 for k, d in zip(g.kernel, g.dilation)]
    # Caffe's full output is (in - 1) * stride + kernel; its padding crops from both ends.
    full = [(i - 1) * s + k for i, s, k in zip(in_shape[2:], g.stride, effective)]
    cropping = tuple((p, f - p - o) for p, f, o in zip(g.pad_begin, full, out_hw))
    if any(c < 0 for pair in cropping for c in pair):
        raise ConversionError(f"layer '{node.name}' (Deconvolution): padding larger than the output is not supported")
    name = ctx.blob_name(node)
    weights = ctx.weights(node)
    arrays = None
    if weights is not None:
        arrays = [deconv_kernel_to_keras(weights[0])] + ([weights[1]] if g.bias_term else [])
    weights = None  # a released Caffe array can go once converted
    crop = None
    # Keras' Conv2DTranspose refuses a stride together with a dilation; keraffe's layer takes both.
    strided_dilation = any(s > 1 for s in g.stride) and any(d > 1 for d in g.dilation)
    if g.group > 1 or strided_dilation:
        layer = keras_layers.GroupedConv2DTranspose(g.num_output, g.kernel, g.stride, g.group, g.dilation, cropping,
                                                    use_bias=g.bias_term, name=name)
    else:
        # Keras' 'valid' output is in * stride + max(kernel - stride, 0): crop it to Caffe's.
        keras_full = [i * s + max(k - s, 0) for i, s, k in zip(in_shape[2:], g.stride, effective)]
        crop = tuple((p, kf - p - o) for p, kf, o in zip(g.pad_begin, keras_full, out_hw))
        crop = crop if any(map(any, crop)) else None
        layer = keras.layers.Conv2DTranspose(g.num_output, g.kernel, strides=g.stride, padding="valid",
                                             dilation_rate=g.dilation, use_bias=g.bias_term,
                                             name=ctx.helper_name(node, "deconv") if crop else name)
    for index in range(len(node.inputs)):
        x = ctx.input(node, index, NHWC)
        y = ctx.call_with_weights(node, layer, x, arrays) if index == 0 else layer(x)
        if crop is not None:
            crop_name = name if index == 0 else ctx.blob_name(node, index)
            y = keras.layers.Cropping2D(crop, name=crop_name)(y)
        ctx.emit(node, index, y, NHWC)
