"""keraffe.keras_io on hostile Keras files: bounded before anything is allocated, and no stored code ever runs.

The files are small models saved by Keras here, then edited as a stranger
could: a config declaring an absurd layer, a zip bomb, a weights file
holding arrays of a terabyte, JSON nested a thousand deep, a Lambda's bytecode
and a pickled object. Each is refused with one KeraffeError.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import tracemalloc
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from keraffe.cli.main import main
from keraffe.errors import KeraffeError, LimitError
from keraffe.keras_io import load_keras_model


def small_model(width: int = 3):
    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, keras.layers.Dense(width, name="dense")(inputs), name="small")


def saved(tmp_path: Path, model=None, name: str = "model.keras") -> Path:
    path = tmp_path / name
    (model or small_model()).save(path)
    return path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(path: Path, contents: dict[str, bytes], deflated=()) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data, zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED)
    return path


def edit_config(path: Path, edit) -> Path:
    contents = members(path)
    config = json.loads(contents["config.json"])
    edit(config)
    contents["config.json"] = json.dumps(config).encode()
    return rezip(path, contents)


def dense_config(config) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")["config"]


@pytest.fixture
def initializer_calls(monkeypatch):
    """Every shape an initializer was asked for: what Keras allocates a variable for."""
    shapes = []
    for cls in (keras.initializers.GlorotUniform, keras.initializers.Zeros):
        original = cls.__call__

        def recording(self, shape, dtype=None, original=original, **kwargs):
            shapes.append(tuple(shape))
            return original(self, shape, dtype=dtype, **kwargs)

        monkeypatch.setattr(cls, "__call__", recording)
    return shapes


# ------------------------------------------------------------------ declared variables


@pytest.mark.backends
def test_absurd_width_is_refused_before_any_variable_is_made(tmp_path, initializer_calls):
    path = edit_config(saved(tmp_path), lambda c: dense_config(c).update(units=2**31 - 1))
    with pytest.raises(LimitError, match=r"'dense/kernel' declares shape \(4, 2147483647\): 8,589,934,588 values"):
        load_keras_model(path)
    assert all(np.prod(shape) < 1000 for shape in initializer_calls), initializer_calls


def test_weights_larger_than_the_weights_file_are_refused(tmp_path, initializer_calls):
    # 10000 x 20000 = 200 million values: under the cap, but 800 MB against a weights file of 120 kilobytes.
    inputs = keras.Input((10000,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(inputs))
    path = edit_config(saved(tmp_path, model), lambda c: dense_config(c).update(units=20000))
    initializer_calls.clear()  # building the model saved above
    with pytest.raises(LimitError, match=r"the model declares weights of 800,080,000 bytes \(the largest, "
                                         r"'dense/kernel', of shape \(10000, 20000\)\), but its weights file holds "
                                         r"[\d,]+ bytes; they cannot come from it"):
        load_keras_model(path)
    assert not [s for s in initializer_calls if np.prod(s) > 1000]


@pytest.mark.backends
def test_max_elements_lowers_and_raises_the_cap(tmp_path):
    path = saved(tmp_path)
    with pytest.raises(LimitError, match="cap of 10 per tensor"):
        load_keras_model(path, max_elements=10)
    assert load_keras_model(path, max_elements=10**6).count_params() == 15


@pytest.mark.backends
def test_declared_variables_leave_nothing_for_keras_to_allocate_later(tmp_path):
    """The dry run's deferred variables are taken off Keras' list: a later StatelessScope must not allocate them."""
    path = edit_config(saved(tmp_path), lambda c: dense_config(c).update(units=2**31 - 1))
    with pytest.raises(LimitError):
        load_keras_model(path)
    with keras.StatelessScope():
        pass  # its exit initialises every variable still deferred: a 34 GB kernel, were it left


# ------------------------------------------------------------------ the archive


def test_zip_bomb_is_refused_from_the_directory(tmp_path):
    path = saved(tmp_path)
    contents = members(path)
    contents["model.weights.h5"] = bytes(64 << 20)
    rezip(path, contents, deflated={"model.weights.h5"})
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match=r"would expand from [\d,]+ stored bytes to [\d,]+, more than 32x; "
                                             r"keraffe refuses it unread \(a compression bomb"):
            load_keras_model(path)
        assert tracemalloc.get_traced_memory()[1] < 8 << 20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("member, edit, fragment", [
    ("model.weights.h5", None, r"Keras cannot load this model: Expected a model.weights.h5"),
    ("config.json", None, r"the .keras archive has no config.json"),
    ("config.json", lambda data: data[:-20], r"the model config is not valid JSON"),
], ids=["missing_weights", "missing_config", "bad_json"])
def test_archive_members_missing_or_broken(tmp_path, member, edit, fragment):
    path = saved(tmp_path)
    contents = members(path)
    if edit is None:
        del contents[member]
    else:
        contents[member] = edit(contents[member])
    with pytest.raises(KeraffeError, match=fragment):
        load_keras_model(rezip(path, contents))


def test_json_nesting_is_bounded(tmp_path):
    path = saved(tmp_path)
    contents = members(path)
    contents["config.json"] = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(KeraffeError, match=r"the model config nests more than 64 levels deep"):
        load_keras_model(rezip(path, contents))


def test_weights_of_absurd_declared_shape_are_refused_unread(tmp_path):
    path = saved(tmp_path)
    contents = members(path)
    buffer = io.BytesIO()
    with h5py.File(io.BytesIO(contents["model.weights.h5"]), "r") as source, h5py.File(buffer, "w") as target:
        for name in source:
            source.copy(source[name], target, name=name)
        kernel = [n for n in _datasets(target) if n.endswith("vars/0")][0]
        del target[kernel]
        target.create_dataset(kernel, shape=(100000, 100000), dtype="f4", fillvalue=1.0)
    contents["model.weights.h5"] = buffer.getvalue()
    with pytest.raises(LimitError, match=r"model.weights.h5: array '.*vars/0' declares shape \(100000, 100000\)"):
        load_keras_model(rezip(path, contents))


def _datasets(handle) -> list[str]:
    names = []
    handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


# ------------------------------------------------------------------ legacy .h5


def keras2_h5(path: Path, layers: list, weights: dict) -> Path:
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = b"2.2.4"
        handle.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": layers}).encode()
        group = handle.create_group("model_weights")
        for layer, arrays in weights.items():
            sub = group.create_group(layer)
            sub.attrs["weight_names"] = [f"{layer}/{name}:0".encode() for name, _ in arrays]
            for name, array in arrays:
                sub.create_dataset(f"{layer}/{name}:0", data=array)
    return path


def test_legacy_h5_with_an_absurd_input_is_refused_before_any_variable(tmp_path, initializer_calls):
    layers = [{"class_name": "Flatten", "config": {"name": "flatten_1", "batch_input_shape": [None, 100000, 100000, 3]}},
              {"class_name": "Dense", "config": {"name": "dense_1", "units": 10}}]
    path = keras2_h5(tmp_path / "model.h5", layers, {"dense_1": [("kernel", np.zeros((2, 10), np.float32)),
                                                                  ("bias", np.zeros(10, np.float32))]})
    with pytest.raises(LimitError, match=r"dense_1/kernel' declares shape \(30000000000, 10\)"):
        load_keras_model(path)
    assert not [s for s in initializer_calls if np.prod(s) > 1000]


def test_legacy_h5_with_an_absurd_stored_array_is_refused_unread(tmp_path):
    layers = [{"class_name": "Dense", "config": {"name": "dense_1", "units": 10, "batch_input_shape": [None, 2]}}]
    path = keras2_h5(tmp_path / "model.h5", layers, {"dense_1": [("kernel", np.zeros((2, 10), np.float32))]})
    with h5py.File(path, "a") as handle:
        handle["model_weights/dense_1"].create_dataset("dense_1/bias:0", shape=(2**40,), dtype="f4",
                                                       chunks=(1 << 20,))
    with pytest.raises(LimitError, match=r"array 'model_weights/dense_1/dense_1/bias:0' declares shape "
                                         r"\(1099511627776,\)"):
        load_keras_model(path)


# ------------------------------------------------------------------ no code from model files


@pytest.fixture
def unsafe_host(monkeypatch):
    """A host program that switched Keras' safe mode off for its own files: keraffe must hold it on."""
    from keras.src.backend.common import global_state

    keras.config.enable_unsafe_deserialization()
    yield
    global_state.set_global_attribute("safe_mode_saving", None)


