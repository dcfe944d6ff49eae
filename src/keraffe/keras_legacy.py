"""Keras 2 HDF5 models that Keras 3 cannot open, read from their config and weights.

Keras 3 refuses many Keras 2.0-2.3 Sequential files (the HyperLPR models, for
one). Their HDF5 holds a JSON architecture and per-layer weights, so when every
layer is one of a few plain classes whose settings mean the same in Keras 3,
the model is rebuilt exactly. Anything else (a Lambda, a setting with no Keras
3 meaning, a weights-only file) is refused with the reason; nothing is guessed
and no stored code is ever run.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from keraffe.errors import KeraffeError
from keraffe.keras_graph import declared_variables
from keraffe.limits import check_declared

#: Keras 2 layer class -> the config keys that carry over unchanged to Keras 3.
_PORTABLE = {
    "Conv2D": {"filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "activation",
               "use_bias", "name", "trainable", "dtype"},
    "DepthwiseConv2D": {"kernel_size", "strides", "padding", "data_format", "depth_multiplier", "activation",
                        "use_bias", "name", "trainable", "dtype", "dilation_rate"},
    "SeparableConv2D": {"filters", "kernel_size", "strides", "padding", "data_format", "depth_multiplier",
                        "activation", "use_bias", "name", "trainable", "dtype", "dilation_rate"},
    "Dense": {"units", "activation", "use_bias", "name", "trainable", "dtype"},
    "Activation": {"activation", "name", "trainable", "dtype"},
    "MaxPooling2D": {"pool_size", "strides", "padding", "data_format", "name", "trainable", "dtype"},
    "AveragePooling2D": {"pool_size", "strides", "padding", "data_format", "name", "trainable", "dtype"},
    "GlobalAveragePooling2D": {"data_format", "name", "trainable", "dtype"},
    "GlobalMaxPooling2D": {"data_format", "name", "trainable", "dtype"},
    "Flatten": {"data_format", "name", "trainable", "dtype"},
    "Dropout": {"rate", "name", "trainable", "dtype", "seed"},
    "BatchNormalization": {"axis", "momentum", "epsilon", "center", "scale", "name", "trainable", "dtype"},
    "ZeroPadding2D": {"padding", "data_format", "name", "trainable", "dtype"},
    "Reshape": {"target_shape", "name", "trainable", "dtype"},
}
#: Keras 2 settings that were defaults there and have no effect on inference.
_IGNORED = {"kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer",
            "activity_regularizer", "kernel_constraint", "bias_constraint", "batch_input_shape", "noise_shape",
            "depthwise_initializer", "pointwise_initializer", "depthwise_regularizer", "pointwise_regularizer",
            "depthwise_constraint", "pointwise_constraint", "beta_initializer", "gamma_initializer",
            "moving_mean_initializer", "moving_variance_initializer", "beta_regularizer", "gamma_regularizer",
            "beta_constraint", "gamma_constraint", "seed"}


def _decode(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def load_legacy_h5(path: str | os.PathLike, original_error: Exception | None = None):
    """Rebuild a Keras 2 Sequential model from its HDF5 config and weights, or explain why not."""
    import h5py

    path = Path(path)
    why_keras = f" (Keras 3 said: {str(original_error).strip().splitlines()[0]})" if original_error else ""
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise KeraffeError(f"{path}: not an HDF5 file ({error})") from None
    try:
        with handle:
            return _rebuild(path, handle, why_keras)
    except (OSError, RuntimeError, KeyError) as error:
        # h5py's answers to a damaged file: a corrupt object header, B-tree, chunk or link.
        raise KeraffeError(f"{path}: the HDF5 file is corrupt ({error})") from None


def _rebuild(path: Path, handle, why_keras: str):
    raw = handle.attrs.get("model_config")
    if raw is None:
        raise KeraffeError(
            f"{path}: the file holds weights only, no architecture; rebuild the model in code and call "
            f"load_weights on it{why_keras}"
        )
    try:
        config = json.loads(_decode(raw))
    except ValueError as error:
        raise KeraffeError(f"{path}: the stored architecture is not valid JSON ({error})") from None
    version = _decode(handle.attrs.get("keras_version", "unknown"))
    class_name = config.get("class_name") if isinstance(config, dict) else type(config).__name__
    if class_name != "Sequential":
        raise KeraffeError(
            f"{path}: a Keras {version} {class_name} model that Keras 3 cannot open; keraffe "
            f"rebuilds only plain Sequential models from Keras 2 files{why_keras}"
        )
    layer_configs = _layer_configs(path, config)
    with _keras_refusing(path, version):
        # Built once with no variable allocated, to check their shapes (keraffe.limits), then for real.
        declared = declared_variables(lambda: _sequential(path, layer_configs, version))
        check_declared(str(path), declared, path.stat().st_size)
        model = _sequential(path, layer_configs, version)
    _set_weights(path, handle, model)
    return model


def _set_weights(path: Path, handle, model) -> None:
    """Each layer's stored arrays, matched by name and checked by shape before a value is read."""
    import h5py

    weights_group = handle["model_weights"] if "model_weights" in handle else handle
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in weights_group:
            raise KeraffeError(f"{path}: no weights stored for layer '{layer.name}'")
        group = weights_group[layer.name]
        names = [_decode(n) for n in group.attrs.get("weight_names", [])]
        stored = [group.get(n) if isinstance(group, h5py.Group) else None for n in names]
        missing = [n for n, item in zip(names, stored) if not isinstance(item, h5py.Dataset)]
        if missing:
            raise KeraffeError(f"{path}: layer '{layer.name}' lists weights {missing} that the file does not "
                               "store as arrays")
        shapes = [tuple(item.shape) for item in stored]
        expected = [tuple(w.shape) for w in layer.weights]
        if shapes != expected:
            raise KeraffeError(
                f"{path}: layer '{layer.name}' stores weights of shapes {shapes}, the rebuilt layer needs {expected}"
            )
        layer.set_weights([np.asarray(item) for item in stored])


