"""The resizing family against real Caffe: Resizing and keras.ops.image.resize, bilinear and nearest, at odd sizes.

Keras' half-pixel resize (the edges clamped) is a pair of interpolation
matrices; Caffe 1.0 applies them with an InnerProduct over the width and a
grouped convolution over the height. Up, down, one axis only, to and from one
pixel, with cropping or zero padding to the aspect ratio; UpSampling2D's own
cases are in test_reshaping.
"""

from __future__ import annotations

import keras
import pytest

from keraffe.convert.keras_to_caffe import convert_model
from keraffe.errors import ConversionError

from ._harness import Batch, Case, assert_case, caffe_types, params

pytestmark = pytest.mark.pycaffe

L = keras.layers


def resizing(height, width, **kwargs):
    def build(x, p):
        return L.Resizing(height, width, name=p + "resize", **kwargs)(x[0])
    return build


def only_matrices(export, p):
    assert set(caffe_types(export, p)) <= {"InnerProduct", "Convolution", "Reshape"}, caffe_types(export, p)


CASES = []
for method in ("bilinear", "nearest"):
    for tag, source, target in (("up_odd", (5, 7), (11, 13)), ("down_odd", (13, 11), (5, 3)),
                                ("up_non_integer", (6, 5), (9, 8)), ("down_non_integer", (9, 11), (7, 4)),
                                ("mixed", (7, 4), (3, 9)), ("rows_only", (5, 7), (9, 7)), ("cols_only", (5, 7), (5, 3)),
                                ("from_one_pixel", (1, 1), (3, 5)), ("to_one_pixel", (5, 7), (1, 1)),
                                ("one_row", (1, 6), (4, 9))):
        CASES.append(Case(f"{method}_{tag}", (source + (3,),), resizing(*target, interpolation=method),
                          compared=("resize",), check=only_matrices))
    for tag, source, target in (("crop_wide", (9, 13), (4, 4)), ("crop_tall", (11, 5), (3, 4))):
        CASES.append(Case(f"{method}_{tag}", (source + (2,),),
                          resizing(*target, interpolation=method, crop_to_aspect_ratio=True), compared=("resize",)))
    for tag, source, target in (("pad_wide", (9, 13), (4, 4)), ("pad_tall", (7, 4), (5, 6))):
        CASES.append(Case(f"{method}_{tag}", (source + (2,),),
                          resizing(*target, interpolation=method, pad_to_aspect_ratio=True), compared=("resize",)))
CASES += [
    Case("antialias_upward", ((5, 7, 3),), resizing(9, 10, antialias=True), compared=("resize",)),
    Case("op_resize", ((5, 7, 3),),
         lambda x, p: L.Lambda(lambda t: keras.ops.image.resize(t, (8, 3)), name=p + "op")(x[0]), compared=("op",)),
    Case("resize_then_conv", ((7, 5, 3),),
         lambda x, p: L.Conv2D(2, 3, padding="same", name=p + "conv")(
             L.Resizing(10, 9, name=p + "resize")(x[0])), compared=("resize", "conv")),
    Case("resize_opencv", ((5, 7, 3),), resizing(8, 11), target="opencv", runtime="opencv", compared=("resize",)),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory, "resizing")


@pytest.mark.parametrize("case", params(CASES))
def test_resizing(batch, case):
    assert_case(batch, case)


def test_all_cases_convert_as_one_net(batch):
    batch.check_all_batches()


@pytest.mark.parametrize("kwargs, reason", [
    (dict(interpolation="bicubic"), "'bicubic' interpolation has no exact Caffe form"),
    (dict(interpolation="area"), "'area' interpolation has no exact Caffe form"),
    (dict(antialias=True, height=3, width=4), "antialiased bilinear downscaling has no exact Caffe form"),
    (dict(pad_to_aspect_ratio=True, fill_value=1.0), "padding to the aspect ratio with 1.0 has no exact Caffe form"),
])
def test_what_caffe_cannot_compute_is_refused(kwargs, reason):
    size = dict(height=9, width=6)
    size.update({k: kwargs.pop(k) for k in ("height", "width") if k in kwargs})
    x = keras.Input((5, 7, 3), name="x")
    model = keras.Model(x, L.Resizing(**size, name="resize", **kwargs)(x), name="refused")
    with pytest.raises(ConversionError, match=reason):
        convert_model(model)
