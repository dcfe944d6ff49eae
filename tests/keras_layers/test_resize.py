"""Interp against DeepLab's caffe_cpu_interp2 (align-corners bilinear), computed in float32 as Caffe does.

The input is first cropped by -pad_beg at the start and -pad_end at the end
of both spatial axes (DeepLab supports only non-positive padding).
"""

from __future__ import annotations

import numpy as np
import pytest

from caffe_reference import interp2
from keraffe.keras_layers import Interp

from ._common import check_layer, nchw, nhwc, rng

pytestmark = pytest.mark.backends


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


@pytest.mark.parametrize("shape, size, flags", [
    ((2, 5, 4, 3), (9, 7), {"align_corners": True}),
    ((1, 9, 8, 2), (4, 5), {"half_pixel_centers": True}),
    ((2, 5, 6, 3), (11, 4), {}),
], ids=["align_corners", "half_pixel", "legacy"])
def test_resize_bilinear_matches_the_synopsys_fork(shape, size, flags, tmp_path):
    """The Synopsys fork's ResizeBilinear (TF's resize_bilinear) on NHWC, its loops ported in tests/caffe_reference."""
    from caffe_reference import tf_resize_bilinear
    from keraffe.keras_layers import ResizeBilinear

    x = rng(1).standard_normal(shape).astype(np.float32)
    expected = tf_resize_bilinear(x, *size, nhwc=True, **flags)
    check_layer(ResizeBilinear(size, name="resize_bilinear", **flags), x, expected, tmp_path, tolerance=1e-6)
