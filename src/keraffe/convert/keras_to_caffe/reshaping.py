"""ZeroPadding2D, Cropping2D and UpSampling2D.

Caffe 1.0 has no padding layer: ZeroPadding2D is held back and absorbed by the
convolution or pooling that reads it. Cropping is Caffe's Slice, with the cut
edges sent to a Silence layer. Nearest-neighbour upsampling is a grouped
Deconvolution whose one-valued kernel copies each pixel into its block.
"""

from __future__ import annotations

import numpy as np

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.convert.keras_to_caffe.context import CaffeValue
from keraffe.errors import ConversionError
from keraffe.layout import NHWC


def _pairs(padding):
    (top, bottom), (left, right) = padding
    return (int(top), int(bottom)), (int(left), int(right))


@keras_layer("ZeroPadding2D")
def zero_padding2d(ctx, operation, node):
    value = ctx.value(node.input_tensors[0], allow_pending=True)
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError("only channels_last ZeroPadding2D converts")
    if value.layout != NHWC:
        raise ConversionError("ZeroPadding2D needs an image tensor")
    pending = value.pending_padding or ((0, 0), (0, 0))
    pads = _pairs(operation.padding)
    total = tuple((a[0] + b[0], a[1] + b[1]) for a, b in zip(pending, pads))
    ctx.alias(node.outputs[0], CaffeValue(value.blob, value.layout, value.shape, value.non_negative, total))
    ctx.note(operation, [], "no Caffe layer: the next convolution or pooling takes the padding")


@keras_layer("Cropping2D")
def cropping2d(ctx, operation, node):
    value = ctx.value(node.input_tensors[0], allow_pending=True)
    name = ctx.layer_name(operation, node)
    if value.pending_padding:
        # Cropping padding not yet applied: it cancels padding (negative padding crops later).
        crops = _pairs(operation.cropping)
        net = tuple((p[0] - c[0], p[1] - c[1]) for p, c in zip(value.pending_padding, crops))
        ctx.alias(node.outputs[0], CaffeValue(value.blob, value.layout, value.shape, value.non_negative, net))
        ctx.note(operation, [], "no Caffe layer: cancels pending ZeroPadding2D")
        return
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError("only channels_last Cropping2D converts")
    blob = ctx.blob_nchw(value, name)
    crops = _pairs(operation.cropping)
    sizes = value.shape[2:]
    unused = []
    current = blob
    axes = [a for a in range(2) if any(crops[a])]
    if not axes:
        ctx.alias(node.outputs[0], value)
        return
    for n, axis in enumerate(axes):
        begin, end = crops[axis]
        layer = ctx.add("Slice", name if n == len(axes) - 1 else ctx.unique(f"{name}/axis{axis + 2}"), [current], [])
        layer.slice_param.axis = axis + 2
        tops = []
        if begin:
            layer.slice_param.slice_point.append(begin)
            tops.append(ctx.unique(f"{name}/cut{axis + 2}_start"))
            unused.append(tops[-1])
        kept = name if n == len(axes) - 1 else ctx.unique(f"{name}/kept{axis + 2}")
        tops.append(kept)
        if end:
            layer.slice_param.slice_point.append(sizes[axis] - end)
            tops.append(ctx.unique(f"{name}/cut{axis + 2}_end"))
            unused.append(tops[-1])
        layer.top.extend(tops)
        current = kept
    ctx.add("Silence", ctx.unique(f"{name}/discard"), unused, [])
    ctx.note(operation, ["Slice", "Silence"], "cropping as Slice, cut edges silenced")
    ctx.emit(operation, node, 0, node.outputs[0], name, NHWC, non_negative=value.non_negative)


@keras_layer("UpSampling2D")
def upsampling2d(ctx, operation, node):
    value = ctx.value(node.input_tensors[0])
    name = ctx.layer_name(operation, node)
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError("only channels_last UpSampling2D converts")
    blob = ctx.blob_nchw(value, name)
    sh, sw = (int(s) for s in operation.size)
    channels = value.shape[1]
    if operation.interpolation == "nearest":
        layer = ctx.add("Deconvolution", name, [blob])
        param = layer.convolution_param
        param.num_output = channels
        param.group = channels
        param.bias_term = False
        if sh == sw:
            param.kernel_size.append(sh)
            param.stride.append(sh)
        else:
            param.kernel_h, param.kernel_w = sh, sw
            param.stride_h, param.stride_w = sh, sw
        ctx.weights[name] = [np.ones((channels, 1, sh, sw), np.float32)]
        ctx.note(operation, ["Deconvolution"], "nearest upsampling as a grouped deconvolution of ones")
        ctx.emit(operation, node, 0, node.outputs[0], name, NHWC, non_negative=value.non_negative)
        return
    if operation.interpolation == "bilinear":
        _bilinear(ctx, operation, node, value, blob, name, (sh, sw))
        return
    raise ConversionError(f"UpSampling2D interpolation '{operation.interpolation}' has no exact Caffe form")


def bilinear_taps(size: int, scale: int) -> list[tuple[int, int, float]]:
    """Keras/TensorFlow half-pixel bilinear resize: (low, high, weight of high) per output position."""
    taps = []
    for out in range(size * scale):
        source = (out + 0.5) / scale - 0.5
        source = max(source, 0.0)
        low = int(np.floor(source))
        high = min(low + 1, size - 1)
        taps.append((low, high, source - low))
    return taps


def _bilinear(ctx, operation, node, value, blob, name, scale):
    """Half-pixel bilinear upsampling by an integer factor, as Caffe 1.0 layers.

    Each output is w0 * in[low] + w1 * in[high] per axis, edges clamped. The
    edge rows and columns are replicated (Slice + Concat) so clamping becomes
    ordinary interpolation, then a grouped Deconvolution with the bilinear
    kernel computes every output, and Slice cuts Keras' window out of it.
    """
    raise ConversionError(
        "bilinear UpSampling2D: exact Caffe 1.0 form not implemented yet; use nearest or target opencv"
    )
