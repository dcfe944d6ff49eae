"""What every Caffe -> Caffe pass works with: the net's layers copied in order, some replaced, new ones added.

A pass over a loaded :class:`~keraffe.caffe.net.CaffeNet` walks its layers,
keeps each one or writes layers that compute the same thing in its place, and
hands back the deploy NetParameter, the weights (layer name -> arrays) and
one note per rewrite. Rewrites keep the original layer's name on the layer
that produces the original top, and never rename a blob, so every blob of the
original net (and each in-place version of it) is still there, under the same
name, for a runtime or a tensor map to ask for.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keraffe.caffe.net import CaffeNet, LayerNode
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.names import unused_name

Weights = dict[str, list[np.ndarray]]


@dataclasses.dataclass
class Rewritten:
    """A pass's result: the net, its weights, and what was rewritten (one line per layer)."""

    net: pb.NetParameter
    weights: Weights
    notes: list[str]
    #: The original layers rewritten, by name (their tops keep their names in ``net``).
    layers: list[str] = dataclasses.field(default_factory=list)


class NetRewrite:
    """The net being written by one pass: ``for node, layer in rewrite.layers()``, then :meth:`done`."""

    def __init__(self, net: CaffeNet):
        self.source = net
        self.original = net.to_net_parameter()
        self.weights: Weights = dict(net.weight_arrays())
        self.result = pb.NetParameter()
        self.result.CopyFrom(self.original)
        del self.result.layer[:]
        self.notes: list[str] = []
        self.rewritten: list[str] = []
        self._names = {layer.name for layer in self.original.layer} | {
            blob for layer in self.original.layer for blob in (*layer.bottom, *layer.top)}

    def layers(self):
        """Each layer of the source net with a copy of its parameters, in order."""
        for node, layer in zip(self.source.layers, self.original.layer):
            yield node, layer

    def unique(self, wanted: str) -> str:
        """A layer or blob name no layer or blob of the net uses yet."""
        name = unused_name(wanted, self._names)
        self._names.add(name)
        return name

    def keep(self, layer: pb.LayerParameter) -> pb.LayerParameter:
        copy = self.result.layer.add()
        copy.CopyFrom(layer)
        return copy

    def add(self, type_name: str, name: str, bottoms, tops, weights=None) -> pb.LayerParameter:
        layer = self.result.layer.add(name=name, type=type_name)
        layer.bottom.extend(bottoms)
        layer.top.extend(tops)
        if weights is not None:
            self.weights[name] = [np.ascontiguousarray(w, dtype=np.float32) for w in weights]
        return layer

    def note(self, node: LayerNode, what: str) -> None:
        self.notes.append(f"'{node.name}' ({node.type}): {what}")
        self.rewritten.append(node.name)

    def done(self) -> Rewritten:
        names = {layer.name for layer in self.result.layer}
        weights = {name: arrays for name, arrays in self.weights.items() if name in names}
        return Rewritten(self.result, weights, self.notes, self.rewritten)