def _layer_configs(path: Path, config: dict) -> list[dict]:
    """The Sequential model's layer entries, each a dict with a class name and a settings dict."""
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else inner
    if not isinstance(layers, list) or not all(
            isinstance(item, dict) and isinstance(item.get("class_name"), str) and isinstance(item.get("config"), dict)
            for item in layers):
        raise KeraffeError(f"{path}: the stored architecture is not a list of layers, each with a class and settings")
    return layers


@contextlib.contextmanager
def _keras_refusing(path: Path, version: str):
    """Keras refusing a stored setting (a shape of zero, a kernel size of -1, a string for a number) is the file's fault.

    The settings are the file's, checked for meaning by Keras' constructors
    and build methods, which raise whatever they raise; the user gets one
    KeraffeError with Keras' own words.
    """
    try:
        yield
    except (KeraffeError, MemoryError, RecursionError):
        raise
    except Exception as error:  # noqa: BLE001 - Keras' answer to a setting it cannot use
        text = str(error).strip().splitlines()
        raise KeraffeError(f"{path}: Keras 3 cannot rebuild the Keras {version} layers from their stored settings "
                           f"({type(error).__name__}: {text[0] if text else 'no message'})") from None


def _sequential(path: Path, layer_configs, version):
    import keras

    layers, input_shape = _translate(path, layer_configs, version)
    if not layers:
        raise KeraffeError(f"{path}: the Keras {version} Sequential model has no layers")
    # Keras 2 named a Sequential model's input "<first layer>_input"; a fixed name (not Keras 3's
    # session-unique "input_layer_N") keeps the Caffe input, and tensor maps, the same on every load.
    inputs = keras.Input(shape=input_shape, name=f"{layers[0].name}_input")
    return keras.Sequential([inputs] + layers, name=path.stem)


def _translate(path: Path, layer_configs, version):
    import keras

    layers = []
    input_shape = None
    for item in layer_configs:
        class_name = item["class_name"]
        settings = dict(item["config"])
        if class_name == "Lambda":
            raise KeraffeError(
                f"{path}: layer '{settings.get('name')}' is a Lambda holding Python code; keraffe never runs code "
                "stored in a model file. Replace it with standard layers"
            )
        if class_name not in _PORTABLE:
            raise KeraffeError(
                f"{path}: Keras {version} layer '{settings.get('name')}' of class {class_name} cannot be rebuilt "
                "unambiguously in Keras 3"
            )
        if input_shape is None:
            shape = settings.get("batch_input_shape")
            if not isinstance(shape, list) or not shape:
                raise KeraffeError(f"{path}: the first layer does not record the input shape")
            input_shape = tuple(shape[1:])
        kept = {}
        for key, value in settings.items():
            if key in _PORTABLE[class_name]:
                kept[key] = value
            elif key not in _IGNORED:
                raise KeraffeError(
                    f"{path}: layer '{settings.get('name')}' ({class_name}) sets '{key}' = {value!r}, which has no "
                    "unambiguous Keras 3 meaning"
                )
        if isinstance(kept.get("activation"), dict):
            raise KeraffeError(f"{path}: layer '{settings.get('name')}' has a custom activation")
        kept.pop("dtype", None)
        layers.append(getattr(keras.layers, class_name)(**kept))
    return layers, input_shape
