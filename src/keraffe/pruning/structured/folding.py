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

A removed channel whose filter is not zero has no exact value to keep; where
it meets a BatchNormalization, the layer's measured mean stands in for it
(the normalised value is then beta, the channel's average) rather than its
zero-weight value, which can be far from anything the channel carried.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keraffe.pruning.structured import sources
from keraffe.pruning.structured.rules import CHANNELWISE, CONCAT, MERGE, RESHAPE, SOURCE, SPLIT, keras_class

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
    """New biases by layer name, and where folding stopped.

    ``biases[layer]`` maps positions in ``layer.weights`` to new full-size
    values (before any slicing); the position None is a bias a Conv or Dense
    layer built without one must get.
    """

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
    with np.errstate(invalid="ignore"):  # -inf padding (max pooling) is not a constant: NaN compares False
        return flat[0], (high - low) <= CONSTANT_TOLERANCE * scale


def _call(record, arrays: dict[int, np.ndarray]) -> np.ndarray:
    tensors = {key: keras.ops.convert_to_tensor(value) for key, value in arrays.items()}
    return _to_numpy(record.call.replay(record.operation, tensors)[0])


def _linear_copy(layer):
    """The layer without its activation (TimeDistributed: its inner layer's)."""
    config = layer.get_config()
    if keras_class(layer, ("TimeDistributed",)):
        inner = dict(config["layer"])
        inner["config"] = dict(inner["config"], activation="linear")
        config = dict(config, layer=inner)
    else:
        config = dict(config, activation="linear")
    return type(layer).from_config(config)


def _bias_position(layer) -> int | None:
    for cut in sources.cuts(layer):
        if cut.role == sources.OUT and np.ndim(layer.weights[cut.weight]) == 1 and cut.own and \
                layer.weights[cut.weight].name == "bias":
            return cut.weight
    return None


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
        #: Where a removed channel's filter is not zero: its zero-weight value is only a stand-in there.
        self.live: dict[int, np.ndarray] = {}
        self.biases: dict[str, np.ndarray] = {}
        self.unfolded: list[UnfoldedConstant] = []

    def lookup(self, tensor):
        key = self._key(tensor)
        return self.values.get(key), self.known.get(key)

    def _key(self, tensor) -> int:
        key = id(tensor)
        while key not in self.values and key in self.graph.aliases:
            key = self.graph.aliases[key]
        return key

    def live_of(self, tensor, width: int) -> np.ndarray:
        return self.live.get(self._key(tensor), np.zeros(width, dtype=bool))

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
                RESHAPE: self._reshape, SPLIT: self._split}.get(record.kind)
        if step is not None:
            step(record, inputs)

    def _source(self, record) -> None:
        """A source absorbs the constants it reads into its bias; its own removed units emit theirs."""
        layer = record.operation
        replaced = _fold_into(record, self.lookup, self.gone, self.calls, self.unfolded)
        if replaced is not None:
            self.biases[record.name] = replaced
        out_gone = self.gone(record.out_layouts[0])
        if out_gone is None or not out_gone.any():
            return
        values, known = _emitted(record, replaced or {}, out_gone, self.unfolded)
        out = record.outputs[0]
        self.values[id(out)] = np.where(out_gone & known, values, 0.0)
        self.known[id(out)] = out_gone & known
        self.live[id(out)] = out_gone & _live_units(record, self.graph)

    def _channelwise(self, record, inputs) -> None:
        value, ok = inputs[0]
        if value is None or len(record.inputs) != 1:
            return
        live = self.live_of(record.inputs[0], len(value))
        if live.any() and keras_class(record.operation, ("BatchNormalization",)):
            # A removed filter that is not zero: BatchNormalization measured what the channel carries, so
            # its mean stands in for it (the normalised output is then beta), not the zero-weight value.
            mean = _to_numpy(record.operation.moving_mean.value)
            value, live = np.where(live, mean, value), np.zeros_like(live)
        x = _filled(record.inputs[0], value)
        if x is None:
            return
        result, constant = _constant_channels(_call(record, {id(record.inputs[0]): x}))
        out = record.outputs[0]
        self.values[id(out)], self.known[id(out)] = np.where(constant, result, 0.0), ok & constant
        self.live[id(out)] = live & constant
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

    def _split(self, record, inputs) -> None:
        value, ok = inputs[0]
        if value is None:
            return
        for tensor, layout in zip(record.outputs, record.out_layouts):
            piece = _piece(record.in_layouts[0], layout)
            self.values[id(tensor)], self.known[id(tensor)] = value[piece], ok[piece]

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