class _Payload:
    """What unpickling runs: Path(marker).touch()."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.backends
def test_lambda_bytecode_and_a_pickled_object_are_refused_and_never_run(tmp_path, unsafe_host, capsys):
    ran_lambda, ran_pickle = tmp_path / "lambda_ran", tmp_path / "pickle_ran"
    function = eval(f"lambda t: (__import__('pathlib').Path({str(ran_lambda)!r}).touch(), t)[1]")  # noqa: S307
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Lambda(function, name="lam")(inputs))
    path = saved(tmp_path, model)
    ran_lambda.unlink(missing_ok=True)
    payload = pickle.dumps(_Payload(ran_pickle))

    def add_torch_module(config):
        config["config"]["layers"].append({
            "module": "keras.layers", "class_name": "TorchModuleWrapper", "registered_name": None,
            "config": {"name": "torch_module", "module": base64.b64encode(payload).decode("ascii"),
                       "output_shape": None, "trainable": True},
        })

    edit_config(path, add_torch_module)
    with pytest.raises(KeraffeError) as refused:
        load_keras_model(path)
    message = str(refused.value)
    assert "'lam': a Lambda layer, i.e. arbitrary Python code stored in the file" in message
    assert "'torch_module': a pickled PyTorch module, which unpickling would run" in message
    assert main(["inspect", str(path)]) == 1
    assert "keraffe inspect: error: " in capsys.readouterr().err
    assert not ran_lambda.exists() and not ran_pickle.exists()

    # The payloads are live: what keraffe refused would have run.
    pickle.loads(payload)
    assert ran_pickle.exists()
    lambda_only = saved(tmp_path, model, "lambda_only.keras")
    ran_lambda.unlink(missing_ok=True)
    keras.saving.load_model(lambda_only, safe_mode=False)(np.zeros((1, 4), np.float32))
    assert ran_lambda.exists()


def test_safe_mode_holds_even_when_keras_sees_no_lambda_by_name(tmp_path, unsafe_host):
    """A lambda as a layer's activation: no Lambda class, only Keras' __lambda__ bytecode record."""
    ran = tmp_path / "ran"
    path = saved(tmp_path)

    def lambda_activation(config):
        code = base64.b64encode(b"not even bytecode").decode("ascii")
        dense_config(config)["activation"] = {"class_name": "__lambda__", "config": {"code": code}}

    edit_config(path, lambda_activation)
    with pytest.raises(KeraffeError, match=r"stores code or pickled objects \(a Python lambda stored as bytecode\); keraffe"):
        load_keras_model(path)
    assert not ran.exists()


# ------------------------------------------------------------------ fuzzer findings, minimised


def test_a_number_where_keras_expects_a_module_name(tmp_path):
    """Was AttributeError ('int' object has no attribute 'startswith') from inside Keras' deserializer."""
    path = edit_config(saved(tmp_path), lambda config: config.update(module=2147483647))
    with pytest.raises(KeraffeError, match=r"Keras cannot load this model: AttributeError: 'int' object has no "
                                           r"attribute 'startswith'"):
        load_keras_model(path)


