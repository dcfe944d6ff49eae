"""OpenCV 4.x DNN as a second, independent Caffe runtime.

OpenCV's importer reads the forks' spellings (``ceil_mode``) and runs most deploy
layers, but not all (no Threshold, no Bias; InnerProduct with transpose: true is
computed wrongly), and OpenCV 5 removed the Caffe importer altogether. Outputs
are requested by the name of the Caffe layer that produced them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

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


def opencv_available() -> bool:
    try:
        import cv2
    except ImportError:
        return False
    return hasattr(cv2, "dnn") and hasattr(cv2.dnn, "readNetFromCaffe")


def run_opencv(
    prototxt: str | os.PathLike,
    caffemodel: str | os.PathLike | None,
    inputs: Mapping[str, np.ndarray],
    layers: Sequence[str],
    fusion: bool = True,
) -> dict[str, list[np.ndarray]]:
    """Forward through OpenCV DNN and return every output of each named layer, in top order."""
    import cv2

    if not opencv_available():
        raise OpenCVRuntimeError(
            f"OpenCV {cv2.__version__} has no Caffe importer (OpenCV 5 removed it); "
            "install opencv-python-headless<5"
        )
    try:
        net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel) if caffemodel else "")
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        net.enableFusion(fusion)
        for name, value in inputs.items():
            net.setInput(np.ascontiguousarray(value, dtype=np.float32), name)
        results = net.forwardAndRetrieve(list(layers))
    except cv2.error as error:
        message = str(error).strip().splitlines()
        raise OpenCVRuntimeError(f"OpenCV DNN failed: {message[-1] if message else error}") from None
    return {name: [np.asarray(v, dtype=np.float32) for v in values] for name, values in zip(layers, results)}


def time_opencv(
    prototxt: str | os.PathLike, caffemodel: str | os.PathLike, inputs: Mapping[str, np.ndarray],
    repeats: int = 20, warmup: int = 3, threads: int | None = None,
) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` forward passes, after ``warmup`` untimed ones."""
    import time

    import cv2

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
    import cv2

    if not opencv_available():
        raise OpenCVRuntimeError(f"OpenCV {cv2.__version__} has no Caffe importer; install opencv-python-headless<5")
    try:
        net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        outputs = []
        for start in range(0, len(images), batch_size):
            net.setInput(np.ascontiguousarray(images[start:start + batch_size], dtype=np.float32))
            outputs.append(np.array(net.forward(), dtype=np.float32))
    except cv2.error as error:
        message = str(error).strip().splitlines()
        raise OpenCVRuntimeError(f"OpenCV DNN failed: {message[-1] if message else error}") from None
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
