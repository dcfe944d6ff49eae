"""The arithmetic of DeepLab/PSPNet's Interp layer (Caffe's caffe_cpu_interp2), with no Keras in it.

Both keraffe's Keras ``Interp`` layer and the BVLC spelling of Interp for the
reference runtimes (:mod:`keraffe.passes.bvlc_spelling`) need the same source
positions and weights; this module is the one place that computes them.
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
