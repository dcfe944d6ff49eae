"""Keras -> Caffe: a convolution padded side by side becomes a Caffe 1.0 convolution, exactly.

Caffe pads both sides of an axis alike; TensorFlow's 'same' and ZeroPadding2D
pad unevenly (``pad_t``/``pad_b``/``pad_l``/``pad_r``, the forks' spelling).
The Caffe kernel is enlarged with zero rows on the short side (a zero weight
adds an exact zero), so every window starts and ends where Keras' does, and
the padding becomes symmetric. Trailing padding that no window reads is
dropped first where symmetric padding then fits, so a kernel is widened only
when it must be. Dilated kernels cannot be shifted by one pixel with zero
rows, so with uneven padding a dilated kernel is written out undilated (its
gaps as zero taps) first.

Given::

    conv = Convolution(x)        kernel 3x3, stride 2, pad_t 0, pad_b 1, pad_l 0, pad_r 1

Result::

    conv = Convolution(x)        kernel 4x4 (a zero row and column first), stride 2, pad 1
"""

from __future__ import annotations

from keraffe.errors import ConversionError
from keraffe.windows import padded_kernel, set_conv_param, undilate_for_uneven_padding, unread_padding_dropped

SIDES = ("pad_t", "pad_b", "pad_l", "pad_r")


def has_side_padding(param) -> bool:
    return any(param.HasField(side) for side in SIDES)


def _pair(param, field: str, default: int = 1) -> tuple[int, int]:
    """A 2-D convolution's (h, w) value of ``field`` (stride, dilation), as Caffe reads it."""
    if f"{field}_h" in param.DESCRIPTOR.fields_by_name and param.HasField(f"{field}_h"):
        return getattr(param, f"{field}_h"), getattr(param, f"{field}_w")
    values = list(getattr(param, field))
    if not values:
        return default, default
    return (values[0], values[-1]) if len(values) > 1 else (values[0], values[0])


def symmetric_convolution_padding(ctx) -> list:
    """Rewrite every convolution with side padding as symmetric padding and a widened kernel."""
    problems = []
    with ctx.rewriting() as layers:
        for layer in layers:
            if layer.type == "Convolution" and has_side_padding(layer.convolution_param):
                try:
                    _make_symmetric(ctx, layer)
                except ConversionError as error:
                    problems.append((layer.name, error))
            ctx.keep(layer)
    return problems


def _make_symmetric(ctx, layer) -> None:
    param = layer.convolution_param
    name = layer.name
    pads = [(param.pad_t, param.pad_b), (param.pad_l, param.pad_r)]
    strides = _pair(param, "stride")
    dilation = _pair(param, "dilation")
    blobs = ctx.weights[name]
    weight = blobs[0]
    kernel = weight.shape[2:]
    pads = unread_padding_dropped(pads, ctx.shapes[layer.bottom[0]][2:], kernel, strides, dilation)
    weight, dilation = undilate_for_uneven_padding(weight, pads, dilation)
    weight, caffe_pad = padded_kernel(weight, pads, dilation, name)
    group, bias_term = param.group, param.bias_term
    param.Clear()
    set_conv_param(param, weight.shape[0], weight.shape[2:], strides, caffe_pad, dilation, group, bias_term)
    ctx.weights[name] = [weight] + list(blobs[1:])
    if weight.shape[2:] != kernel:
        ctx.note_layer(name, ["Convolution"], "uneven padding made symmetric with zero rows added to the kernel")
