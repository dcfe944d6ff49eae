"""How to cut one layer or op: its new config and its sliced weights, given which channels survive.

One function per family, chosen by class. ``alive_in`` marks the surviving
positions of the layer's (first) input channel axis, ``alive_units`` the
surviving units of a source layer (see :mod:`.sources`); for Dense after
Flatten the input positions are the flattened features, so the strided NHWC
mapping is already in them. keras.ops calls whose arguments name channel
counts (a split's sections, a slice's bounds, a reshape's target) are
replaced by the same op with the new counts (:func:`shrink_op`). Also here:
the multiply-accumulates of each layer call, as a function of its surviving
channel counts, which is what makes MAC targets cheap to search.
"""

from __future__ import annotations

import numpy as np

from keraffe.pruning.structured import sources
from keraffe.pruning.structured.rebuild import layer_config
from keraffe.pruning.structured.rules import channel_slice, keras_class
from keraffe.pruning.structured.sources import CONV, CONV_TRANSPOSE, DEPTHWISE, RECURRENT_GATES, SEPARABLE


def _set_units(layer, config: dict, alive_units: np.ndarray, use_bias: bool = False) -> dict:
    """The config of a source layer with its unit count(s) changed to the surviving ones (and a bias if asked)."""
    def nested(key, sublayer, alive):
        serialized = _unbuilt(config[key])
        serialized["config"] = _set_units(sublayer, dict(serialized["config"]), alive, use_bias)
        return serialized

    if keras_class(layer, ("TimeDistributed",)):
        return dict(config, layer=nested("layer", layer.layer, alive_units))
    if keras_class(layer, ("Bidirectional",)):  # unit j of both directions goes or stays together
        return dict(config, layer=nested("layer", layer.forward_layer, alive_units),
                    backward_layer=nested("backward_layer", layer.backward_layer, alive_units))
    if keras_class(layer, ("RNN",)):  # RNN(cell): the count lives in the cell's config
        return dict(config, cell=nested("cell", layer.cell, alive_units))
    name = type(layer).__name__
    key = "output_dim" if name == "Embedding" else "units" if name == "Dense" or name in RECURRENT_GATES else "filters"
    config = dict(config, **{key: int(alive_units.sum())})
    if use_bias:
        config["use_bias"] = True
    return config


def _unbuilt(serialized: dict) -> dict:
    """A wrapped layer's serialized config without its build config, which holds the old input shape."""
    return {key: value for key, value in serialized.items() if key != "build_config"}


def shrink_source(layer, alive_in, alive_units, replaced=None) -> tuple[dict, list[np.ndarray]]:
    """The config and weights of a source layer cut to its surviving input channels and units.

    ``replaced`` maps weight positions to new full-size values (biases that
    absorbed removed channels' constants, see folding); the key None adds a
    bias to a Conv or Dense layer built without one.
    """
    config = layer_config(layer)
    values = [np.asarray(v) for v in layer.get_weights()]
    replaced = dict(replaced or {})
    added = replaced.pop(None, None)
    for position, value in replaced.items():
        values[position] = np.asarray(value, dtype=values[position].dtype)
    alive_units = np.ones(sources.unit_count(layer), dtype=bool) if alive_units is None else alive_units
    cut = sources.take(layer, values, alive_in, alive_units)
    if added is not None:
        cut.append(np.asarray(added, dtype=np.float32)[alive_units])
    return _set_units(layer, config, alive_units, use_bias=added is not None), cut


def shrink_layer(layer, alive_in) -> tuple[dict, list[np.ndarray]]:
    """The config and weights of a layer that keeps channels where they are, cut to the surviving inputs."""
    config = layer_config(layer)
    values = [np.asarray(v) for v in layer.get_weights()]
    if alive_in is None or alive_in.all():
        return config, values
    keep = np.flatnonzero(alive_in)
    name = type(layer).__name__
    if keras_class(layer, ("TimeDistributed",)):
        inner_config, values = shrink_layer(layer.layer, alive_in)
        return dict(config, layer=dict(_unbuilt(config["layer"]), config=inner_config)), values
    if name in DEPTHWISE:
        values[0] = np.take(values[0], keep, axis=values[0].ndim - 2)
        if len(values) > 1:
            values[1] = values[1][keep]
    elif name in CONV:  # a depthwise convolution written as a grouped one (groups == filters == channels)
        values[0] = np.take(values[0], keep, axis=values[0].ndim - 1)
        if len(values) > 1:
            values[1] = values[1][keep]
        config.update(filters=int(len(keep)), groups=int(len(keep)))
    elif name == "Reshape":
        config["target_shape"] = _reshaped(tuple(config["target_shape"]), alive_in)
    else:  # per-channel weights (BatchNormalization, PReLU): the last axis is the channel axis
        values = [v[..., keep] if v.ndim and v.shape[-1] == len(alive_in) else v for v in values]
    return config, values


