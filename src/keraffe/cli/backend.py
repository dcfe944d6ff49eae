"""Which Keras backend the ``keraffe`` command runs on, and a start-up without native log noise.

keraffe installs no backend of its own (``pip install keraffe[jax]``, ``[torch]``
or ``[tensorflow]`` adds one). The command honours ``KERAS_BACKEND`` and
otherwise takes the first installed backend, in Keras' own order of preference,
so a JAX-only or PyTorch-only machine works without any setting.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

from keraffe.errors import KeraffeError

#: The backends keraffe's extras install (each extra is named after its backend), in the order the command tries them.
EXTRA_BACKENDS = ("tensorflow", "jax", "torch")
#: Every KERAS_BACKEND value Keras 3 knows -> the package that provides it.
BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy",
                    "openvino": "openvino"}


def installed_backends() -> list[str]:
    """The backends keraffe's extras provide that are installed here, in the order the command tries them."""
    return [name for name in EXTRA_BACKENDS if importlib.util.find_spec(BACKEND_PACKAGES[name]) is not None]


def choose_backend() -> str:
    """The backend this process runs Keras on, set in ``KERAS_BACKEND`` before Keras is imported.

    Raises a one-line KeraffeError naming the extra to install when the chosen
    backend, or every backend, is missing.
    """
    if "keras" in sys.modules:  # already loaded in this process (a caller of main()): its backend stays
        return sys.modules["keras"].backend.backend()
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:
        if chosen not in BACKEND_PACKAGES:
            raise KeraffeError(f"KERAS_BACKEND={chosen} is not a Keras backend; Keras 3 runs on "
                               + ", ".join(BACKEND_PACKAGES))
        package = BACKEND_PACKAGES[chosen]
        if importlib.util.find_spec(package) is None:
            install = f"'keraffe[{chosen}]'" if chosen in EXTRA_BACKENDS else package
            raise KeraffeError(f"KERAS_BACKEND={chosen}, but {package} is not installed: "
                               f"pip install {install}, or set KERAS_BACKEND to an installed backend")
        return chosen
    installed = installed_backends()
    if not installed:
        raise KeraffeError("this command runs Keras, and no Keras backend is installed: "
                           "pip install 'keraffe[jax]' (or keraffe[torch], keraffe[tensorflow])")
    os.environ["KERAS_BACKEND"] = installed[0]
    return installed[0]


def start_keras() -> str:
    """Choose the backend, import Keras on it and register keraffe's layers; returns the backend's name."""
    backend = choose_backend()
    import keras  # noqa: F401

    import keraffe.keras_layers  # noqa: F401  (registers keraffe's layers, for loading models that hold them)

    return backend


@contextlib.contextmanager
def native_stderr_silenced():
    """Native code's writes to file descriptor 2 go to /dev/null; Python's ``sys.stderr`` still reaches the user.

    TensorFlow's C++ side writes start-up chatter straight to descriptor 2
    before its log settings apply, and again whenever Keras imports it later
    (saving a model imports TensorFlow on every backend where it is installed):
    oneDNN notices, "Could not find cuda drivers", "cuInit ... UNKNOWN ERROR".
    None of it is about the user's command. keraffe's messages, warnings and
    tracebacks go through ``sys.stderr``, which is pointed at a copy of the
    original descriptor for the duration.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    stream = previous = None
    try:
        is_real = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced by a non-file (a test's capture): leave it
        is_real = False
    if is_real:
        previous = sys.stderr
        stream = os.fdopen(saved, "w", buffering=1, encoding=previous.encoding, errors="backslashreplace",
                           closefd=False)
        sys.stderr = stream
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        if stream is not None:
            stream.flush()
            sys.stderr = previous
        os.dup2(saved, 2)
        os.close(saved)
