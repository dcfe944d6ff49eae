"""Loading and saving Keras models the way keraffe's commands need: safely, atomically, with clear errors."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
import zlib
from pathlib import Path

from keraffe.errors import KeraffeError
from keraffe.keras_graph import declared_variables, safe_deserialization
from keraffe.limits import MAX_NESTING, check_declared, check_elements, check_expansion, element_cap, nesting_overflow


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


def load_keras_model(path: str | os.PathLike, max_elements: int | None = None):
    """Load a .keras or .h5 model with Keras' safe mode on; never run code stored in the file.

    A model holding a Lambda layer (Python bytecode) or a pickled object is
    refused with a message saying so, even where the process has switched
    Keras' safe mode off. Keras 2 .h5 files that Keras 3 cannot open are read
    by keraffe.keras_legacy where their config and weights are unambiguous.

    Before Keras allocates anything, the file's declared sizes are checked
    (keraffe.limits): archive members and stored arrays against what they are
    stored in, and every variable the model would create against the element
    cap (``max_elements``) and the size of the weights file.
    """
    with element_cap(max_elements):
        return _load_keras_model(Path(path))


def _load_keras_model(path: Path):
    import keras

    import keraffe.keras_layers  # noqa: F401  (registers keraffe's layers for deserialisation)

    if not path.is_file():
        raise KeraffeError(f"{path}: Keras model file not found")
    stored = _check_container(path)
    try:
        with safe_deserialization():
            declared = declared_variables(lambda: _build_only(path, stored))
            check_declared(str(path), declared, stored.weight_bytes)
            return keras.saving.load_model(path, safe_mode=True, compile=False)
    except (KeraffeError, MemoryError, RecursionError):
        raise
    except Exception as error:  # noqa: BLE001 - Keras' loader meeting a file it was not written for
        # Keras raises what its code happens to raise on a malformed model (ValueError, TypeError, KeyError,
        # AttributeError on a number where it expects a string ...): the file's fault, said once.
        # Stored code is refused by name before Keras reads the config (_check_container); Keras' own
        # safe-mode refusal stays the backstop.
        text = str(error)
        if isinstance(error, ValueError) and ("Lambda" in text or "lambda" in text or "safe_mode" in text):
            raise _lambda_error(path, []) from None
        legacy = _try_legacy(path, error)
        if legacy is not None:
            return legacy
        kind = "" if isinstance(error, (ValueError, OSError, TypeError, KeyError)) else f"{type(error).__name__}: "
        raise KeraffeError(f"{path}: Keras cannot load this model: {kind}{_first_line(text)}") from None


def _build_only(path: Path, stored: "_Stored") -> None:
    """Make the model the file describes, for :func:`declared_variables` to see its variables.

    A .keras file's config is deserialised as Keras' loader does (no
    compile); a .h5 file goes through Keras' own loader, whose weights reads
    are bounded by the checks of :func:`_check_container`.
    """
    import keras

    if stored.config is None:
        keras.saving.load_model(path, safe_mode=True, compile=False)
        return
    config = dict(stored.config)
    config["compile_config"] = None
    keras.saving.deserialize_keras_object(config, safe_mode=True)


@dataclasses.dataclass
class _Stored:
    """What the container check learnt: a .keras file's config, and how many bytes of weights the file stores."""

    config: dict | None
    weight_bytes: int | None


#: Members of a .keras archive that hold the model's variables.
_KERAS_WEIGHTS = ("model.weights.h5", "model.weights.npz")
#: A JSON string, or one of the brackets that nest JSON values.
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
#: Classes whose stored config carries code or a pickle: Keras runs them only with safe mode off.
_CODE_CARRIERS = {
    "Lambda": "a Lambda layer, i.e. arbitrary Python code stored in the file",
    "__lambda__": "a Python lambda stored as bytecode",
    "TorchModuleWrapper": "a pickled PyTorch module, which unpickling would run",
}


