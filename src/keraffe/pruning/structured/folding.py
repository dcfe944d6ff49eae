"""What a removed channel still contributed, folded into the next layer's bias where that is exact.

A removed channel is taken at its *zero-weight value*: what the channel would
carry if its filter were all zeros, i.e. its source's activation of its bias
(0 without one), carried on through the per-channel layers after it
(BatchNormalization turns it into its shifted beta, ReLU clips it, pooling
and depthwise convolutions keep or scale it). While that value is the same at
every pixel it is a per-channel constant, and a linear layer (Conv, Dense,
SeparableConv) that reads it adds a constant per output channel: its new bias.
Whether the value stays constant is not assumed but computed: each layer is
run on a batch of one filled with the constants, and anything that varies
over the pixels (zero padding of a non-zero constant, a 'same' 3x3 kernel at
the borders) stops the folding there. So pruning a channel whose weights are
all zero leaves the model's outputs unchanged wherever the fold is exact, and
:class:`FoldResult` lists where it was not.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keraffe.pruning.structured.dependency import CHANNELWISE, CONCAT, MERGE, RESHAPE, SOURCE

#: Relative spread over the pixels below which a float32 map counts as one constant.
CONSTANT_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class UnfoldedConstant:
    """A layer that reads removed channels whose constant value could not be folded exactly."""

    layer: str
    channels: int
    reason: str


@dataclasses.dataclass
class FoldResult:
    """New biases (for every output channel, before slicing) by layer name, and where folding stopped."""

    biases: dict
    unfolded: list


def _to_numpy(value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)


def _filled(tensor, values: np.ndarray) -> np.ndarray | None:
    shape = tuple(tensor.shape[1:])
    if any(d is None for d in shape):
        return None
    return np.broadcast_to(values.astype(np.float32), (1, *shape)).copy()


def _constant_channels(output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel value and whether it is the same at every pixel."""
    flat = output.reshape(-1, output.shape[-1]).astype(np.float64)
    low, high = flat.min(axis=0), flat.max(axis=0)
    scale = np.maximum(1.0, np.maximum(np.abs(low), np.abs(high)))
    return flat[0], (high - low) <= CONSTANT_TOLERANCE * scale


def _call(record, arrays: dict[int, np.ndarray]) -> np.ndarray:
    tensors = {key: keras.ops.convert_to_tensor(value) for key, value in arrays.items()}
    return _to_numpy(record.call.replay(record.operation, tensors)[0])


def _linear_copy(layer):
    config = dict(layer.get_config(), activation="linear")
    copy = type(layer).from_config(config)
    return copy


def fold_constants(graph, removed_roots) -> FoldResult:
    """Propagate removed channels' zero-weight values and compute the biases that absorb them."""
    folding = _Folding(graph, removed_roots)
    for record in graph.records:
        folding.visit(record)
    return FoldResult(folding.biases, folding.unfolded)


