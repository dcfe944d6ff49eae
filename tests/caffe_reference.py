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
        h1r = np.float32(rheight * np.float32(h2))
        h1 = int(h1r)
        h1p = 1 if h1 < h1_in - 1 else 0
        h1l = np.float32(h1r - np.float32(h1))
        h0l = np.float32(1) - h1l
        for w2 in range(w2_out):
            w1r = np.float32(rwidth * np.float32(w2))
            w1 = int(w1r)
            w1p = 1 if w1 < w1_in - 1 else 0
            w1l = np.float32(w1r - np.float32(w1))
            w0l = np.float32(1) - w1l
            out[:, :, h2, w2] = (h0l * (w0l * x[:, :, h1, w1] + w1l * x[:, :, h1, w1 + w1p])
                                 + h1l * (w0l * x[:, :, h1 + h1p, w1] + w1l * x[:, :, h1 + h1p, w1 + w1p]))
    return out
