"""ZeroPadding2D, Cropping2D and UpSampling2D against real Caffe.

Caffe 1.0 has no padding layer: ZeroPadding2D is absorbed by the convolution
or pooling after it (test_conv and test_pooling cover those on every stride
parity); here it is also the model's output and feeds other layers, so its own
values are compared. Cropping2D is Slice + Silence. UpSampling2D 'nearest' is
a grouped Deconvolution of ones; 'bilinear' must convert exactly too.
"""

from __future__ import annotations

import keras
import pytest

from ._harness import Batch, Case, assert_case, expect_types, params

pytestmark = pytest.mark.pycaffe

L = keras.layers


def image(hw, channels=3):
    return (hw + (channels,),)


def crop(cropping, then=None):
    def build(x, p):
        y = L.Cropping2D(cropping, name=p + "crop")(x[0])
        return then(p)(y) if then else y
    return build


def upsample(size, interpolation="nearest"):
    def build(x, p):
        return L.UpSampling2D(size, interpolation=interpolation, name=p + "up")(x[0])
    return build


CASES = []
for size, hw in (("odd", (9, 11)), ("even", (12, 10))):
    CASES += [
        Case(f"crop_sym_{size}", image(hw), crop(1), compared=("crop",)),
        Case(f"crop_asym_{size}", image(hw), crop(((1, 2), (3, 0))), compared=("crop",)),
        Case(f"crop_rows_only_{size}", image(hw), crop(((0, 3), (0, 0))), compared=("crop",)),
        Case(f"crop_cols_only_{size}", image(hw), crop(((0, 0), (2, 1))), compared=("crop",)),
        Case(f"crop_then_conv_{size}", image(hw),
             crop(((2, 1), (0, 1)), lambda p: L.Conv2D(2, 3, strides=2, padding="same", name=p + "conv")),
             compared=("crop", "conv")),
    ]
    for factor in (2, 3, (2, 3)):
        tag = factor if isinstance(factor, int) else "x".join(map(str, factor))
        CASES.append(Case(f"up_nearest_{tag}_{size}", image(hw), upsample(factor), compared=("up",)))
CASES += [
    Case("up_nearest_then_conv", image((5, 7)),
         lambda x, p: L.Conv2D(2, 3, padding="same", name=p + "conv")(L.UpSampling2D(name=p + "up")(x[0])),
         compared=("up", "conv")),
    Case("crop_nothing", image((5, 7)),
         crop(0, lambda p: L.Conv2D(2, 3, name=p + "conv")), compared=("conv",)),
]

BILINEAR = [
    Case(f"up_bilinear_{tag}_{size}", image(hw), upsample(factor, "bilinear"), compared=("up",))
    for size, hw in (("odd", (5, 7)), ("even", (6, 4)), ("one_pixel", (1, 1)), ("one_row", (1, 5)))
    for tag, factor in (("2", 2), ("3", 3), ("2x3", (2, 3)))
]

# ZeroPadding2D whose output is not read by a convolution or pooling: its zeros are written out, exactly, by
# a depthwise convolution with a one-hot kernel.
PADDING = [
    Case("pad_asym_output", image((9, 11)), lambda x, p: L.ZeroPadding2D(((1, 2), (0, 3)), name=p + "pad")(x[0]),
         compared=("pad",), check=expect_types("Convolution")),
    Case("pad_asym_then_relu", image((12, 12)),
         lambda x, p: L.ReLU(name=p + "relu")(L.ZeroPadding2D(((2, 0), (1, 1)), name=p + "pad")(x[0])),
         compared=("relu",), check=expect_types("Convolution", "ReLU")),
    Case("pad_then_crop_output", image((9, 11)),
         lambda x, p: L.Cropping2D(((0, 2), (1, 0)), name=p + "crop")(
             L.ZeroPadding2D(((1, 0), (3, 1)), name=p + "pad")(x[0])), compared=("crop",)),
    # One padding read by a convolution (folded into it) and by an Add (written out).
    Case("pad_conv_and_add", image((9, 11)),
         lambda x, p: L.Add(name=p + "add")([
             L.Conv2D(3, 1, name=p + "conv")(L.ZeroPadding2D(1, name=p + "pad")(x[0])),
             L.ZeroPadding2D(1, name=p + "pad2")(x[0])]), compared=("conv", "add")),
    Case("pad_then_transpose_conv", image((5, 7)),
         lambda x, p: L.Conv2DTranspose(2, 3, strides=2, name=p + "deconv")(
             L.ZeroPadding2D(((1, 0), (0, 1)), name=p + "pad")(x[0])), compared=("deconv",)),
    Case("pad_then_global_max", image((5, 7)),
         lambda x, p: L.GlobalMaxPooling2D(name=p + "gmp")(L.ZeroPadding2D(2, name=p + "pad")(x[0])),
         compared=("gmp",)),
]

ALL = CASES + BILINEAR + PADDING


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(ALL, tmp_path_factory, "reshaping")


@pytest.mark.parametrize("case", params(ALL))
def test_reshaping(batch, case):
    assert_case(batch, case)


def test_all_cases_convert_as_one_net(batch):
    batch.check_all_batches()
