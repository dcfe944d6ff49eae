"""How to cut one layer: its new config and its sliced weights, given which channels survive.

One function per layer family, chosen by class. ``alive_in`` marks the
surviving positions of the layer's (first) input channel axis, ``alive_out``
those of its output; for Dense after Flatten the input positions are the
flattened features, so the strided NHWC mapping is already in them. Also here:
the multiply-accumulates of each layer call, as a function of its surviving
channel counts, which is what makes MAC targets cheap to search.
"""

from __future__ import annotations

import numpy as np

from keraffe.pruning.structured.dependency import _CONV, _CONV_TRANSPOSE, _DEPTHWISE, _SEPARABLE


def _weights_by_name(layer) -> dict[str, np.ndarray]:
    return {variable.name: np.asarray(value) for variable, value in zip(layer.weights, layer.get_weights())}


def _indices(alive, size) -> np.ndarray:
    return np.arange(size) if alive is None else np.flatnonzero(alive)


def shrink_layer(layer, alive_in, alive_out, folded_bias=None) -> tuple[dict, list[np.ndarray]]:
    """The config and weights (in ``layer.get_weights()`` order) of ``layer`` cut to its surviving channels.

    ``folded_bias`` (already restricted to surviving outputs) replaces the
    bias of a source layer; a layer without a bias gets one.
    """
    name = type(layer).__name__
    config = layer.get_config()
    weights = _weights_by_name(layer)
    order = [variable.name for variable in layer.weights]
    if name in _CONV or name in _CONV_TRANSPOSE or name in _SEPARABLE or name == "Dense":
        kernel_key = "pointwise_kernel" if name in _SEPARABLE else "kernel"
        kernel = weights[kernel_key]
        transpose = name in _CONV_TRANSPOSE
        in_axis, out_axis = (kernel.ndim - 1, kernel.ndim - 2) if transpose else (kernel.ndim - 2, kernel.ndim - 1)
        keep_in = _indices(alive_in, kernel.shape[in_axis])
        keep_out = _indices(alive_out, kernel.shape[out_axis])
        weights[kernel_key] = np.take(np.take(kernel, keep_in, axis=in_axis), keep_out, axis=out_axis)
        if name in _SEPARABLE:
            depthwise = weights["depthwise_kernel"]
            weights["depthwise_kernel"] = np.take(depthwise, keep_in, axis=depthwise.ndim - 2)
        if "bias" in weights:
            weights["bias"] = weights["bias"][keep_out]
        if folded_bias is not None:
            if "bias" not in weights:
                order.append("bias")
                config["use_bias"] = True
            weights["bias"] = np.asarray(folded_bias, dtype=np.float32)
        config["units" if name == "Dense" else "filters"] = int(len(keep_out))
        return config, [weights[key] for key in order]
    if alive_in is None or alive_in.all():
        return config, [weights[key] for key in order]
    keep = np.flatnonzero(alive_in)
    if name in _DEPTHWISE:
        weights["kernel"] = np.take(weights["kernel"], keep, axis=weights["kernel"].ndim - 2)
        if "bias" in weights:
            weights["bias"] = weights["bias"][keep]
    elif name == "Reshape":
        target = list(config["target_shape"])
        if target[-1] == len(alive_in):
            target[-1] = int(len(keep))
        else:  # a flattening reshape: every position of the flattened axis was one channel position
            target[-1] = int(target[-1] // len(alive_in) * len(keep))
        config["target_shape"] = tuple(target)
    else:  # per-channel weights (BatchNormalization, PReLU): the last axis is the channel axis
        for key, value in weights.items():
            if value.ndim and value.shape[-1] == len(alive_in):
                weights[key] = value[..., keep]
    return config, [weights[key] for key in order]


def record_macs(record, kept_in: int | None = None, kept_out: int | None = None) -> int:
    """Multiply-accumulates of one layer call, with ``kept_in``/``kept_out`` channels (None: all)."""
    layer = record.operation
    name = type(layer).__name__
    if not (name in _CONV or name in _CONV_TRANSPOSE or name in _SEPARABLE or name in _DEPTHWISE
            or name == "Dense") or not type(layer).__module__.startswith("keras."):
        return 0
    in_shape = tuple(record.inputs[0].shape[1:])
    out_shape = tuple(record.outputs[0].shape[1:])
    if any(d is None for d in in_shape + out_shape):
        return 0
    c_in = in_shape[-1] if kept_in is None else kept_in
    c_out = out_shape[-1] if kept_out is None else kept_out
    if name == "Dense":
        return int(np.prod(in_shape[:-1], dtype=np.int64)) * c_in * c_out
    kernel = int(np.prod(layer.kernel_size))
    if name in _CONV:
        return int(np.prod(out_shape[:-1], dtype=np.int64)) * kernel * (c_in // layer.groups) * c_out
    if name in _CONV_TRANSPOSE:
        return int(np.prod(in_shape[:-1], dtype=np.int64)) * kernel * c_in * c_out
    spatial = int(np.prod(out_shape[:-1], dtype=np.int64))
    if name in _DEPTHWISE:
        return spatial * kernel * c_in * layer.depth_multiplier
    return spatial * kernel * c_in * layer.depth_multiplier + spatial * c_in * layer.depth_multiplier * c_out


def model_macs(model) -> int:
    """Multiply-accumulates of one forward pass (convolutions and Dense), counted on the Keras graph."""
    from keraffe.pruning.structured.dependency import ChannelGraph

    return sum(record_macs(record) for record in ChannelGraph(model).records)
