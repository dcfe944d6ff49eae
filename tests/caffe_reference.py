"""NumPy references written from Caffe's own sources, shared by tests in several packages.

They stand beside real Caffe where the Caffe build keraffe tests against lacks
a layer (DeepLab's Interp), so they must not call keraffe.
"""

from __future__ import annotations

import numpy as np


def interp2(x: np.ndarray, size_out: tuple[int, int]) -> np.ndarray:
    """DeepLab's caffe_cpu_interp2 (align-corners bilinear, not packed) over an already-cropped NCHW array.

    In float32 step by step, as Caffe computes it.
    """
    x = x.astype(np.float32)
    h1_in, w1_in = x.shape[2:]
    h2_out, w2_out = size_out
    if (h1_in, w1_in) == (h2_out, w2_out):
        return x.copy()
    rheight = np.float32((h1_in - 1) / (h2_out - 1)) if h2_out > 1 else np.float32(0)
    rwidth = np.float32((w1_in - 1) / (w2_out - 1)) if w2_out > 1 else np.float32(0)
    out = np.zeros(x.shape[:2] + (h2_out, w2_out), np.float32)
    for h2 in range(h2_out):
        h1, h1p, h0l, h1l = _source(rheight, h2, h1_in)
        for w2 in range(w2_out):
            w1, w1p, w0l, w1l = _source(rwidth, w2, w1_in)
            out[:, :, h2, w2] = (h0l * (w0l * x[:, :, h1, w1] + w1l * x[:, :, h1, w1 + w1p])
                                 + h1l * (w0l * x[:, :, h1 + h1p, w1] + w1l * x[:, :, h1 + h1p, w1 + w1p]))
    return out


def _source(ratio, position: int, size_in: int):
    """For one output position along one axis: the input index, the step to its neighbour (0 at the
    edge), and the two interpolation weights, each in float32 as Caffe rounds them."""
    real = np.float32(ratio * np.float32(position))
    index = int(real)
    step = 1 if index < size_in - 1 else 0
    far = np.float32(real - np.float32(index))
    return index, step, np.float32(1) - far, far


def huawei_upsample(x: np.ndarray, scale: float, stride: int) -> np.ndarray:
    """Huawei ATC's Upsample as its operator page defines it (no Caffe build has it):
    y[n, c, i, j] = scale * x[n, c, i / stride, j / stride], integer division (nearest)."""
    return (np.float32(scale) * x.repeat(stride, axis=2).repeat(stride, axis=3)).astype(np.float32)