@pytest.mark.parametrize("config, fragment", [
    (0, "a Keras 2.2.4 int model that Keras 3 cannot open"),
    ({"class_name": "Sequential", "config": 0}, "the stored architecture is not a list of layers"),
    ({"class_name": "Sequential", "config": [{"class_name": "Dense", "config": 0}]},
     "the stored architecture is not a list of layers"),
], ids=["number", "layers_a_number", "settings_a_number"])
def test_legacy_h5_architecture_of_the_wrong_shape(tmp_path, config, fragment):
    """Were AttributeError ('int' object has no attribute 'get') and TypeError in the legacy loader."""
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = b"2.2.4"
        handle.attrs["model_config"] = json.dumps(config).encode()
    with pytest.raises(KeraffeError, match=fragment):
        load_keras_model(path)


@pytest.mark.parametrize("input_shape, fragment", [
    ([None, 0, 34, 3], "ValueError: Computed output size would be zero or negative"),
    ([None, -1, 34, 3], "Negative dimensions are not allowed"),
], ids=["zero", "negative"])
def test_legacy_h5_settings_keras_refuses(tmp_path, input_shape, fragment):
    """Were ValueErrors from Keras' layer constructors and build methods, out of the legacy loader."""
    layers = [{"class_name": "Conv2D", "config": {"name": "conv2d_1", "filters": 16, "kernel_size": [5, 5],
                                                  "batch_input_shape": input_shape}}]
    path = keras2_h5(tmp_path / "model.h5", layers, {})
    with pytest.raises(KeraffeError, match=rf"Keras 3 cannot rebuild the Keras 2.2.4 layers from their stored settings "
                                           rf"\(.*{fragment}"):
        load_keras_model(path)


def test_legacy_h5_weight_names_that_name_nothing(tmp_path):
    """Was KeyError from h5py: a layer's weight_names listing an array the file does not hold."""
    layers = [{"class_name": "Dense", "config": {"name": "dense_1", "units": 10, "batch_input_shape": [None, 2]}}]
    path = keras2_h5(tmp_path / "model.h5", layers, {"dense_1": [("kernel", np.zeros((2, 10), np.float32)),
                                                                  ("bias", np.zeros(10, np.float32))]})
    with h5py.File(path, "a") as handle:
        handle["model_weights/dense_1"].move("dense_1/bias:0", "dense_1/renamed:0")
    with pytest.raises(KeraffeError, match=r"layer 'dense_1' lists weights \['dense_1/bias:0'\] that the file does "
                                           r"not store as arrays"):
        load_keras_model(path)
