"""A Caffe -> Caffe pass for toolchains that limit a Concat's inputs: a wide Concat as a tree of narrower ones.

Concatenation is associative: joining the inputs in groups, then joining
the groups in the same order, puts every value where the one wide Concat
puts it. Huawei's ATC takes at most 16 bottoms per Concat.

Given (limit 16)::

    cat = Concat(x1, ..., x20)         axis 1

Result::

    cat/part1 = Concat(x1, ..., x16)   axis 1
    cat = Concat(cat/part1, x17, x18, x19, x20)
"""

from __future__ import annotations

from keraffe.caffe.net import CaffeNet
from keraffe.passes.caffe_rewrite import NetRewrite, Rewritten


def split_wide_concat(net: CaffeNet, limit: int) -> Rewritten:
    if limit < 2:
        raise ValueError("a Concat limit below 2 leaves nothing to join")
    rewrite = NetRewrite(net)
    for node, layer in rewrite.layers():
        if node.type != "Concat" or len(layer.bottom) <= limit:
            rewrite.keep(layer)
            continue
        bottoms = list(layer.bottom)
        part = 0
        while len(bottoms) > limit:
            part += 1
            name = rewrite.unique(f"{layer.name}/part{part}")
            joined = rewrite.add("Concat", name, bottoms[:limit], [name])
            joined.concat_param.CopyFrom(layer.concat_param)
            bottoms = [name] + bottoms[limit:]
        last = rewrite.keep(layer)
        del last.bottom[:]
        last.bottom.extend(bottoms)
        rewrite.note(node, f"{len(layer.bottom)} inputs joined by {part + 1} Concats of at most {limit}")
    return rewrite.done()
