"""Where a channel-creating layer keeps each of its units in its weights, and how to cut them.

A *source* layer creates the channels (units) its output carries: a Conv2D's
filters, a Dense layer's units, an LSTM's units. Pruning, ranking and masking
a unit all need the same fact: which slices of which weights belong to it.
This module states that once per layer family, as a list of :class:`Cut`:

* a Conv/Dense kernel holds unit ``j`` in column ``j`` of its last axis
  (Conv*Transpose: of its next-to-last), and reads input channel ``i`` along
  the axis before;
* a recurrent layer stacks its gates along the last axis, each ``units`` wide
  (LSTM: i, f, c, o; GRU: z, r, h; SimpleRNN: one), so unit ``j`` is column
  ``g * units + j`` of every gate ``g`` of its kernel, recurrent kernel and bias,
  and also row ``j`` of the recurrent kernel (the unit's state feeds every
  gate): an LSTM unit is cut as its four gate columns together;
* Bidirectional holds a forward and a backward layer of equal width (Keras
  assumes it), and unit ``j`` is unit ``j`` of both: they are cut as a pair;
* TimeDistributed holds its inner layer's weights as they are;
* Embedding holds unit ``j`` in column ``j`` of its table.

:func:`cuts` gives the list, :func:`take` slices weights to surviving units
and input channels, :func:`unit_scores` reduces weights to one number per
unit, :func:`unit_masks` zeroes units. Everything keys weights by their
position in ``layer.weights``, because a Bidirectional layer has two
variables of each name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

OUT = "out"  # indexed by the layer's own units
IN = "in"    # indexed by the layer's input channels

CONV = ("Conv1D", "Conv2D", "Conv3D")
CONV_TRANSPOSE = ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
SEPARABLE = ("SeparableConv1D", "SeparableConv2D")
DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
#: Recurrent layers (and their cells) and their gate counts.
RECURRENT_GATES = {"LSTM": 4, "LSTMCell": 4, "GRU": 3, "GRUCell": 3, "SimpleRNN": 1, "SimpleRNNCell": 1}


@dataclasses.dataclass(frozen=True)
class Cut:
    """One axis of one weight that is indexed by units (OUT) or by input channels (IN).

    Along an OUT axis, ``gates`` blocks follow each other, each holding the
    ``span`` units that start at unit ``start`` of the layer.
    """

    weight: int
    axis: int
    role: str
    gates: int = 1
    start: int = 0
    span: int = 0
    #: False for a recurrent kernel's rows: the unit's state read by every gate, not the unit's own filter.
    own: bool = True

    def indices(self, alive_units: np.ndarray | None, alive_in: np.ndarray | None, size: int) -> np.ndarray:
        """The surviving indices along this cut's axis (of length ``size``)."""
        if self.role == IN:
            return np.arange(size) if alive_in is None else np.flatnonzero(alive_in)
        if alive_units is None:
            return np.arange(size)
        kept = np.flatnonzero(alive_units[self.start:self.start + self.span])
        return np.concatenate([gate * self.span + kept for gate in range(self.gates)])


def _keras(layer, names) -> bool:
    cls = type(layer)
    return cls.__name__ in names and cls.__module__.startswith("keras.")


def _position(layer, variable) -> int:
    for index, candidate in enumerate(layer.weights):
        if candidate is variable:
            return index
    raise LookupError(f"{variable.name} is not a weight of {layer.name}")


def _named(layer, owner, name: str) -> int | None:
    for variable in owner.weights:
        if variable.name == name:
            return _position(layer, variable)
    return None


def recurrent_cell(layer):
    """The cell of a recurrent layer keraffe can cut (LSTM, GRU, SimpleRNN, or RNN of their cells), else None."""
    if not _keras(layer, ("LSTM", "GRU", "SimpleRNN", "RNN")):
        return None
    cell = getattr(layer, "cell", None)
    if cell is None or not _keras(cell, ("LSTMCell", "GRUCell", "SimpleRNNCell")):
        return None
    return cell


def _recurrent_cuts(layer, owner, start: int) -> list[Cut]:
    cell = recurrent_cell(owner)
    gates, units = RECURRENT_GATES[type(cell).__name__], int(cell.units)
    found = []
    kernel, recurrent, bias = (_named(layer, cell, n) for n in ("kernel", "recurrent_kernel", "bias"))
    found += [Cut(kernel, 0, IN), Cut(kernel, -1, OUT, gates, start, units)]
    found += [Cut(recurrent, 0, OUT, 1, start, units, own=False), Cut(recurrent, -1, OUT, gates, start, units)]
    if bias is not None:
        found.append(Cut(bias, -1, OUT, gates, start, units))
    return found


