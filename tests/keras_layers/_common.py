"""Shared checks for keraffe's custom Keras layers.

:func:`check_layer` runs a layer on numpy inputs and compares it with a numpy
reference of Caffe's formula, then checks that the layer survives both kinds
of serialization keraffe relies on: ``get_config``/``from_config``, and a
whole model saved as ``.keras`` and reloaded with ``safe_mode=True`` (which
works once ``keraffe`` is imported: its layers register themselves). All of it
runs on whichever Keras backend is active; `make test` runs these tests on
TensorFlow, JAX and PyTorch.
"""

from __future__ import annotations

import copy
import json

import keras
import numpy as np

import keraffe  # noqa: F401  (registers keraffe's layers for load_model)


def _as_list(values):
    return list(values) if isinstance(values, (list, tuple)) else [values]


def _numpy(values):
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in _as_list(values)]


def _tensors(arrays):
    tensors = [keras.ops.convert_to_tensor(np.asarray(a)) for a in arrays]
    return tensors if len(tensors) > 1 else tensors[0]


def assert_close(name, expected, actual, tolerance=1e-5):
    """Max abs error over max |expected| (keraffe.verify's measure) within ``tolerance``."""
    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual, np.float64)
    assert expected.shape == actual.shape, f"{name}: shape {actual.shape}, expected {expected.shape}"
    scale = max(float(np.max(np.abs(expected))) if expected.size else 0.0, 1e-12)
    error = float(np.max(np.abs(expected - actual))) if expected.size else 0.0
    assert error / scale <= tolerance, f"{name}: max abs error {error:.3g} over max |expected| {scale:.3g}"


def check_layer(layer, inputs, expected, tmp_path, weights=None, tolerance=1e-5, batched=True):
    """Compare ``layer`` with numpy, then round-trip it through its config and through a saved model.

    ``inputs`` and ``expected`` are arrays or lists of arrays (NHWC where the layer works on images).
    ``batched`` False: the inputs' first axis is not a batch (Keras Input shapes then keep it).
    Returns the layer's outputs as numpy arrays.
    """
    inputs = _as_list(inputs)
    expected = _as_list(expected)
    outputs = _numpy(layer(_tensors(inputs)))
    if weights is not None:
        layer.set_weights([np.asarray(w, np.float32) for w in weights])
        outputs = _numpy(layer(_tensors(inputs)))
    assert len(outputs) == len(expected)
    for i, (want, got) in enumerate(zip(expected, outputs)):
        assert_close(f"{layer.name} output {i}", want, got, tolerance)

    # get_config / from_config: same settings, same function once given the same weights.
    config = layer.get_config()
    clone = type(layer).from_config(copy.deepcopy(config))  # keras.layers.RNN.from_config pops its cell
    assert clone.get_config() == config
    clone(_tensors(inputs))
    clone.set_weights(layer.get_weights())
    for want, got in zip(outputs, _numpy(clone(_tensors(inputs)))):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

    # A model saved as .keras reloads in safe mode and computes the same.
    if batched:
        model_inputs = [keras.Input(shape=a.shape[1:], batch_size=a.shape[0]) for a in inputs]
    else:
        model_inputs = [keras.Input(batch_shape=a.shape) for a in inputs]
    model_outputs = layer(model_inputs if len(model_inputs) > 1 else model_inputs[0])
    model = keras.Model(model_inputs, model_outputs)
    path = tmp_path / f"{layer.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    reloaded_layer = loaded.get_layer(layer.name)
    assert type(reloaded_layer) is type(layer)
    # As JSON: a nested layer's build_config comes back with lists for tuples (keras.layers.RNN's cell).
    assert json.loads(json.dumps(reloaded_layer.get_config())) == json.loads(json.dumps(config))
    # Called, not predict(): PriorBox output and DetectionOutput input have batch 1 beside batch-N tensors.
    results = _numpy(loaded(_tensors(inputs) if len(inputs) > 1 else [_tensors(inputs)]))
    for want, got in zip(outputs, results):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    return outputs


def nchw(x):
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def nhwc(x):
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def rng(seed=0):
    return np.random.default_rng(seed)
