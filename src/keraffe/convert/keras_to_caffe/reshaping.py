"""ZeroPadding2D, Cropping2D and UpSampling2D.

Caffe 1.0 has no padding layer: ZeroPadding2D is held back as a draft, absorbed
by the convolution or pooling that reads it, and written out exactly for any
other reader (:mod:`keraffe.passes.absorb_zero_padding`). Cropping is Caffe's Slice, with the cut
edges sent to a Silence layer. Nearest-neighbour upsampling is a grouped
Deconvolution whose one-valued kernel copies each pixel into its block.
"""

from __future__ import annotations

import numpy as np

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.errors import ConversionError
from keraffe.layout import NHWC
from keraffe.passes.drafting import keep_range


def _pairs(padding):
    (top, bottom), (left, right) = padding
    return (int(top), int(bottom)), (int(left), int(right))


@keras_layer("ZeroPadding2D")
def zero_padding2d(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError("only channels_last ZeroPadding2D converts")
    if value.layout != NHWC:
        raise ConversionError("ZeroPadding2D needs an image tensor")
    out = call.outputs[0]
    padded = ctx.zero_pad(ctx.scoped(operation.name), value, _pairs(operation.padding), ctx.caffe_shape(out, NHWC))
    # A draft: a pass folds it into the convolutions and poolings that read it, and writes it out for the rest.
    ctx.emit(operation, call, 0, out, padded.blob, NHWC, non_negative=value.non_negative)
    ctx.note(operation, [], "no Caffe layer of its own: the convolution or pooling that reads it takes the padding "
             "(for any other reader it is written out as a depthwise convolution)")


@keras_layer("Cropping2D")
def cropping2d(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    if ctx.is_padding(value):
        # Cropping padding not yet applied: it cancels padding (negative padding crops later).
        crops = tuple((-a, -b) for a, b in _pairs(operation.cropping))
        cropped = ctx.zero_pad(name, value, crops, ctx.caffe_shape(call.outputs[0], NHWC))
        ctx.emit(operation, call, 0, call.outputs[0], cropped.blob, NHWC, non_negative=value.non_negative)
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
        ctx.alias(call.outputs[0], value)
        return
    for n, axis in enumerate(axes):
        begin, end = crops[axis]
        last = n == len(axes) - 1
        current = keep_range(ctx, name if last else ctx.unique(f"{name}/axis{axis + 2}"), current, axis + 2, sizes[axis],
                             begin, end, name if last else ctx.unique(f"{name}/kept{axis + 2}"), f"{name}/cut{axis + 2}",
                             unused)
    ctx.add("Silence", ctx.unique(f"{name}/discard"), unused, [])
    ctx.note(operation, ["Slice", "Silence"], "cropping as Slice, cut edges silenced")
    ctx.emit(operation, call, 0, call.outputs[0], name, NHWC, non_negative=value.non_negative)


@keras_layer("UpSampling2D")
def upsampling2d(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
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
        ctx.emit(operation, call, 0, call.outputs[0], name, NHWC, non_negative=value.non_negative)
        return
    if operation.interpolation == "bilinear":
        _bilinear(ctx, operation, call, value, blob, name, (sh, sw))
        return
    raise ConversionError(f"UpSampling2D interpolation '{operation.interpolation}' has no exact Caffe form")


def bilinear_kernel(scale: int) -> np.ndarray:
    """Weights of Keras' half-pixel bilinear upsampling by ``scale``, as a length-3*scale deconvolution kernel.

    Output s*i + r reads source position i + f_r, f_r = (r + 0.5) / s - 0.5,
    i.e. x[i-1], x[i] and x[i+1] with weights (-f_r, 1 - |f_r|, f_r) (the
    negative ones zero). A stride-s deconvolution places input i + j at kernel
    index r + s * (1 - j).
    """
    kernel = np.zeros(3 * scale, np.float64)
    for r in range(scale):
        offset = (r + 0.5) / scale - 0.5
        kernel[r] = max(offset, 0.0)
        kernel[r + scale] = 1.0 - abs(offset)
        kernel[r + 2 * scale] = max(-offset, 0.0)
    return kernel


def _replicate_edges(ctx, name, bottom, axis, size, shape_after):
    """Concat [first row, x, last row] along ``axis``: edge clamping becomes plain interpolation."""
    first = ctx.add("Slice", ctx.unique(f"{name}/edges{axis}"), [bottom], [])
    first.slice_param.axis = axis
    if size == 1:
        tops = [bottom, bottom, bottom]
        ctx.net.layer.pop()
    else:
        first.slice_param.slice_point.extend([1, size - 1])
        head, middle, tail = (ctx.unique(f"{name}/edge{axis}_{part}") for part in ("first", "middle", "last"))
        first.top.extend([head, middle, tail])
        ctx.add("Silence", ctx.unique(f"{name}/edge{axis}_unused"), [middle], [])
        tops = [head, bottom, tail]
    layer = ctx.add("Concat", ctx.unique(f"{name}/replicated{axis}"), tops)
    layer.concat_param.axis = axis
    return layer.top[0]


def _bilinear(ctx, operation, call, value, blob, name, scale):
    """Keras' half-pixel bilinear upsampling by integer factors, as Caffe 1.0 layers, exactly.

    The input's edge rows and columns are replicated (Slice + Concat), so that
    Keras' clamping at the borders becomes ordinary interpolation; one grouped
    Deconvolution with the separable bilinear kernel (stride s, pad 2s) then
    computes every output in place.
    """
    start = len(ctx.net.layer)
    _, channels, height, width = value.shape
    padded = _replicate_edges(ctx, name, blob, 2, height, None)
    padded = _replicate_edges(ctx, name, padded, 3, width, None)
    kernel = np.outer(bilinear_kernel(scale[0]), bilinear_kernel(scale[1])).astype(np.float32)
    layer = ctx.add("Deconvolution", name, [padded])
    param = layer.convolution_param
    param.num_output = channels
    param.group = channels
    param.bias_term = False
    param.kernel_h, param.kernel_w = kernel.shape
    param.stride_h, param.stride_w = scale
    param.pad_h, param.pad_w = 2 * scale[0], 2 * scale[1]
    ctx.weights[name] = [np.broadcast_to(kernel, (channels, 1) + kernel.shape).copy()]
    ctx.note(operation, ctx.caffe_types(start), "bilinear upsampling: replicated edges and a bilinear deconvolution")
    ctx.emit(operation, call, 0, call.outputs[0], name, NHWC)