def cuts(layer) -> list[Cut] | None:
    """The cuts of a source layer, or None for a layer that creates no channels keraffe can cut."""
    name = type(layer).__name__
    if _keras(layer, ("TimeDistributed",)):
        inner = cuts(layer.layer)
        return None if inner is None else [dataclasses.replace(c, weight=_position(layer, layer.layer.weights[c.weight]))
                                           for c in inner]
    if _keras(layer, ("Bidirectional",)):
        forward, backward = layer.forward_layer, layer.backward_layer
        if recurrent_cell(forward) is None or recurrent_cell(backward) is None:
            return None
        if int(forward.cell.units) != int(backward.cell.units):
            return None
        return _recurrent_cuts(layer, forward, 0) + _recurrent_cuts(layer, backward, 0)
    if recurrent_cell(layer) is not None:
        return _recurrent_cuts(layer, layer, 0)
    if _keras(layer, ("Embedding",)):
        return [Cut(_named(layer, layer, "embeddings"), -1, OUT, 1, 0, int(layer.output_dim))]
    if not _keras(layer, CONV + CONV_TRANSPOSE + SEPARABLE + ("Dense",)):
        return None
    units = int(layer.units if name == "Dense" else layer.filters)
    transpose = name in CONV_TRANSPOSE
    kernel = _named(layer, layer, "pointwise_kernel" if name in SEPARABLE else "kernel")
    found = [Cut(kernel, -1 if transpose else -2, IN), Cut(kernel, -2 if transpose else -1, OUT, 1, 0, units)]
    if name in SEPARABLE:
        found.append(Cut(_named(layer, layer, "depthwise_kernel"), -2, IN))
    bias = _named(layer, layer, "bias")
    if bias is not None:
        found.append(Cut(bias, 0, OUT, 1, 0, units))
    return found


def unit_count(layer) -> int:
    """How many units (output channels before any merge) a source layer creates."""
    if _keras(layer, ("TimeDistributed",)):
        return unit_count(layer.layer)
    if _keras(layer, ("Bidirectional",)):
        return int(layer.forward_layer.cell.units)
    return max(c.start + c.span for c in cuts(layer) if c.role == OUT)


def take(layer, values: list[np.ndarray], alive_in, alive_units) -> list[np.ndarray]:
    """``values`` (one array per ``layer.weights``) cut to the surviving input channels and units."""
    values = [np.asarray(v) for v in values]
    for cut in cuts(layer):
        value = values[cut.weight]
        axis = cut.axis % value.ndim
        values[cut.weight] = np.take(value, cut.indices(alive_units, alive_in, value.shape[axis]), axis=axis)
    return values


def unit_scores(layer, values: list[np.ndarray], per_weight: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """One score per unit: ``per_weight`` summed over the unit's own weights (its filter, its gate columns).

    A recurrent unit's row of the recurrent kernel is its state feeding the
    gates, not the unit's own filter, so it does not count, as the next
    layer's input rows do not count for a Conv filter.
    """
    scores = np.zeros(unit_count(layer))
    for cut in cuts(layer):
        if cut.role != OUT or not cut.own:
            continue
        value = np.asarray(values[cut.weight], dtype=np.float64)
        moved = np.moveaxis(value, cut.axis, 0)
        per_index = per_weight(moved.reshape(moved.shape[0], -1)).sum(axis=1)
        blocks = per_index.reshape(cut.gates, cut.span).sum(axis=0)
        scores[cut.start:cut.start + cut.span] += blocks
    return scores


def unit_masks(layer, masked_units: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(weight position, 0/1 mask broadcastable to it) zeroing the masked units' own weights."""
    masks: dict[int, np.ndarray] = {}
    shapes = [tuple(v.shape) for v in layer.weights]
    for cut in cuts(layer):
        if cut.role != OUT or not cut.own:
            continue
        shape = shapes[cut.weight]
        axis = cut.axis % len(shape)
        gone = np.zeros(cut.gates * cut.span, dtype=bool)
        for gate in range(cut.gates):
            gone[gate * cut.span: (gate + 1) * cut.span] = masked_units[cut.start:cut.start + cut.span]
        broadcast = [1] * len(shape)
        broadcast[axis] = shape[axis]
        mask = np.where(gone, 0.0, 1.0).reshape(broadcast)
        masks[cut.weight] = mask if cut.weight not in masks else masks[cut.weight] * mask
    return sorted(masks.items())
