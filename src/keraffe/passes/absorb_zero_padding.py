"""Keras -> Caffe: ZeroPadding2D folded into the convolutions that read it, or written out exactly.

Caffe 1.0 has no padding layer. The ZeroPadding2D handler (and a Cropping2D
right after it) writes a draft ``keraffe.ZeroPadding`` layer; this pass adds its
padding to each convolution that reads it, side by side, and removes it.
Negative padding (a crop after the padding) is cut first with Slice, the cut
edges silenced. Poolings read zero padding through :func:`resolve_zero_padding`
in :mod:`.pooling_windows`, which runs before this pass.

Padding that another layer reads (a ReLU, a Concat, the model's output) is
written out: a depthwise Convolution whose 1x1 kernel is one, padded side by
side (:func:`write_zero_padding`); :mod:`.convolution_padding` then makes it a
Caffe 1.0 convolution whose one-hot kernel copies every pixel to its place,
with exact zeros around it.

Given::

    conv1_pad = keraffe.ZeroPadding(x)            pad_u 3, pad_d 3, pad_l 3, pad_r 3
    conv1 = Convolution(conv1_pad)                pad_t 0, pad_b 1, pad_l 0, pad_r 1
    pad2 = keraffe.ZeroPadding(x)                 pad_u 1, pad_d 0, pad_l 0, pad_r 2
    relu = ReLU(pad2)

Result::

    conv1 = Convolution(x)                        pad_t 3, pad_b 4, pad_l 3, pad_r 4
    pad2 = Convolution(x)                         group C, 1x1 kernel of ones, pad_t 1, pad_b 0, pad_l 0, pad_r 2
    relu = ReLU(pad2)

(:mod:`.convolution_padding` then makes the padding symmetric.)
"""

from __future__ import annotations

import numpy as np

from keraffe.errors import ConversionError
from keraffe.passes.drafting import keep_range
from keraffe.windows import set_conv_param

#: The draft layer type the ZeroPadding2D handler writes.
ZERO_PADDING = "keraffe.ZeroPadding"


def padding_fill(ctx, blob: str) -> float:
    """The value a chain of draft padding layers pads with: 0, or -inf (one chain never mixes them)."""
    fills = set()
    while blob in ctx.padding_layers:
        fills.add(ctx.padding_layers[blob].pad_param.pad_value)
        blob = ctx.padding_layers[blob].bottom[0]
    if len(fills) > 1:
        raise ConversionError("zero padding and padding with -inf on top of each other have no Caffe form")
    return fills.pop() if fills else 0.0


def resolve_zero_padding(ctx, blob: str) -> tuple[str, tuple[tuple[int, int], tuple[int, int]] | None]:
    """(source blob, total ((top, bottom), (left, right)) padding) of a chain of draft padding layers.

    A blob that no draft padding layer wrote resolves to itself and None.
    """
    total = None
    while blob in ctx.padding_layers:
        param = ctx.padding_layers[blob].pad_param
        pads = ((param.pad_u, param.pad_d), (param.pad_l, param.pad_r))
        total = pads if total is None else tuple((a[0] + b[0], a[1] + b[1]) for a, b in zip(total, pads))
        blob = ctx.padding_layers[blob].bottom[0]
    return blob, total


def cut_negative_padding(ctx, name: str, blob: str, pads):
    """Apply the negative part of ``pads`` (a crop) to NCHW ``blob`` with Slice; returns (blob, pads >= 0).

    The Slice layers are named after ``name``, the layer that reads the result.
    """
    if all(p >= 0 for pair in pads for p in pair):
        return blob, pads
    unused = []
    shape = list(ctx.shapes[blob])
    for axis in range(2):
        before, after = pads[axis]
        cut_before, cut_after = max(0, -before), max(0, -after)
        if not cut_before and not cut_after:
            continue
        size = shape[2 + axis]
        blob = keep_range(ctx, ctx.unique(f"{name}/precrop{axis + 2}"), blob, axis + 2, size, cut_before, cut_after,
                          ctx.unique(f"{name}/precrop{axis + 2}_kept"), f"{name}/precrop{axis + 2}", unused)
        shape[2 + axis] = size - cut_before - cut_after
        ctx.shapes[blob] = tuple(shape)
    ctx.add("Silence", ctx.unique(f"{name}/precrop_discard"), unused, [])
    return blob, tuple((max(0, b), max(0, a)) for b, a in pads)


