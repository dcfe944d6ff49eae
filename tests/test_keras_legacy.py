"""keraffe.keras_legacy: Keras 2 Sequential HDF5 files that Keras 3 cannot open, rebuilt exactly or refused.

Hand-made files in Keras 2.0's format (a JSON ``model_config`` whose
``config`` is the layer list, weights in ``model_weights/<layer>``) and Keras
2.3's (``config`` a dict with ``layers``) cover every class the loader
rebuilds; the rebuilt model must compute exactly what the same layers built
in Keras 3 compute with the same weights. Everything else is refused with a
message that says why: a Lambda (Python code, never run), a class or setting
without one Keras 3 meaning, a functional model, a weights-only file. The
zoo's HyperLPR files are the real-world case.
"""

from __future__ import annotations

import json

import h5py
import keras
import numpy as np
import pytest

from keraffe.errors import KeraffeError
from keraffe.keras_legacy import load_legacy_h5

L = keras.layers

INIT = {"kernel_initializer": {"class_name": "VarianceScaling", "config": {"scale": 1.0, "mode": "fan_avg",
                                                                          "distribution": "uniform", "seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None}


def layer(class_name, name, **config):
    return {"class_name": class_name, "config": {"name": name, "trainable": True, "dtype": "float32", **config}}


def conv(name, filters, kernel, **config):
    return layer("Conv2D", name, filters=filters, kernel_size=[kernel, kernel], strides=config.pop("strides", [1, 1]),
                 padding=config.pop("padding", "valid"), data_format="channels_last", dilation_rate=[1, 1],
                 activation=config.pop("activation", "linear"), use_bias=True, **INIT, **config)


def dense(name, units, activation="linear"):
    return layer("Dense", name, units=units, activation=activation, use_bias=True, **INIT)


def write_keras2(path, layers, weights, version="2.0.8", dict_form=False, class_name="Sequential"):
    """A Keras 2 HDF5 model file: model_config JSON and model_weights/<layer>/<layer>/<weight>:0 datasets."""
    config = {"name": "sequential_1", "layers": layers} if dict_form else layers
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = version.encode()
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["model_config"] = json.dumps({"class_name": class_name, "config": config}).encode()
        group = handle.create_group("model_weights")
        group.attrs["layer_names"] = [item["config"]["name"].encode() for item in layers]
        for item in layers:
            name = item["config"]["name"]
            sub = group.create_group(name)
            names = []
            for weight_name, array in weights.get(name, []):
                full = f"{name}/{weight_name}:0"
                sub.create_dataset(full, data=array)
                names.append(full.encode())
            sub.attrs["weight_names"] = names
    return path


def seeded(shape, rng, positive=False):
    value = rng.standard_normal(shape).astype(np.float32) * 0.5
    return np.abs(value) + 0.5 if positive else value


def everything(rng):
    """Every class the loader rebuilds, with Keras 2 configs and seeded weights."""
    layers = [
        conv("conv2d_1", 4, 3, strides=[2, 2], padding="same", activation="relu", batch_input_shape=[None, 13, 11, 3]),
        layer("BatchNormalization", "batch_normalization_1", axis=-1, momentum=0.99, epsilon=0.001, center=True,
              scale=True, beta_initializer={"class_name": "Zeros", "config": {}}, gamma_initializer=None,
              moving_mean_initializer=None, moving_variance_initializer=None, beta_regularizer=None,
              gamma_regularizer=None, beta_constraint=None, gamma_constraint=None),
        layer("ZeroPadding2D", "zero_padding2d_1", padding=[[1, 0], [0, 1]], data_format="channels_last"),
        layer("DepthwiseConv2D", "depthwise_conv2d_1", kernel_size=[3, 3], strides=[1, 1], padding="valid",
              data_format="channels_last", depth_multiplier=2, activation="relu6", use_bias=True,
              depthwise_initializer=None, depthwise_regularizer=None, depthwise_constraint=None,
              bias_initializer=None, bias_regularizer=None, bias_constraint=None, activity_regularizer=None),
        layer("SeparableConv2D", "separable_conv2d_1", filters=6, kernel_size=[3, 3], strides=[1, 1],
              padding="same", data_format="channels_last", depth_multiplier=1, activation="linear", use_bias=True,
              dilation_rate=[1, 1], depthwise_initializer=None, pointwise_initializer=None, bias_initializer=None,
              depthwise_regularizer=None, pointwise_regularizer=None, bias_regularizer=None,
              activity_regularizer=None, depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None),
        layer("Activation", "activation_1", activation="tanh"),
        layer("MaxPooling2D", "max_pooling2d_1", pool_size=[2, 2], strides=[2, 2], padding="valid",
              data_format="channels_last"),
        layer("AveragePooling2D", "average_pooling2d_1", pool_size=[2, 2], strides=[1, 1], padding="same",
              data_format="channels_last"),
        layer("Dropout", "dropout_1", rate=0.25, noise_shape=None, seed=None),
        layer("Flatten", "flatten_1", data_format="channels_last"),
        dense("dense_1", 8, "relu"),
        layer("Reshape", "reshape_1", target_shape=[2, 4]),
        layer("Flatten", "flatten_2", data_format="channels_last"),
        dense("dense_2", 3, "softmax"),
    ]
    weights = {
        "conv2d_1": [("kernel", seeded((3, 3, 3, 4), rng)), ("bias", seeded((4,), rng))],
        "batch_normalization_1": [("gamma", seeded((4,), rng)), ("beta", seeded((4,), rng)),
                                  ("moving_mean", seeded((4,), rng)), ("moving_variance", seeded((4,), rng, True))],
        "depthwise_conv2d_1": [("depthwise_kernel", seeded((3, 3, 4, 2), rng)), ("bias", seeded((8,), rng))],
        "separable_conv2d_1": [("depthwise_kernel", seeded((3, 3, 8, 1), rng)),
                               ("pointwise_kernel", seeded((1, 1, 8, 6), rng)), ("bias", seeded((6,), rng))],
        "dense_1": [("kernel", seeded((36, 8), rng)), ("bias", seeded((8,), rng))],
        "dense_2": [("kernel", seeded((8, 3), rng)), ("bias", seeded((3,), rng))],
    }
    return layers, weights


def reference_model(weights):
    """The same network written directly in Keras 3."""
    model = keras.Sequential([
        keras.Input((13, 11, 3)),
        L.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv2d_1"),
        L.BatchNormalization(epsilon=0.001, name="batch_normalization_1"),
        L.ZeroPadding2D(((1, 0), (0, 1)), name="zero_padding2d_1"),
        L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu6", name="depthwise_conv2d_1"),
        L.SeparableConv2D(6, 3, padding="same", name="separable_conv2d_1"),
        L.Activation("tanh", name="activation_1"),
        L.MaxPooling2D(2, name="max_pooling2d_1"),
        L.AveragePooling2D(2, strides=1, padding="same", name="average_pooling2d_1"),
        L.Dropout(0.25, name="dropout_1"),
        L.Flatten(name="flatten_1"),
        L.Dense(8, activation="relu", name="dense_1"),
        L.Reshape((2, 4), name="reshape_1"),
        L.Flatten(name="flatten_2"),
        L.Dense(3, activation="softmax", name="dense_2"),
    ])
    for layer_ in model.layers:
        if layer_.name in weights:
            layer_.set_weights([array for _, array in weights[layer_.name]])
    return model


@pytest.mark.parametrize("dict_form", [False, True], ids=["keras_2_0_list", "keras_2_3_dict"])
def test_rebuilds_every_portable_class_exactly(tmp_path, dict_form):
    rng = np.random.default_rng(0)
    layers, weights = everything(rng)
    path = write_keras2(tmp_path / "model.h5", layers, weights, "2.3.1" if dict_form else "2.0.8", dict_form)
    model = load_legacy_h5(path)
    assert model.name == "model"
    assert [layer_.name for layer_ in model.layers] == [item["config"]["name"] for item in layers]
    assert [type(layer_).__name__ for layer_ in model.layers] == [item["class_name"] for item in layers]
    assert model.inputs[0].name.split(":")[0] == "conv2d_1_input"
    assert tuple(model.inputs[0].shape) == (None, 13, 11, 3)
    for layer_ in model.layers:
        for variable, (_, array) in zip(layer_.weights, weights.get(layer_.name, [])):
            np.testing.assert_array_equal(np.asarray(variable), array)
    reference = reference_model(weights)
    x = rng.standard_normal((3, 13, 11, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), reference.predict(x, verbose=0))


def test_keras_io_falls_back_to_the_legacy_loader(tmp_path):
    """Keras 3 cannot read a Keras 2.0 list config; load_keras_model rebuilds it through keras_legacy."""
    from keraffe.keras_io import load_keras_model

    layers, weights = everything(np.random.default_rng(1))
    path = write_keras2(tmp_path / "model.h5", layers, weights)
    with pytest.raises(Exception):
        keras.saving.load_model(path, compile=False)
    model = load_keras_model(path)
    assert [layer_.name for layer_ in model.layers][-1] == "dense_2"
    x = np.random.default_rng(2).standard_normal((2, 13, 11, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), load_legacy_h5(path).predict(x, verbose=0))


def test_loading_twice_gives_the_same_input_name(tmp_path):
    layers, weights = everything(np.random.default_rng(0))
    path = write_keras2(tmp_path / "model.h5", layers, weights)
    names = {load_legacy_h5(path).inputs[0].name for _ in range(2)}
    assert names == {"conv2d_1_input"}


# ---------------------------------------------------------------- refusals


def refused(path, *fragments, exact=None):
    with pytest.raises(KeraffeError) as caught:
        load_legacy_h5(path)
    message = str(caught.value)
    if exact is not None:
        assert message == exact
    for fragment in fragments:
        assert fragment in message, message
    return message


def small(tmp_path, extra_layers=(), first=None, **kwargs):
    first = first or conv("conv2d_1", 2, 3, batch_input_shape=[None, 5, 5, 1])
    layers = [first, *extra_layers]
    weights = {"conv2d_1": [("kernel", np.zeros((3, 3, 1, 2), np.float32)), ("bias", np.zeros(2, np.float32))]}
    weights.update(kwargs.pop("weights", {}))
    return write_keras2(tmp_path / "model.h5", layers, weights, **kwargs)


def test_lambda_is_refused_and_never_run(tmp_path, monkeypatch):
    from keras.src.utils import python_utils

    calls = []
    monkeypatch.setattr(python_utils, "func_load", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(keras.config, "enable_unsafe_deserialization", lambda: calls.append(1))
    lam = layer("Lambda", "lambda_1", function=["4wEAAAAAAAAAAQAAAAIAAABDAAAAcwwAAAB8AGQBGwBkAhgAUwApA06p"
                                                  "AAAAAAAAYEBnAAAAAAAA8D+pAKkB2gF4cgMAAAByAwAAAPoHPHN0ZGluPtoIPGxh"
                                                  "bWJkYT4BAAAA8wAAAAA=", None, None],
                function_type="lambda", output_shape=None, output_shape_type="raw", arguments={})
    path = small(tmp_path, [lam])
    refused(path, exact=f"{path}: layer 'lambda_1' is a Lambda holding Python code; keraffe never runs code stored "
                        "in a model file. Replace it with standard layers")
    assert calls == []


def test_unknown_class_is_refused(tmp_path):
    path = small(tmp_path, [layer("LSTM", "lstm_1", units=3)])
    refused(path, exact=f"{path}: Keras 2.0.8 layer 'lstm_1' of class LSTM cannot be rebuilt unambiguously in Keras 3")


def test_setting_without_keras3_meaning_is_refused(tmp_path):
    path = small(tmp_path, first=conv("conv2d_1", 2, 3, batch_input_shape=[None, 5, 5, 1], groups=2))
    refused(path, exact=f"{path}: layer 'conv2d_1' (Conv2D) sets 'groups' = 2, which has no unambiguous Keras 3 "
                        "meaning")


def test_custom_activation_is_refused(tmp_path):
    path = small(tmp_path, [layer("Activation", "activation_1", activation={"class_name": "Swishy", "config": {}})])
    refused(path, exact=f"{path}: layer 'activation_1' has a custom activation")


def test_functional_model_is_refused(tmp_path):
    path = small(tmp_path, class_name="Model")
    refused(path, f"{path}: a Keras 2.0.8 Model model that Keras 3 cannot open; keraffe rebuilds only plain "
                  "Sequential models from Keras 2 files")


def test_weights_only_file_is_refused(tmp_path):
    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = b"2.0.8"
        handle.create_group("conv2d_1")
    refused(path, exact=f"{path}: the file holds weights only, no architecture; rebuild the model in code and call "
                        "load_weights on it")


def test_original_keras_error_is_quoted(tmp_path):
    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = b"2.0.8"
    with pytest.raises(KeraffeError) as caught:
        load_legacy_h5(path, original_error=ValueError("No model config found.\nmore"))
    assert str(caught.value).endswith("(Keras 3 said: No model config found.)")


def test_not_hdf5_is_refused(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"not an hdf5 file at all")
    refused(path, f"{path}: not an HDF5 file")


def test_missing_weights_are_refused(tmp_path):
    path = small(tmp_path, [layer("Flatten", "flatten_1", data_format="channels_last"), dense("dense_1", 3)])
    refused(path, exact=f"{path}: layer 'dense_1' stores weights of shapes [], the rebuilt layer needs "
                        "[(18, 3), (3,)]")


def test_weights_of_wrong_shape_are_refused(tmp_path):
    path = small(tmp_path, [layer("Flatten", "flatten_1", data_format="channels_last"), dense("dense_1", 3)],
                 weights={"dense_1": [("kernel", np.zeros((4, 3), np.float32)), ("bias", np.zeros(3, np.float32))]})
    refused(path, exact=f"{path}: layer 'dense_1' stores weights of shapes [(4, 3), (3,)], the rebuilt layer needs "
                        "[(18, 3), (3,)]")


def test_first_layer_without_input_shape_is_refused(tmp_path):
    path = small(tmp_path, first=conv("conv2d_1", 2, 3))
    refused(path, exact=f"{path}: the first layer does not record the input shape")


def test_empty_model_is_refused(tmp_path):
    path = write_keras2(tmp_path / "model.h5", [], {})
    refused(path, exact=f"{path}: the Keras 2.0.8 Sequential model has no layers")


# ---------------------------------------------------------------- the zoo's HyperLPR files


@pytest.mark.parametrize("relative", ["keras_hyperlpr_char_judgement/char_judgement.h5",
                                      "keras_hyperlpr_char_rec/char_rec.h5"])
def test_hyperlpr_files_keras3_cannot_open(zoo, relative):
    """Keras 3 refuses these Keras 2.0.8 files; keraffe rebuilds them with the file's names and weights."""
    path = zoo / relative
    with pytest.raises(Exception):
        keras.saving.load_model(path, compile=False)
    model = load_legacy_h5(path)
    with h5py.File(path, "r") as handle:
        config = json.loads(handle.attrs["model_config"])
        stored = handle["model_weights"]
        assert [layer_.name for layer_ in model.layers] == [item["config"]["name"] for item in config["config"]]
        for layer_ in model.layers:
            names = [n.decode() if isinstance(n, bytes) else n for n in stored[layer_.name].attrs["weight_names"]]
            for variable, name in zip(layer_.weights, names):
                np.testing.assert_array_equal(np.asarray(variable), np.asarray(stored[layer_.name][name]))
            assert len(layer_.weights) == len(names)
    assert tuple(model.inputs[0].shape) == (None, 23, 23, 1)
    probabilities = model.predict(np.random.default_rng(0).random((2, 23, 23, 1), np.float32), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