def _live_units(record, graph) -> np.ndarray:
    """Per output position of a Conv/Dense-like source: whether that unit's own weights are not all zero."""
    layer = record.operation
    if sources.recurrent_cell(layer) is not None or keras_class(layer, ("Bidirectional", "Embedding")):
        return np.zeros(len(record.out_layouts[0]), dtype=bool)
    values = [np.asarray(v) for v in layer.get_weights()]
    nonzero = sources.unit_scores(layer, values, np.abs) > 0.0
    return nonzero if len(nonzero) == len(record.out_layouts[0]) else np.zeros(len(record.out_layouts[0]), bool)


def _piece(whole: np.ndarray, piece: np.ndarray) -> slice:
    """Where ``piece`` (a contiguous run of a split layout) sits in ``whole``."""
    if len(piece) == len(whole):
        return slice(None)
    for start in range(len(whole) - len(piece) + 1):
        if np.array_equal(whole[start:start + len(piece)], piece):
            return slice(start, start + len(piece))
    raise ValueError("a split piece is not a contiguous run of its input")


def _fold_into(record, lookup, gone, calls, unfolded) -> dict | None:
    """New full-size biases of a source that reads removed constant channels, where that is exact."""
    layer = record.operation
    value, ok = lookup(record.inputs[0]) if record.inputs else (None, None)
    in_gone = gone(record.in_layouts[0])
    if value is None or in_gone is None:
        return None
    carried = in_gone & ok & (value != 0.0)
    if not carried.any():
        return None
    count = int(carried.sum())
    if calls[record.name] > 1:
        unfolded.append(UnfoldedConstant(record.name, count, "the layer is called more than once"))
        return None
    if sources.recurrent_cell(layer) is not None or keras_class(layer, ("Bidirectional",)):
        return _fold_into_recurrent(record, np.where(carried, value, 0.0), count, unfolded)
    x = _filled(record.inputs[0], np.where(carried, value, 0.0))
    if x is None:
        unfolded.append(UnfoldedConstant(record.name, count, "the input has unknown sizes"))
        return None
    linear = _linear_copy(layer)
    linear.build(tuple(record.inputs[0].shape))
    linear.set_weights(layer.get_weights())
    result, constant = _constant_channels(_to_numpy(linear(keras.ops.convert_to_tensor(x))))
    if not constant.all():
        unfolded.append(UnfoldedConstant(
            record.name, count, "the constant reaches padded borders, so its contribution varies over the pixels"))
        return None
    return {_bias_position(layer): result}


def _recurrent_parts(layer):
    """(cell, kernel position, bias position or None) for each direction of a recurrent layer."""
    owners = (layer.forward_layer, layer.backward_layer) if keras_class(layer, ("Bidirectional",)) else (layer,)
    parts = []
    for owner in owners:
        cell = sources.recurrent_cell(owner)
        positions = {v.name: sources._position(layer, v) for v in cell.weights}
        parts.append((cell, positions["kernel"], positions.get("bias")))
    return parts


def _fold_into_recurrent(record, carried_values, count, unfolded) -> dict | None:
    """Input constants reach every gate through the kernel alone, once per step: a constant per gate column.

    It joins the bias (GRU with reset_after: the input bias, row 0), exactly.
    """
    layer = record.operation
    values = [np.asarray(v, dtype=np.float64) for v in layer.get_weights()]
    replaced = {}
    for cell, kernel, bias in _recurrent_parts(layer):
        if bias is None:
            unfolded.append(UnfoldedConstant(record.name, count, "the recurrent layer has no bias to absorb it"))
            return None
        delta = carried_values @ values[kernel]
        new = values[bias].copy()
        if new.ndim == 2:
            new[0] += delta
        else:
            new += delta
        replaced[bias] = new
    return replaced


