"""The exact rewrites that make a Caffe net fit a target, run in the profile's order.

Each rewrite is a Caffe -> Caffe pass (:mod:`keraffe.passes`) that computes
what the net computed (bit for bit, or up to float32 summation order where a
mean is taken in steps) and keeps every blob's name. The net is read again
(shapes re-inferred) after each one. What no rewrite can fix stays, for
:func:`keraffe.targets.check.check_net` to report.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from keraffe.caffe.net import CaffeNet, net_from_parameter


@dataclasses.dataclass(frozen=True)
class Rewrite:
    name: str
    description: str
    #: apply(net, profile) -> keraffe.passes.caffe_rewrite.Rewritten
    apply: Callable


def _pass(module: str, function: str):
    def apply(net, profile):
        import importlib

        return getattr(importlib.import_module(f"keraffe.passes.{module}"), function)(net)

    return apply


def _chain(net, profile):
    from keraffe.passes.chain_global_pooling import chain_global_pooling

    return chain_global_pooling(net, profile.pooling_fits)


def _concat(net, profile):
    from keraffe.passes.split_wide_concat import split_wide_concat

    return split_wide_concat(net, profile.max_concat_inputs)


REWRITES = {rewrite.name: rewrite for rewrite in (
    Rewrite("chain_global_pooling", "the global pooling becomes a chain of poolings the toolchain takes (MAX over "
            "covering windows, AVE over blocks that divide the input): the same maximum, the same mean", _chain),
    Rewrite("ceil_pooling_as_floor", "the input is padded at the bottom and right with copies of its last row and "
            "column (Slice + Concat) until rounding down gives Caffe's rounded-up output; no maximum changes (an "
            "average only where the windows that would change are cropped away)",
            _pass("ceil_pooling_as_floor", "ceil_pooling_as_floor")),
    Rewrite("slice_as_crop", "each crop (a Slice whose cut parts only Silence reads) becomes Caffe's Crop, sized by "
            "a pooling of the same input, which copies the kept rows or columns; the Silence goes",
            _pass("slice_as_crop", "slice_as_crop")),
    Rewrite("depthwise_as_grouped", "written as BVLC's Convolution with one group per channel, same weights",
            _pass("depthwise_as_grouped", "depthwise_as_grouped")),
    Rewrite("dropout_as_identity", "Dropout is the identity at inference: written as Power y = x, same blob",
            _pass("dropout_as_identity", "dropout_as_identity")),
    Rewrite("split_wide_concat", "the Concat becomes a tree of Concats of at most the allowed inputs, in the same "
            "order", _concat),
    Rewrite("upsample_stride_spelling", "respelled upsample_param { scale: 1 stride: N }: the same nearest "
            "upsampling", _pass("upsample_stride_spelling", "upsample_stride_spelling")),
)}


@dataclasses.dataclass
class Fitted:
    net: CaffeNet
    #: One line per rewritten layer, prefixed with the rewrite's name.
    notes: list[str]
    #: The layers of the original net that were rewritten, by name.
    layers: list[str] = dataclasses.field(default_factory=list)


def fit_net(net: CaffeNet, profile) -> Fitted:
    """``net`` with every rewrite of ``profile`` applied (weights carried, new layers' weights added)."""
    notes: list[str] = []
    layers: list[str] = []
    for name in profile.rewrites:
        result = REWRITES[name].apply(net, profile)
        if not result.notes:
            continue
        notes.extend(f"{name}: {note}" for note in result.notes)
        layers.extend(layer for layer in result.layers if layer not in layers)
        partial = any(node.shapes is None for node in net.layers)
        net = net_from_parameter(result.net, result.weights if net.has_weights or result.weights else None,
                                 net.source, partial=partial)
    return Fitted(net, notes, layers)
