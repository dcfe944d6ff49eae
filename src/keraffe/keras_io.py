"""Loading and saving Keras models the way keraffe's commands need: safely, atomically, with clear errors."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from keraffe.errors import KeraffeError


def register_layers_when_keras_loads() -> None:
    """Register keraffe's Keras layers with Keras now if Keras is loaded, else the moment it loads.

    ``import keraffe`` must not import Keras: that picks a backend (TensorFlow,
    by Keras' default) for a user who only reads Caffe files or has yet to
    choose. Yet a converted model that holds keraffe's layers is loaded back
    with plain ``keras.saving.load_model``, whose safe mode finds registered
    classes only. So keraffe asks the import system to import
    ``keraffe.keras_layers`` (which registers them) right after ``keras``
    itself finishes importing, whenever and by whomever that happens.
    """
    if "keras" in sys.modules:
        import keraffe.keras_layers  # noqa: F401  (registers keraffe's layers)
        return
    if not any(isinstance(finder, _RegisterWhenKerasLoads) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterWhenKerasLoads())


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands back Keras' own spec, its loader wrapped to register keraffe's layers after."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)  # once is enough, and the lookup below must not find this finder again
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRegisterLayers(spec.loader)
        return spec


class _ThenRegisterLayers(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # Keras' module keeps its own loader; only this one import goes through here.
        module.__spec__.loader = module.__loader__ = self.loader
        self.loader.exec_module(module)
        importlib.import_module("keraffe.keras_layers")


def load_keras_model(path: str | os.PathLike):
    """Load a .keras or .h5 model with Keras' safe mode on; never run code stored in the file.

    A model holding a Lambda layer (Python bytecode) is refused with a message
    saying so. Keras 2 .h5 files that Keras 3 cannot open are read by
    keraffe.keras_legacy where their config and weights are unambiguous.
    """
    import keras

    import keraffe.keras_layers  # noqa: F401  (registers keraffe's layers for deserialisation)

    path = Path(path)
    if not path.is_file():
        raise KeraffeError(f"{path}: Keras model file not found")
    _check_container(path)
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as error:
        text = str(error)
        lambdas = _stored_lambdas(path)
        if "Lambda" in text or "lambda" in text or "safe_mode" in text or lambdas:
            raise _lambda_error(path, lambdas) from None
        legacy = _try_legacy(path, error)
        if legacy is not None:
            return legacy
        raise KeraffeError(f"{path}: Keras cannot load this model: {_first_line(text)}") from None
    except (OSError, TypeError, KeyError) as error:
        lambdas = _stored_lambdas(path)
        if lambdas:
            raise _lambda_error(path, lambdas) from None
        legacy = _try_legacy(path, error)
        if legacy is not None:
            return legacy
        raise KeraffeError(f"{path}: Keras cannot load this model: {_first_line(str(error))}") from None


def _check_container(path: Path) -> None:
    """Refuse a file that is not the container its suffix promises, before Keras misreports it.

    Keras answers a corrupt or truncated .keras file with "File not found",
    which sends users looking in the wrong place.
    """
    import zipfile

    import h5py

    suffix = path.suffix.lower()
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        raise KeraffeError(
            f"{path}: not a .keras archive (a .keras file is a zip holding config.json and "
            "model.weights.h5); the file is corrupt, truncated or of another format"
        )
    if suffix in (".h5", ".hdf5") and not h5py.is_hdf5(path):
        raise KeraffeError(f"{path}: not an HDF5 file; the Keras .h5 model is corrupt, truncated or of another format")


def _lambda_error(path: Path, names: list[str]) -> KeraffeError:
    named = f" ({', '.join(repr(n) for n in names)})" if names else ""
    return KeraffeError(
        f"{path}: the model holds a Lambda layer{named}, i.e. arbitrary Python code stored in the file; "
        "keraffe loads models with Keras' safe_mode and never runs such code. Replace the Lambda "
        "with standard layers (or keraffe's) and save again"
    )


def _stored_lambdas(path: Path) -> list[str]:
    """Names of the Lambda layers in the file's stored architecture, read as JSON (nothing deserialised).

    Keras' own error does not always say Lambda: one that wraps a named Python
    function fails with "could not be deserialized" or "Could not locate
    function", and a Keras 1/2 file fails before Keras reads its layers.
    """
    import json
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
        else:
            import h5py

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("model_config")
                if raw is None:
                    return []
                config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except Exception:  # noqa: BLE001 - not a readable model file: Keras' own error says why
        return []
    names: list[str] = []

    def visit(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                settings = node.get("config")
                names.append(str(settings.get("name", "?")) if isinstance(settings, dict) else "?")
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    return names


def _try_legacy(path: Path, error: Exception):
    if path.suffix.lower() not in (".h5", ".hdf5"):
        return None
    try:
        from keraffe.keras_legacy import load_legacy_h5
    except ImportError:
        return None
    return load_legacy_h5(path, original_error=error)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def save_keras_model(model, path: str | os.PathLike) -> None:
    """Save a model as .keras atomically (a temporary .keras file, then one rename).

    The file is Keras' own; keraffe only hands Keras' writer each variable
    without the two copies Keras would make of it (see keraffe.host_memory).
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise KeraffeError(f"{path}: keraffe writes Keras models as .keras files; use a .keras output name")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise KeraffeError(f"cannot write {path}: folder {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=directory)
    os.close(fd)
    try:
        with _variables_saved_as_host_views(model):
            model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _HostViewStore:
    """Keras' weight store for one layer, receiving that layer's variables as host views, not copies."""

    def __init__(self, store):
        self._store = store

    def __setitem__(self, key, value):
        import keras

        from keraffe.host_memory import host_view

        self._store[key] = host_view(value) if isinstance(value, keras.Variable) else value

    def __getitem__(self, key):
        return self._store[key]

    def __contains__(self, key):
        return key in self._store

    def __getattr__(self, name):
        return getattr(self._store, name)


def _saveable_layers(model):
    """The model and every layer inside it, reached through the public ``layers`` and ``layer`` attributes.

    Attributes of those names that hold something else (a block's layer count,
    say) are passed over, and each layer is visited once.
    """
    import keras

    seen, pending = set(), [model]
    while pending:
        layer = pending.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        inner = getattr(layer, "layers", None)
        children = list(inner) if isinstance(inner, (list, tuple)) else []
        children.append(getattr(layer, "layer", None))
        pending.extend(child for child in children if isinstance(child, keras.layers.Layer))


@contextlib.contextmanager
def _variables_saved_as_host_views(model):
    """While saving, each layer's own ``save_own_variables`` writes through :class:`_HostViewStore`.

    Keras' writer calls ``np.array(variable)``, which holds two copies of the
    variable at once (411 MB each for VGG-16's fc6); a host view costs none, so
    the writer's own copy is the only one. The layer's method decides what is
    saved, unchanged; only the values' route differs. A layer Keras reaches by
    another route is saved Keras' usual way.
    """
    patched = []
    try:
        for layer in _saveable_layers(model):
            if "save_own_variables" in vars(layer):
                continue  # the instance already has its own; leave it alone

            def save_own_variables(store, layer=layer):
                type(layer).save_own_variables(layer, _HostViewStore(store))

            object.__setattr__(layer, "save_own_variables", save_own_variables)
            patched.append(layer)
        yield
    finally:
        for layer in patched:
            object.__delattr__(layer, "save_own_variables")