class _Folding:
    """The constants removed channels carry, tensor by tensor, in one pass over the channel graph's records.

    ``values[id(tensor)]`` is each channel's constant value and ``known`` says
    where it is known to be a constant (the same at every pixel).
    """

    def __init__(self, graph, removed_roots):
        self.graph = graph
        self.removed = np.asarray(sorted(removed_roots), dtype=np.int64)
        self.calls: dict[str, int] = {}
        for record in graph.records:
            self.calls[record.name] = self.calls.get(record.name, 0) + 1
        self.values: dict[int, np.ndarray] = {}
        self.known: dict[int, np.ndarray] = {}
        self.biases: dict[str, np.ndarray] = {}
        self.unfolded: list[UnfoldedConstant] = []

    def lookup(self, tensor):
        key = id(tensor)
        while key not in self.values and key in self.graph.aliases:
            key = self.graph.aliases[key]
        return self.values.get(key), self.known.get(key)

    def gone(self, layout):
        return None if layout is None else np.isin(self.graph.roots[layout], self.removed)

    def visit(self, record) -> None:
        if record.kind == SOURCE:
            self._source(record)
            return
        inputs = [self.lookup(t) for t in record.inputs]
        if not any(v is not None for v, _ in inputs):
            return
        step = {CHANNELWISE: self._channelwise, MERGE: self._merge, CONCAT: self._concat,
                RESHAPE: self._reshape}.get(record.kind)
        if step is not None:
            step(record, inputs)

    def _source(self, record) -> None:
        """A linear layer absorbs the constants it reads into its bias; its own removed channels emit theirs."""
        layer = record.operation
        bias = _fold_into(record, self.lookup, self.gone, self.calls, self.unfolded)
        if bias is not None:
            self.biases[layer.name] = bias
        out_gone = self.gone(record.out_layouts[0])
        if out_gone is None or not out_gone.any():
            return
        if bias is None:
            bias = _to_numpy(layer.bias.value) if getattr(layer, "use_bias", False) else np.zeros(len(out_gone))
        activated = _to_numpy(layer.activation(keras.ops.convert_to_tensor(bias.astype(np.float32))))
        self.values[id(record.outputs[0])] = np.where(out_gone, activated, 0.0)
        self.known[id(record.outputs[0])] = out_gone.copy()

    def _channelwise(self, record, inputs) -> None:
        value, ok = inputs[0]
        if value is None or len(record.inputs) != 1:
            return
        x = _filled(record.inputs[0], value)
        if x is None:
            return
        result, constant = _constant_channels(_call(record, {id(record.inputs[0]): x}))
        out = record.outputs[0]
        self.values[id(out)], self.known[id(out)] = np.where(constant, result, 0.0), ok & constant
        _note_lost(record, ok & ~constant & self.gone(record.in_layouts[0]), self.unfolded)

    def _merge(self, record, inputs) -> None:
        if any(v is None for v, _ in inputs):
            return  # a merge partner with no constant (a live broadcast input): nothing to carry
        out = record.outputs[0]
        full = [out.shape[-1] == tensor.shape[-1] for tensor in record.inputs]
        arrays = {id(tensor): _filled(tensor, value if whole else value[:1])
                  for tensor, (value, _), whole in zip(record.inputs, inputs, full)}
        if any(a is None for a in arrays.values()):
            return
        result, constant = _constant_channels(_call(record, arrays))
        carried = np.ones_like(constant)
        for (_, known), whole in zip(inputs, full):
            if whole:
                carried &= known
        ok = constant & carried
        self.values[id(out)], self.known[id(out)] = np.where(ok, result, 0.0), ok
        _note_lost(record, carried & ~constant & self.gone(record.out_layouts[0]), self.unfolded)

    def _concat(self, record, inputs) -> None:
        parts_v, parts_k = [], []
        for tensor, (value, ok) in zip(record.inputs, inputs):
            width = int(tensor.shape[-1])
            parts_v.append(value if value is not None else np.zeros(width))
            parts_k.append(ok if ok is not None else np.zeros(width, dtype=bool))
        out = record.outputs[0]
        self.values[id(out)], self.known[id(out)] = np.concatenate(parts_v), np.concatenate(parts_k)

    def _reshape(self, record, inputs) -> None:
        value, ok = inputs[0]
        repeat = len(record.out_layouts[0]) // len(value)
        out = record.outputs[0]
        self.values[id(out)], self.known[id(out)] = np.tile(value, repeat), np.tile(ok, repeat)


def _note_lost(record, lost: np.ndarray, unfolded: list) -> None:
    if lost.any():
        unfolded.append(UnfoldedConstant(
            record.name, int(lost.sum()),
            "a removed channel's constant stops being constant here (padding at the borders)"))


def _fold_into(record, lookup, gone, calls, unfolded) -> np.ndarray | None:
    """The new (full-length) bias of a linear source layer that reads removed constant channels, if exact."""
    layer = record.operation
    value, ok = lookup(record.inputs[0])
    in_gone = gone(record.in_layouts[0])
    if value is None or in_gone is None:
        return None
    carried = in_gone & ok & (value != 0.0)
    if not carried.any():
        return None
    count = int(carried.sum())
    if calls[layer.name] > 1:
        unfolded.append(UnfoldedConstant(layer.name, count, "the layer is called more than once"))
        return None
    x = _filled(record.inputs[0], np.where(carried, value, 0.0))
    if x is None:
        unfolded.append(UnfoldedConstant(layer.name, count, "the input has unknown sizes"))
        return None
    linear = _linear_copy(layer)
    linear.build(tuple(record.inputs[0].shape))
    linear.set_weights(layer.get_weights())
    result, constant = _constant_channels(_to_numpy(linear(keras.ops.convert_to_tensor(x))))
    if not constant.all():
        unfolded.append(UnfoldedConstant(
            layer.name, count, "the constant reaches padded borders, so its contribution varies over the pixels"))
        return None
    return result
