"""keraffe.keras_io: loading Keras models safely (never running stored code) and saving them atomically."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keraffe.errors import KeraffeError
from keraffe.keras_io import load_keras_model, save_keras_model

L = keras.layers

LAMBDA_MESSAGE = ("the model holds a Lambda layer ('lam'), i.e. arbitrary Python code stored in the file; "
                  "keraffe loads models with Keras' safe_mode and never runs such code. Replace the Lambda with "
                  "standard layers (or keraffe's) and save again")


def small_model():
    x = keras.Input((5, 4, 2), name="image")
    y = L.Conv2D(3, 3, padding="same", activation="relu", name="conv")(x)
    y = L.BatchNormalization(name="bn")(y)
    model = keras.Model(x, L.Dense(2, name="dense")(L.Flatten(name="flat")(y)), name="small")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([np.abs(rng.standard_normal(w.shape)).astype(np.float32) + 0.1
                               for w in layer.get_weights()])
    return model


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_round_trip_through_a_file(tmp_path, suffix):
    model = small_model()
    path = tmp_path / f"model{suffix}"
    if suffix == ".keras":
        save_keras_model(model, path)
    else:
        model.save(path)
    loaded = load_keras_model(path)
    x = np.random.default_rng(1).standard_normal((2, 5, 4, 2)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_keraffe_layers_load_without_registration_by_the_caller(tmp_path):
    from keraffe.keras_layers.elementwise import Power

    x = keras.Input((4,), name="x")
    model = keras.Model(x, Power(power=2.0, scale=0.5, shift=1.0, name="power")(x), name="with_keraffe_layer")
    save_keras_model(model, tmp_path / "model.keras")
    loaded = load_keras_model(tmp_path / "model.keras")
    assert type(loaded.get_layer("power")).__name__ == "Power"
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), (0.5 * x + 1.0) ** 2, rtol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("kind", ["named_function", "lambda_expression"])
def test_lambda_is_refused_and_its_code_never_runs(tmp_path, suffix, kind, monkeypatch):
    """The Lambda writes a file when it runs: after saving, loading must neither write it nor go unsafe.

    A Lambda of a named function is stored by name (Keras fails to find it in
    safe mode, without saying Lambda); a lambda expression as bytecode (Keras
    refuses it in safe mode). Both must be reported as a Lambda.
    """
    marker = tmp_path / "lambda_ran"

    def tell(t):
        marker.write_text("ran")
        return t * 2.0

    # The lambda expression holds the marker's path as a constant (a closure would not serialise).
    expression = f"lambda t: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), t * 2.0)[1]"
    function = tell if kind == "named_function" else eval(expression)  # noqa: S307 - a test's own literal
    x = keras.Input((3,), name="x")
    model = keras.Model(x, L.Lambda(function, name="lam")(x), name="with_lambda")
    path = tmp_path / f"model{suffix}"
    model.save(path)
    marker.unlink()
    unsafe = []
    monkeypatch.setattr(keras.config, "enable_unsafe_deserialization", lambda: unsafe.append(1))
    with pytest.raises(KeraffeError) as caught:
        load_keras_model(path)
    assert str(caught.value) == f"{path}: {LAMBDA_MESSAGE}"
    assert not marker.exists()
    assert unsafe == []


def test_missing_file(tmp_path):
    with pytest.raises(KeraffeError, match="model.keras: Keras model file not found"):
        load_keras_model(tmp_path / "model.keras")
    with pytest.raises(KeraffeError, match="Keras model file not found"):
        load_keras_model(tmp_path)


@pytest.mark.parametrize("name, fragment", [
    ("model.keras", "not a .keras archive (a .keras file is a zip holding config.json"),
    ("model.h5", "not an HDF5 file"),
    ("model.txt", "Keras cannot load this model: File format not supported"),
])
def test_garbage_is_a_clear_error(tmp_path, name, fragment):
    path = tmp_path / name
    path.write_bytes(b"\x00garbage, not a model")
    with pytest.raises(KeraffeError) as caught:
        load_keras_model(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and fragment in message
    assert "\n" not in message


def test_truncated_keras_archive_is_named_as_such(tmp_path):
    whole = tmp_path / "whole.keras"
    save_keras_model(small_model(), whole)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(KeraffeError) as caught:
        load_keras_model(truncated)
    # Keras itself says "File not found" here, which points users the wrong way.
    assert "not found" not in str(caught.value)
    assert str(caught.value).startswith(f"{truncated}: not a .keras archive")


def test_weights_only_h5_is_refused(tmp_path):
    model = small_model()
    path = tmp_path / "weights.weights.h5"
    model.save_weights(path)
    plain = tmp_path / "weights.h5"
    plain.write_bytes(path.read_bytes())
    with pytest.raises(KeraffeError) as caught:
        load_keras_model(plain)
    assert str(caught.value).startswith(f"{plain}: ")
    assert "weights only" in str(caught.value) or "Keras cannot load this model" in str(caught.value)


# ---------------------------------------------------------------- saving


def test_save_needs_a_keras_suffix(tmp_path):
    with pytest.raises(KeraffeError, match="keraffe writes Keras models as .keras files; use a .keras output name"):
        save_keras_model(small_model(), tmp_path / "model.h5")
    assert list(tmp_path.iterdir()) == []


def test_save_into_a_missing_folder(tmp_path):
    with pytest.raises(KeraffeError, match="folder .*missing does not exist"):
        save_keras_model(small_model(), tmp_path / "missing" / "model.keras")


def test_save_replaces_atomically_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old contents")
    save_keras_model(small_model(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
    assert load_keras_model(path).name == "small"


def test_failed_save_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old contents")
    model = small_model()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_keras_model(model, path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
    assert path.read_bytes() == b"old contents"


def test_save_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_keras_model(small_model(), "model.keras")
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def nested_model():
    """A model whose variables sit at several depths: a sub-model, a wrapper and non-trainable state."""
    inner_in = keras.Input((6, 3), name="inner_in")
    inner = keras.Model(inner_in, L.TimeDistributed(L.Dense(4, name="td_dense"), name="td")(inner_in), name="inner")
    x = keras.Input((6, 3), name="x")
    y = L.BatchNormalization(name="bn")(inner(x))
    model = keras.Model(x, L.Dense(2, name="head")(L.Flatten(name="flat")(y)), name="nested")
    rng = np.random.default_rng(4)
    for variable in model.variables:
        variable.assign(rng.standard_normal(tuple(variable.shape)).astype("float32") ** 2 + 0.5)
    return model


def _stored_weights(path):
    import io
    import zipfile

    import h5py

    stored = {}
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        weights.visititems(lambda name, item: stored.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset)
                           else None)
    return stored


@pytest.mark.backends
def test_save_writes_the_file_keras_writes_and_passes_every_variable_as_a_host_view(tmp_path, monkeypatch):
    import keraffe.host_memory

    model = nested_model()
    model.save(tmp_path / "by_keras.keras")
    viewed = []
    real_host_view = keraffe.host_memory.host_view

    def counting_host_view(variable):
        viewed.append(variable.path)
        return real_host_view(variable)

    monkeypatch.setattr(keraffe.host_memory, "host_view", counting_host_view)
    save_keras_model(model, tmp_path / "by_keraffe.keras")
    assert sorted(viewed) == sorted(v.path for v in model.variables)  # every variable took the one-copy route
    by_keras, by_keraffe = _stored_weights(tmp_path / "by_keras.keras"), _stored_weights(tmp_path / "by_keraffe.keras")
    assert sorted(by_keraffe) == sorted(by_keras) and len(by_keras) == len(model.variables)
    for name, value in by_keras.items():
        np.testing.assert_array_equal(by_keraffe[name], value, err_msg=name)
    loaded = load_keras_model(tmp_path / "by_keraffe.keras")
    x = np.random.default_rng(5).standard_normal((2, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("fails", [False, True])
def test_save_leaves_no_method_of_its_own_on_the_layers(tmp_path, monkeypatch, fails):
    import keraffe.host_memory

    model = nested_model()
    if fails:
        def broken(variable):
            raise OSError("disk full")

        monkeypatch.setattr(keraffe.host_memory, "host_view", broken)
        with pytest.raises(OSError, match="disk full"):
            save_keras_model(model, tmp_path / "model.keras")
    else:
        save_keras_model(model, tmp_path / "model.keras")
    layers = [model, *model.layers, *model.get_layer("inner").layers, model.get_layer("inner").get_layer("td").layer]
    assert [layer.name for layer in layers if "save_own_variables" in vars(layer)] == []


class _Block(keras.layers.Layer):
    """A block whose ``layers`` attribute is a count, not a list of layers (nothing Keras forbids)."""

    def __init__(self, layers=2, **kwargs):
        super().__init__(**kwargs)
        self.layers = layers
        self.denses = [L.Dense(3, name=f"dense_{i}") for i in range(layers)]

    def call(self, x):
        for dense in self.denses:
            x = dense(x)
        return x


def test_save_passes_over_attributes_named_layers_that_hold_no_layers(tmp_path):
    model = keras.Sequential([keras.Input((3,)), _Block(name="block")], name="with_block")
    save_keras_model(model, tmp_path / "by_keraffe.keras")
    model.save(tmp_path / "by_keras.keras")
    by_keras, by_keraffe = _stored_weights(tmp_path / "by_keras.keras"), _stored_weights(tmp_path / "by_keraffe.keras")
    assert sorted(by_keraffe) == sorted(by_keras) and len(by_keras) == 4
    for name, value in by_keras.items():
        np.testing.assert_array_equal(by_keraffe[name], value, err_msg=name)


# ------------------------------------------------------------------ keraffe's layers registered with plain Keras


REGISTERED = """
import sys
{first}
import keras
saved = sys.argv[1]
if sys.argv[2] == "save":
    from keraffe.keras_layers import LRN
    x = keras.Input((6, 5, 4))
    keras.Model(x, LRN(local_size=3, alpha=0.5, name="lrn")(x)).save(saved)
else:
    model = keras.saving.load_model(saved)  # safe_mode on: only registered classes load
    assert type(model.get_layer("lrn")).__module__ == "keraffe.keras_layers.normalization"
    assert keras.__loader__ is keras.__spec__.loader and type(keras.__loader__).__module__.startswith("_frozen")
"""


@pytest.mark.backends
@pytest.mark.parametrize("first", ["import keraffe", "import keras; import keraffe"],
                         ids=["keraffe_before_keras", "keras_before_keraffe"])
def test_plain_keras_loads_keraffe_layers_after_import_keraffe(first, tmp_path):
    """`import keraffe` imports no Keras, yet keraffe's layers are registered however the two are ordered."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(),
               PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    code = REGISTERED.format(first=first)
    for step in ("save", "load"):
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lrn.keras"), step], capture_output=True,
                              text=True, env=env, timeout=300)
        assert done.returncode == 0, f"{step}:\n{done.stderr[-3000:]}"
