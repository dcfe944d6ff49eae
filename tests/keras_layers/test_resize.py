"""Interp against DeepLab's caffe_cpu_interp2 (align-corners bilinear), computed in float32 as Caffe does.

The input is first cropped by -pad_beg at the start and -pad_end at the end
of both spatial axes (DeepLab supports only non-positive padding).
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.keras_layers import Interp

from ._common import check_layer, nchw, nhwc, rng

pytestmark = pytest.mark.backends


def interp2(x, size_out):
    """caffe_cpu_interp2 over an NCHW array (already cropped)."""
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
        for w2 in range(w2_out):
            w1r = np.float32(rwidth * np.float32(w2))
            w1 = int(w1r)
            w1p = 1 if w1 < w1_in - 1 else 0
            w1l = np.float32(w1r - np.float32(w1))
            out[:, :, h2, w2] = ((1 - h1l) * ((1 - w1l) * x[:, :, h1, w1] + w1l * x[:, :, h1, w1 + w1p])
                                 + h1l * ((1 - w1l) * x[:, :, h1 + h1p, w1] + w1l * x[:, :, h1 + h1p, w1 + w1p]))
    return out


@pytest.mark.parametrize("shape, size, pad_beg, pad_end", [
    ((2, 5, 4, 3), (11, 9), 0, 0),
    ((2, 9, 8, 2), (4, 7), 0, 0),
    ((1, 5, 6, 2), (5, 6), 0, 0),
    ((1, 9, 8, 2), (11, 9), -1, -2),
    ((2, 7, 7, 3), (8, 3), -2, 0),
    ((1, 6, 5, 2), (1, 4), 0, 0),
    ((1, 1, 5, 2), (3, 9), 0, 0),
], ids=lambda v: str(v).replace(" ", ""))
def test_interp(shape, size, pad_beg, pad_end, tmp_path):
    x = rng(10).standard_normal(shape).astype(np.float32)
    height, width = shape[1:3]
    cropped = nchw(x)[:, :, -pad_beg: height + pad_end, -pad_beg: width + pad_end]
    check_layer(Interp(size, pad_beg, pad_end), x, nhwc(interp2(cropped, size)), tmp_path, tolerance=1e-6)


def test_interp_refuses_positive_padding():
    with pytest.raises(ValueError, match="non-positive"):
        Interp((4, 4), pad_beg=1)