def _emitted(record, replaced: dict, out_gone: np.ndarray, unfolded: list) -> tuple[np.ndarray, np.ndarray]:
    """What a source's removed units carry with all their weights zero but the bias, and where it is constant."""
    layer = record.operation
    width = len(out_gone)
    if keras_class(layer, ("Embedding",)):
        table = np.asarray(layer.get_weights()[0], dtype=np.float64)
        constant = np.ptp(table, axis=0) == 0.0
        _note(record, out_gone & ~constant, unfolded, "a removed embedding column is not the same for every token")
        return table[0], constant
    if sources.recurrent_cell(layer) is not None or keras_class(layer, ("Bidirectional",)):
        return _emitted_recurrent(record, replaced, out_gone, unfolded)
    inner = layer.layer if keras_class(layer, ("TimeDistributed",)) else layer
    bias = replaced.get(_bias_position(layer), replaced.get(None))
    if bias is None:
        bias = _to_numpy(inner.bias.value) if getattr(inner, "use_bias", False) else np.zeros(width)
    activated = _to_numpy(inner.activation(keras.ops.convert_to_tensor(np.asarray(bias, np.float32))))
    return activated, np.ones(width, dtype=bool)


def _sequence_config(layer) -> dict:
    """The layer's config returning every step and no states (Bidirectional: each direction's, concatenated)."""
    config = layer.get_config()
    if keras_class(layer, ("Bidirectional",)):
        subs = {key: dict(config[key], config=dict(config[key]["config"], return_sequences=True, return_state=False))
                for key in ("layer", "backward_layer")}
        return dict(config, merge_mode="concat", **subs)
    return dict(config, return_sequences=True, return_state=False)


def _emitted_recurrent(record, replaced: dict, out_gone, unfolded) -> tuple[np.ndarray, np.ndarray]:
    """Run a copy of the layer with every kernel zeroed on zeros: each unit then follows its own bias alone.

    A removed unit may go if its state is zero at every step (an LSTM unit
    whose cell-gate bias is zero, any unit whose weights are all zero): the
    units that stay read it through the recurrent kernel, where no bias can
    absorb it. What it hands the next layer is folded there when it is the
    same at every step.
    """
    layer = record.operation
    steps = record.inputs[0].shape[1]
    width = len(out_gone)
    if steps is None:
        _note(record, out_gone, unfolded, "the sequence length is unknown, so the removed units' outputs are too")
        return np.zeros(width), np.zeros(width, dtype=bool)
    values = [np.asarray(v, dtype=np.float32) for v in layer.get_weights()]
    for position, value in replaced.items():
        values[position] = np.asarray(value, dtype=np.float32)
    for cell, kernel, _ in _recurrent_parts(layer):
        values[kernel][:] = 0.0
        values[sources._position(layer, cell.recurrent_kernel)][:] = 0.0
    copy = type(layer).from_config(_sequence_config(layer))
    copy.build((1, *record.inputs[0].shape[1:]))
    copy.set_weights(values)
    zeros = np.zeros((1, *record.inputs[0].shape[1:]), dtype=np.float32)
    sequence = _to_numpy(keras.tree.flatten(copy(keras.ops.convert_to_tensor(zeros)))[0])[0]  # (steps, units)
    units_gone = _units_gone(layer, out_gone)
    if np.abs(sequence[:, units_gone]).max(initial=0.0) > 0.0:
        _note(record, units_gone, unfolded, "the recurrence reads the removed units' non-zero states")
    merged = _merge_directions(layer, sequence)
    returns_sequences = bool(getattr(getattr(layer, "forward_layer", layer), "return_sequences"))
    if not returns_sequences:
        return merged[-1], np.ones(width, dtype=bool)
    value, constant = _constant_channels(merged)
    _note(record, out_gone & ~constant, unfolded, "a removed unit's output changes from step to step")
    return value, constant


def _units_gone(layer, out_gone: np.ndarray) -> np.ndarray:
    """The simulated sequence's columns (both directions side by side) that belong to removed units."""
    if keras_class(layer, ("Bidirectional",)) and layer.merge_mode != "concat":
        return np.concatenate([out_gone, out_gone])
    return out_gone


def _merge_directions(layer, sequence: np.ndarray) -> np.ndarray:
    if not keras_class(layer, ("Bidirectional",)) or layer.merge_mode == "concat":
        return sequence
    forward = int(layer.forward_layer.cell.units)
    a, b = sequence[:, :forward], sequence[:, forward:]
    return {"sum": a + b, "ave": (a + b) / 2.0, "mul": a * b}[layer.merge_mode]


def _note(record, lost: np.ndarray, unfolded: list, reason: str) -> None:
    if lost.any():
        unfolded.append(UnfoldedConstant(record.name, int(lost.sum()), reason))