def _check_container(path: Path) -> _Stored:
    """Refuse a file that is not the container its suffix promises, or that declares more than it holds.

    Keras answers a corrupt or truncated .keras file with "File not found",
    which sends users looking in the wrong place. Sizes are checked from the
    zip directory and the HDF5 headers, before a byte is decompressed or an
    array read (keraffe.limits).
    """
    import zipfile

    import h5py

    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise KeraffeError(
                f"{path}: not a .keras archive (a .keras file is a zip holding config.json and "
                "model.weights.h5); the file is corrupt, truncated or of another format"
            )
        try:
            return _check_keras_archive(path)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as error:
            raise KeraffeError(f"{path}: the .keras archive is corrupt ({error or type(error).__name__})") from None
    if suffix in (".h5", ".hdf5"):
        if not h5py.is_hdf5(path):
            raise KeraffeError(f"{path}: not an HDF5 file; the Keras .h5 model is corrupt, truncated or of another format")
        try:
            with h5py.File(path, "r") as handle:
                _check_datasets(f"{path}", handle)
                raw = handle.attrs.get("model_config")
        except (OSError, RuntimeError, KeyError) as error:
            raise KeraffeError(f"{path}: the HDF5 file is corrupt ({error})") from None
        if raw is not None:
            _check_config_text(path, raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
        return _Stored(None, path.stat().st_size)
    return _Stored(None, None)


def _check_keras_archive(path: Path) -> _Stored:
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        check_expansion(f"{path}: the .keras archive", path.stat().st_size,
                        sum(info.file_size for info in members.values()))
        for info in members.values():
            check_expansion(f"{path}: archive member {info.filename}", info.compress_size, info.file_size)
        if "config.json" not in members:
            raise KeraffeError(f"{path}: the .keras archive has no config.json, so no model; it is corrupt or "
                               "not a Keras 3 model")
        weights = [members[name] for name in _KERAS_WEIGHTS if name in members]
        config = _check_config_text(path, archive.read("config.json").decode("utf-8", "replace"))
        if not isinstance(config, dict):
            raise KeraffeError(f"{path}: config.json does not describe a model (it holds a {type(config).__name__})")
        if "model.weights.h5" in members:
            with archive.open("model.weights.h5") as member:
                try:
                    handle = h5py.File(member, "r")
                except OSError as error:
                    raise KeraffeError(f"{path}: its model.weights.h5 is not a readable HDF5 file ({error})") from None
                with handle:
                    _check_datasets(f"{path}: model.weights.h5", handle)
    return _Stored(config, sum(info.file_size for info in weights) if weights else 0)


def _check_config_text(path: Path, text: str):
    """The parsed JSON config, after refusing nesting past keraffe.limits.MAX_NESTING and stored code."""
    import json

    if nesting_overflow(text, _JSON_TOKENS, "[{") is not None:
        raise KeraffeError(f"{path}: the model config nests more than {MAX_NESTING} levels deep; "
                           "no Keras model does, the file is corrupt or hostile")
    try:
        config = json.loads(text)
    except ValueError as error:
        raise KeraffeError(f"{path}: the model config is not valid JSON ({error})") from None
    carriers = _code_carriers(config)
    if carriers:
        raise _code_error(path, carriers)
    return config


def _code_carriers(config) -> list[tuple[str, str | None]]:
    """(class name, layer name or None) of every object in a parsed config that carries code or a pickle."""
    found: list[tuple[str, str | None]] = []
    pending = [config]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            class_name = node.get("class_name")
            if isinstance(class_name, str) and class_name in _CODE_CARRIERS:
                settings = node.get("config")
                name = settings.get("name") if isinstance(settings, dict) else None
                found.append((class_name, str(name) if name is not None else None))
                continue  # what it holds (a Lambda's function) is part of the same finding
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return sorted(found, key=lambda item: (item[0], item[1] or ""))


def _code_error(path: Path, carriers: list[tuple[str, str | None]]) -> KeraffeError:
    if all(class_name == "Lambda" for class_name, _ in carriers):
        return _lambda_error(path, [name or "?" for _, name in carriers])
    described = "; ".join((f"'{name}': " if name else "") + _CODE_CARRIERS[class_name] for class_name, name in carriers)
    return KeraffeError(
        f"{path}: the model stores code or pickled objects ({described}); keraffe loads models with Keras' "
        "safe_mode and never runs or unpickles what a model file stores. Rebuild those parts from standard "
        "layers and save again"
    )


def _check_datasets(what: str, handle) -> None:
    """Every array in an HDF5 file against the element cap and the bytes that store it."""
    import h5py

    datasets = []
    handle.visititems(lambda name, item: datasets.append((name, item)) if isinstance(item, h5py.Dataset) else None)
    for name, dataset in datasets:
        where = f"{what}: array '{name}'"
        if dataset.shape is None:
            continue
        values = check_elements(where, dataset.shape)
        check_expansion(where, dataset.id.get_storage_size(), values * dataset.dtype.itemsize)


def _lambda_error(path: Path, names: list[str]) -> KeraffeError:
    named = f" ({', '.join(repr(n) for n in names)})" if names else ""
    return KeraffeError(
        f"{path}: the model holds a Lambda layer{named}, i.e. arbitrary Python code stored in the file; "
        "keraffe loads models with Keras' safe_mode and never runs such code. Replace the Lambda "
        "with standard layers (or keraffe's) and save again"
    )


def _try_legacy(path: Path, error: Exception):
    if path.suffix.lower() not in (".h5", ".hdf5"):
        return None
    try:
        from keraffe.keras_legacy import load_legacy_h5
    except ImportError:
        return None
    return load_legacy_h5(path, original_error=error)


def _first_line(text: str) -> str:
    """Keras' message, its first line; cut after 400 characters (Keras may quote a whole model config)."""
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return line if len(line) <= 400 else line[:400] + " ..."


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