def absorb_zero_padding(ctx) -> list:
    """Fold every draft padding layer into the convolutions that read it; write out the padding others read."""
    written = _read_as_values(ctx)
    problems = []
    with ctx.rewriting() as layers:
        for layer in layers:
            if layer.type == ZERO_PADDING:
                if layer.top[0] in written:
                    ctx.operation = ctx.origin[layer.name]
                    source, pads = resolve_zero_padding(ctx, layer.top[0])
                    if padding_fill(ctx, layer.top[0]) != 0.0:
                        problems.append((layer.name, ConversionError(
                            "padding with -inf converts only as the padding of the MAX pooling that reads it")))
                        continue
                    write_zero_padding(ctx, layer.name, source, pads, layer.top[0])
                continue
            if layer.type == "Convolution" and layer.bottom and layer.bottom[0] in ctx.padding_layers \
                    and padding_fill(ctx, layer.bottom[0]) == 0.0:
                ctx.operation = ctx.origin[layer.name]
                _fold_into_convolution(ctx, layer)
            ctx.keep(layer)
    ctx.padding_layers.clear()
    return problems


def _read_as_values(ctx) -> set[str]:
    """Draft padding blobs that something other than a convolution (or another draft) reads, or that are outputs."""
    needed = {blob for blob in ctx.map.outputs if blob in ctx.padding_layers}
    for layer in ctx.net.layer:
        if layer.type == ZERO_PADDING:
            continue
        for position, bottom in enumerate(layer.bottom):
            if bottom in ctx.padding_layers and not (layer.type == "Convolution" and position == 0
                                                     and padding_fill(ctx, bottom) == 0.0):
                needed.add(bottom)
    return needed


def write_zero_padding(ctx, name: str, source: str, pads, top: str) -> str:
    """NCHW ``source`` padded with zeros by ((top, bottom), (left, right)) into blob ``top``, exactly.

    A depthwise Convolution with a 1x1 kernel of ones, padded side by side;
    :mod:`.convolution_padding` turns the side padding into Caffe's symmetric
    padding and a one-hot kernel. Negative padding is cut first (Slice).
    """
    source, pads = cut_negative_padding(ctx, name, source, pads)
    channels = ctx.shapes[source][1]
    layer = ctx.add("Convolution", name, [source], [top])
    param = layer.convolution_param
    set_conv_param(param, channels, (1, 1), (1, 1), (0, 0), (1, 1), channels, False)
    (param.pad_t, param.pad_b), (param.pad_l, param.pad_r) = pads
    ctx.weights[name] = [np.ones((channels, 1, 1, 1), np.float32)]
    shape = ctx.shapes[source]
    ctx.shapes[top] = (shape[0], shape[1], shape[2] + sum(pads[0]), shape[3] + sum(pads[1]))
    if source in ctx.non_negative:
        ctx.non_negative.add(top)
    ctx.note_layer(name, ["Convolution"], "zero padding as a depthwise convolution with a one-hot kernel")
    return top


def _fold_into_convolution(ctx, layer) -> None:
    source, pads = resolve_zero_padding(ctx, layer.bottom[0])
    source, pads = cut_negative_padding(ctx, layer.name, source, pads)
    param = layer.convolution_param
    (top, bottom), (left, right) = pads
    param.pad_t, param.pad_b = param.pad_t + top, param.pad_b + bottom
    param.pad_l, param.pad_r = param.pad_l + left, param.pad_r + right
    layer.bottom[0] = source
