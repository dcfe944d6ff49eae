"""OpenCV 4.x DNN as a second, independent Caffe runtime.

OpenCV's importer reads the forks' spellings (``ceil_mode``) and runs most deploy
layers, but not all (no Threshold, no Bias; InnerProduct with transpose: true is
computed wrongly), and OpenCV 5 removed the Caffe importer altogether. Outputs
are requested by the name of the Caffe layer that produced them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from keraffe.errors import KeraffeError


#: Layer types OpenCV 4.x loads but computes differently from Caffe (checked by keraffe's tests).
OPENCV_WRONG = {
    "Axpy": "layer computes x + a instead of SENet's a * x + y",
}


def opencv_layer_name(layer) -> str:
    """The name OpenCV gives a Caffe layer: its own, except a Convolution, which OpenCV 4.14 names after its top."""
    if layer.type == "Convolution" and len(layer.top) == 1:
        return layer.top[0]
    return layer.name


class OpenCVRuntimeError(KeraffeError):
    """OpenCV could not load or run the net."""


def import_cv2():
    """OpenCV's module, or an error naming the extra that installs it (keraffe itself does not need OpenCV)."""
    try:
        import cv2
    except ImportError:
        raise OpenCVRuntimeError("OpenCV is not installed: pip install 'keraffe[opencv]' (OpenCV 4.x DNN)") from None
    return cv2


def _caffe_importer():
    """OpenCV's module, once it is known to read Caffe nets (OpenCV 5 removed that)."""
    cv2 = import_cv2()
    if not opencv_available():
        raise OpenCVRuntimeError(f"OpenCV {cv2.__version__} has no Caffe importer (OpenCV 5 removed it); "
                                 "pip install 'keraffe[opencv]' installs OpenCV 4.x")
    return cv2


def opencv_available() -> bool:
    try:
        import cv2
    except ImportError:
        return False
    return hasattr(cv2, "dnn") and hasattr(cv2.dnn, "readNetFromCaffe")


#: OpenCV's log names a layer that failed as "[Type]:(name)"; its exceptions, as 'layer "name"'.
_LOGGED_LAYER = re.compile(r"\[([A-Za-z0-9_]+)\]:\((.+?)\):")
_RAISED_LAYER = re.compile(r'layer "([^"]+)"(?: of type "([^"]+)")?')


@contextlib.contextmanager
def _opencv_errors() -> Iterator[None]:
    """Turn an OpenCV exception into one OpenCVRuntimeError naming the layer, when OpenCV says which.

    OpenCV's exception says what failed (its own assertion text) but often not
    in which layer; its log, which it writes to the process's stderr, does. So
    stderr is captured while OpenCV runs, searched after a failure, and
    passed on unchanged otherwise.
    """
    import cv2

    with tempfile.TemporaryFile(mode="w+b") as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        failure = None
        try:
            yield
        except cv2.error as error:
            failure = error
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            raw = captured.read()
        if failure is None:
            os.write(2, raw)  # passed on where it was going (the CLI sends native chatter to /dev/null)
            return
        log = raw.decode("utf-8", "replace")
    text = str(failure).strip()
    lines = text.splitlines()
    check = re.sub(r"^OpenCV\([^)]*\) \S+: error: ", "", lines[-1] if lines else text)
    raised, logged = _RAISED_LAYER.search(text), _LOGGED_LAYER.search(log)
    if raised:
        where = f" in layer '{raised.group(1)}'" + (f" ({raised.group(2)})" if raised.group(2) else "")
    elif logged:
        where = f" in layer '{logged.group(2)}' ({logged.group(1)})"
    else:
        where = ""
    raise OpenCVRuntimeError(f"OpenCV DNN failed{where}: {check}") from None


def run_opencv(
    prototxt: str | os.PathLike,
    caffemodel: str | os.PathLike | None,
    inputs: Mapping[str, np.ndarray],
    layers: Sequence[str],
    fusion: bool = True,
) -> dict[str, list[np.ndarray]]:
    """Forward through OpenCV DNN and return every output of each named layer, in top order."""
    cv2 = _caffe_importer()
    with _opencv_errors():
        net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel) if caffemodel else "")
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        net.enableFusion(fusion)
        for name, value in inputs.items():
            net.setInput(np.ascontiguousarray(value, dtype=np.float32), name)
        results = net.forwardAndRetrieve(list(layers))
    return {name: [np.asarray(v, dtype=np.float32) for v in values] for name, values in zip(layers, results)}


def time_opencv(
    prototxt: str | os.PathLike, caffemodel: str | os.PathLike, inputs: Mapping[str, np.ndarray],
    repeats: int = 20, warmup: int = 3, threads: int | None = None,
) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` forward passes, after ``warmup`` untimed ones."""
    import time

    cv2 = _caffe_importer()
    if threads is not None:
        cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, value in inputs.items():
        net.setInput(np.ascontiguousarray(value, dtype=np.float32), name)
    for _ in range(warmup):
        net.forward()
    timings = []
    for _ in range(repeats):
        for name, value in inputs.items():
            net.setInput(np.ascontiguousarray(value, dtype=np.float32), name)
        start = time.perf_counter()
        net.forward()
        timings.append(time.perf_counter() - start)
    return timings


def run_opencv_batches(prototxt: str | os.PathLike, caffemodel: str | os.PathLike, images: np.ndarray,
                       batch_size: int = 256) -> np.ndarray:
    """The net's (first) output for every image of ``images`` (N, C, H, W), run in batches.

    For accuracy measurements over a test set: one net, loaded once, fed
    ``batch_size`` images at a time.
    """
    cv2 = _caffe_importer()
    with _opencv_errors():
        net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        outputs = []
        for start in range(0, len(images), batch_size):
            net.setInput(np.ascontiguousarray(images[start:start + batch_size], dtype=np.float32))
            outputs.append(np.array(net.forward(), dtype=np.float32))
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