def _reshaped(target: tuple, alive_in: np.ndarray) -> tuple:
    target = list(target)
    kept = int(alive_in.sum())
    if target[-1] == len(alive_in):
        target[-1] = kept
    else:  # a flattening reshape: every position of the flattened axis was one channel position
        target[-1] = int(target[-1] // len(alive_in) * kept)
    return tuple(target)


def shrink_op(record, alive_in, alive_outs):
    """A replacement for a keras.ops call whose arguments count channels, or None to replay it as it is.

    ``alive_outs`` holds the surviving positions of each output's channel axis.
    The replacement is called with the original call's arguments.
    """
    import keras

    operation = record.operation
    if alive_in is None or alive_in.all():
        return None
    if keras_class(operation, ("Split",)) and operation.axis % len(record.inputs[0].shape) == \
            len(record.inputs[0].shape) - 1:
        sizes = [int(alive.sum()) for alive in alive_outs]
        indices = [int(i) for i in np.cumsum(sizes)[:-1]]
        axis = operation.axis
        return lambda x, *args, **kwargs: keras.ops.split(x, indices, axis=axis)
    if keras_class(operation, ("GetItem",)):
        taken = channel_slice(record.call)
        start, stop, _ = taken.indices(len(alive_in))
        new = slice(int(alive_in[:start].sum()), int(alive_in[:stop].sum()))
        rank = len(record.inputs[0].shape)

        def get_item(x, key):
            key = key if isinstance(key, tuple) else (key,)
            if Ellipsis in key:
                at = key.index(Ellipsis)
                key = key[:at] + (slice(None),) * (rank - len(key) + 1) + key[at + 1:]
            key = key + (slice(None),) * (rank - len(key))
            return x[key[:-1] + (new,)]

        return get_item
    if keras_class(operation, ("Reshape",)):
        target = _reshaped(tuple(operation.newshape), alive_in)
        return lambda x, *args, **kwargs: keras.ops.reshape(x, target)
    return None


def _recurrent_macs(layer, steps: int, kept_in: int, units: int) -> int:
    gates = RECURRENT_GATES[type(sources.recurrent_cell(layer)).__name__]
    return steps * gates * (kept_in * units + units * units)


def record_macs(record, kept_in: int | None = None, alive_units: np.ndarray | None = None) -> int:
    """Multiply-accumulates of one layer call, with ``kept_in`` input channels and the ``alive_units`` (None: all)."""
    layer = record.operation
    if keras_class(layer, ("TimeDistributed",)):
        layer = layer.layer
    name = type(layer).__name__
    in_shape = tuple(record.inputs[0].shape[1:]) if record.inputs else ()
    out_shape = tuple(record.outputs[0].shape[1:]) if record.outputs else ()
    if any(d is None for d in in_shape + out_shape) or not type(layer).__module__.startswith("keras."):
        return 0
    c_in = in_shape[-1] if kept_in is None and in_shape else kept_in
    if keras_class(layer, ("Bidirectional",)):
        units = int(layer.forward_layer.cell.units) if alive_units is None else int(alive_units.sum())
        return sum(_recurrent_macs(half, in_shape[0], c_in, units) for half in (layer.forward_layer,
                                                                              layer.backward_layer))
    if sources.recurrent_cell(layer) is not None:
        units = int(layer.cell.units) if alive_units is None else int(alive_units.sum())
        return _recurrent_macs(layer, in_shape[0], c_in, units)
    if not (name in CONV or name in CONV_TRANSPOSE or name in SEPARABLE or name in DEPTHWISE or name == "Dense"):
        return 0
    c_out = out_shape[-1] if alive_units is None else int(alive_units.sum())
    if name == "Dense":
        return int(np.prod(in_shape[:-1], dtype=np.int64)) * c_in * c_out
    kernel = int(np.prod(layer.kernel_size))
    if name in CONV and layer.groups > 1 and layer.groups == in_shape[-1] == out_shape[-1]:
        return int(np.prod(out_shape[:-1], dtype=np.int64)) * kernel * c_in  # depthwise, as a grouped conv
    if name in CONV:
        return int(np.prod(out_shape[:-1], dtype=np.int64)) * kernel * (c_in // layer.groups) * c_out
    if name in CONV_TRANSPOSE:
        return int(np.prod(in_shape[:-1], dtype=np.int64)) * kernel * c_in * c_out
    spatial = int(np.prod(out_shape[:-1], dtype=np.int64))
    if name in DEPTHWISE:
        return spatial * kernel * c_in * layer.depth_multiplier
    return spatial * kernel * c_in * layer.depth_multiplier + spatial * c_in * layer.depth_multiplier * c_out


def model_macs(model) -> int:
    """Multiply-accumulates of one forward pass (convolutions, Dense, recurrent layers), on the Keras graph."""
    from keraffe.pruning.structured.dependency import ChannelGraph

    return sum(record_macs(record) for record in ChannelGraph(model).records)
