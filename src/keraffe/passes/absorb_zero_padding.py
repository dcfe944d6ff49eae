"""Keras -> Caffe: ZeroPadding2D folded into the convolutions that read it.

Caffe 1.0 has no padding layer. The ZeroPadding2D handler (and a Cropping2D
right after it) writes a draft ``keraffe.ZeroPadding`` layer; this pass adds its
padding to each convolution that reads it, side by side, and removes it.
Negative padding (a crop after the padding) is cut first with Slice, the cut
edges silenced. Poolings read zero padding through :func:`resolve_zero_padding`
in :mod:`.pooling_windows`, which runs before this pass.

Given::

    conv1_pad = keraffe.ZeroPadding(x)            pad_u 3, pad_d 3, pad_l 3, pad_r 3
    conv1 = Convolution(conv1_pad)                pad_t 0, pad_b 1, pad_l 0, pad_r 1

Result::

    conv1 = Convolution(x)                        pad_t 3, pad_b 4, pad_l 3, pad_r 4

(:mod:`.convolution_padding` then makes the padding symmetric.)
"""

from __future__ import annotations

from keraffe.errors import ConversionError
from keraffe.passes.drafting import keep_range

#: The draft layer type the ZeroPadding2D handler writes.
ZERO_PADDING = "keraffe.ZeroPadding"


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
    """Fold every draft padding layer into the convolutions that read it, then drop it."""
    problems = []
    with ctx.rewriting() as layers:
        for layer in layers:
            if layer.type == ZERO_PADDING:
                continue
            if layer.type == "Convolution" and layer.bottom and layer.bottom[0] in ctx.padding_layers:
                ctx.operation = ctx.origin[layer.name]
                _fold_into_convolution(ctx, layer)
            elif any(bottom in ctx.padding_layers for bottom in layer.bottom):
                problems.append((layer.name, ConversionError(
                    "zero padding (ZeroPadding2D) feeds a layer other than a convolution or pooling; Caffe 1.0 has "
                    "no padding layer, so only those can absorb it")))
            ctx.keep(layer)
    ctx.padding_layers.clear()
    return problems


def _fold_into_convolution(ctx, layer) -> None:
    source, pads = resolve_zero_padding(ctx, layer.bottom[0])
    source, pads = cut_negative_padding(ctx, layer.name, source, pads)
    param = layer.convolution_param
    (top, bottom), (left, right) = pads
    param.pad_t, param.pad_b = param.pad_t + top, param.pad_b + bottom
    param.pad_l, param.pad_r = param.pad_l + left, param.pad_r + right
    layer.bottom[0] = source
