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
    args, kwargs = record.node.arguments.fill_in(tensors)
    return _to_numpy(keras.tree.flatten(record.operation(*args, **kwargs))[0])


def _linear_copy(layer):
    config = dict(layer.get_config(), activation="linear")
    copy = type(layer).from_config(config)
    return copy


def fold_constants(graph, removed_roots) -> FoldResult:
    """Propagate removed channels' zero-weight values and compute the biases that absorb them."""
    removed = np.asarray(sorted(removed_roots), dtype=np.int64)
    calls: dict[str, int] = {}
    for record in graph.records:
        calls[record.name] = calls.get(record.name, 0) + 1
    values: dict[int, np.ndarray] = {}
    known: dict[int, np.ndarray] = {}
    biases: dict[str, np.ndarray] = {}
    unfolded: list[UnfoldedConstant] = []

    def lookup(tensor):
        key = id(tensor)
        while key not in values and key in graph.aliases:
            key = graph.aliases[key]
        return values.get(key), known.get(key)

    def gone(layout):
        return None if layout is None else np.isin(graph.roots[layout], removed)

    for record in graph.records:
        if record.kind == SOURCE:
            layer = record.operation
            bias = _fold_into(record, lookup, gone, calls, unfolded)
            if bias is not None:
                biases[layer.name] = bias
            out_gone = gone(record.out_layouts[0])
            if out_gone is not None and out_gone.any():
                if bias is None:
                    bias = _to_numpy(layer.bias.value) if getattr(layer, "use_bias", False) else \
                        np.zeros(len(out_gone))
                activated = _to_numpy(layer.activation(keras.ops.convert_to_tensor(bias.astype(np.float32))))
                values[id(record.outputs[0])] = np.where(out_gone, activated, 0.0)
                known[id(record.outputs[0])] = out_gone.copy()
            continue
        inputs = [lookup(t) for t in record.inputs]
        if not any(v is not None for v, _ in inputs):
            continue
        out = record.outputs[0]
        if record.kind == CHANNELWISE:
            value, ok = inputs[0]
            if value is None or len(record.inputs) != 1:
                continue
            x = _filled(record.inputs[0], value)
            if x is None:
                continue
            result, constant = _constant_channels(_call(record, {id(record.inputs[0]): x}))
            values[id(out)], known[id(out)] = np.where(constant, result, 0.0), ok & constant
            _note_lost(record, ok & ~constant & gone(record.in_layouts[0]), unfolded)
        elif record.kind == MERGE:
            if any(v is None for v, _ in inputs):
                continue  # a merge partner with no constant (a live broadcast input): nothing to carry
            arrays = {}
            for tensor, (value, _) in zip(record.inputs, inputs):
                arrays[id(tensor)] = _filled(tensor, value if tensor.shape[-1] == out.shape[-1] else value[:1])
            if any(a is None for a in arrays.values()):
                continue
            result, constant = _constant_channels(_call(record, arrays))
            ok = constant.copy()
            for tensor, (_, k) in zip(record.inputs, inputs):
                if tensor.shape[-1] == out.shape[-1]:
                    ok &= k
            values[id(out)], known[id(out)] = np.where(ok, result, 0.0), ok
            carried = np.ones_like(ok)
            for tensor, (value, k) in zip(record.inputs, inputs):
                if tensor.shape[-1] == out.shape[-1]:
                    carried &= k
            _note_lost(record, carried & ~constant & gone(record.out_layouts[0]), unfolded)
        elif record.kind == CONCAT:
            parts_v, parts_k = [], []
            for tensor, (value, ok) in zip(record.inputs, inputs):
                width = int(tensor.shape[-1])
                parts_v.append(value if value is not None else np.zeros(width))
                parts_k.append(ok if ok is not None else np.zeros(width, dtype=bool))
            values[id(out)], known[id(out)] = np.concatenate(parts_v), np.concatenate(parts_k)
        elif record.kind == RESHAPE:
            value, ok = inputs[0]
            repeat = len(record.out_layouts[0]) // len(value)
            values[id(out)], known[id(out)] = np.tile(value, repeat), np.tile(ok, repeat)
    return FoldResult(biases, unfolded)


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
