"""A Caffe -> Caffe pass for toolchains without Dropout: each Dropout as the identity it is at inference.

Caffe's Dropout passes its input through unchanged in the TEST phase.
Huawei's ATC lists no Dropout layer. Removing it would rename blobs (or
renumber in-place versions), so it becomes a Power layer with its defaults
(y = (0 + 1 * x) ^ 1, which Caffe computes as a copy), in place where the
Dropout was: every blob keeps its name and version, every value its bits.

Given::

    drop = Dropout(x)                  dropout_ratio 0.5

Result::

    drop = Power(x)                    power 1, scale 1, shift 0: y = x
"""

from __future__ import annotations

from keraffe.caffe.net import CaffeNet
from keraffe.passes.caffe_rewrite import NetRewrite, Rewritten


def dropout_as_identity(net: CaffeNet) -> Rewritten:
    rewrite = NetRewrite(net)
    for node, layer in rewrite.layers():
        if node.type != "Dropout":
            rewrite.keep(layer)
            continue
        identity = rewrite.add("Power", layer.name, list(layer.bottom), list(layer.top))
        identity.power_param.power = 1.0  # written out: the layer says what it computes
        rewrite.note(node, "identity at inference, written as Power y = x")
    return rewrite.done()
