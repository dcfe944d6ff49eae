"""The arithmetic of bilinear resizing layers, with no Keras in it.

DeepLab/PSPNet's Interp (Caffe's caffe_cpu_interp2): both keraffe's Keras
``Interp`` layer and the BVLC spelling of Interp for the reference runtimes
(:mod:`keraffe.passes.bvlc_spelling`) need the same source positions and
weights; this module is the one place that computes them. The Synopsys fork's
ResizeBilinear (TensorFlow's resize_bilinear) has its own rules, here too.
"""

from __future__ import annotations

import numpy as np


def interp_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source index, its neighbour and the neighbour's weight for each output position.

    Follows Caffe's caffe_cpu_interp2 in float32: ratio = (in - 1) / (out - 1),
    src = ratio * i, neighbour = src + 1 unless src is the last row.
    """
    ratio = np.float32((in_size - 1) / (out_size - 1)) if out_size > 1 else np.float32(0.0)
    position = ratio * np.arange(out_size, dtype=np.float32)
    base = position.astype(np.int64)
    step = (base < in_size - 1).astype(np.int64)
    weight = (position - base.astype(np.float32)).astype(np.float32)
    return base, base + step, weight


def interp_matrix(in_size: int, out_size: int, crop_begin: int, crop_end: int) -> np.ndarray:
    """(out_size, in_size) weights of Caffe's Interp along one axis, after its crop of the input."""
    kept = in_size - crop_begin - crop_end
    first, second, weight = interp_taps(kept, out_size)
    matrix = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, first + crop_begin), np.float32(1.0) - weight)
    np.add.at(matrix, (rows, second + crop_begin), weight)
    return matrix


def resize_bilinear_taps(in_size: int, out_size: int, align_corners: bool = False, half_pixel_centers: bool = False,
                         pytorch_half_pixel: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper source index and the upper one's weight, per output position, as TF's resize_bilinear.

    In float32, as the Synopsys fork computes them: scale = (in - 1) / (out - 1)
    with aligned corners (out > 1), else in / out; the source position is
    i * scale, or (i + 0.5) * scale - 0.5 with half-pixel centres (PyTorch's
    variant puts a single output at -0.5); lower = max(floor(src), 0),
    upper = min(ceil(src), in - 1), weight = src - floor(src), unclamped.
    """
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    index = np.arange(out_size, dtype=np.float32)
    if align_corners:
        source = index * scale
    elif pytorch_half_pixel:
        source = (index + np.float32(0.5)) * scale - np.float32(0.5) if out_size > 1 else np.full(1, -0.5, np.float32)
    elif half_pixel_centers:
        source = (index + np.float32(0.5)) * scale - np.float32(0.5)
    else:
        source = index * scale
    source = source.astype(np.float32)
    floor = np.floor(source)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(source).astype(np.int64), in_size - 1)
    return lower, upper, (source - floor).astype(np.float32)
