"""Normalisation against real Caffe: BatchNormalization, LayerNormalization over channels, Rescaling, Normalization.

BatchNormalization's moving variances are randomised positive and its
epsilon varied, so a dropped epsilon or a swapped mean/variance shows.
BatchNormalization over the channels of an image becomes Caffe's BatchNorm +
Scale; over another axis it folds into one Scale.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ._harness import Batch, Case, assert_case, assert_types, layer_named, params

pytestmark = pytest.mark.pycaffe

L = keras.layers


def after(factory, first=None):
    """The layer under test, after an optional first layer (so it sees another layout)."""
    def build(x, p):
        y = first(p)(x[0]) if first else x[0]
        return factory(p)(y)
    return build


def bn(**kwargs):
    return lambda p: L.BatchNormalization(name=p + "bn", **kwargs)


def batchnorm_and_scale(export, p):
    assert_types(export, p + "bn", ["BatchNorm", "Scale"])
    assert layer_named(export, p + "bn/bn").batch_norm_param.eps == pytest.approx(1e-3)


def batchnorm_only(export, p):
    assert_types(export, p + "bn", ["BatchNorm"])


CASES = [
    Case("bn_image_odd", ((9, 11, 3),), after(bn()), compared=("bn",), check=batchnorm_and_scale),
    Case("bn_image_even", ((12, 12, 4),), after(bn(epsilon=0.1)), compared=("bn",)),
    Case("bn_no_center", ((9, 11, 3),), after(bn(center=False)), compared=("bn",)),
    Case("bn_no_scale", ((9, 11, 3),), after(bn(scale=False, epsilon=0.5)), compared=("bn",)),
    Case("bn_no_center_no_scale", ((9, 11, 3),), after(bn(center=False, scale=False, epsilon=0.25)),
         compared=("bn",), check=batchnorm_only),
    Case("bn_flat", ((6,),), after(bn()), compared=("bn",)),
    Case("bn_after_dense", ((6,),), after(bn(epsilon=1e-5), lambda p: L.Dense(4, name=p + "dense")),
         compared=("bn",)),
    Case("bn_sequence", ((4, 5),), after(bn()), compared=("bn",)),
    Case("bn_sequence_no_center_scale", ((4, 5),), after(bn(center=False, scale=False, epsilon=0.2)),
         compared=("bn",)),
    Case("bn_image_axis1", ((5, 7, 3),), after(bn(axis=1)), compared=("bn",)),
    Case("bn_image_axis2_no_scale", ((5, 7, 3),), after(bn(axis=2, scale=False)), compared=("bn",)),
    Case("bn_after_flatten", ((3, 4, 2),), after(bn(), lambda p: L.Flatten(name=p + "flat")), compared=("bn",)),
]


# ---------------------------------------------------------------- LayerNormalization over channels
def ln(**kwargs):
    return lambda p: L.LayerNormalization(name=p + "ln", **kwargs)


CASES += [
    Case("ln_image_odd", ((9, 11, 3),), after(ln()), compared=("ln",)),
    Case("ln_image_even_eps", ((12, 12, 4),), after(ln(epsilon=0.1)), compared=("ln",)),
    Case("ln_image_no_center", ((5, 7, 3),), after(ln(center=False)), compared=("ln",)),
    Case("ln_image_no_scale", ((5, 7, 3),), after(ln(scale=False)), compared=("ln",)),
    Case("ln_image_plain", ((5, 7, 3),), after(ln(center=False, scale=False)), compared=("ln",)),
    Case("ln_flat", ((6,),), after(ln()), compared=("ln",)),
    Case("ln_sequence", ((4, 5),), after(ln()), compared=("ln",)),
    Case("ln_after_dense", ((6,),), after(ln(epsilon=1e-6), lambda p: L.Dense(7, name=p + "dense")),
         compared=("ln",)),
]


# ---------------------------------------------------------------- Rescaling and Normalization
MEAN = [0.5, -1.0, 2.0]
VARIANCE = [4.0, 0.25, 1.5]

CASES += [
    Case("rescaling_scalar", ((5, 7, 3),), after(lambda p: L.Rescaling(1.0 / 255, offset=-1.0, name=p + "rs")),
         compared=("rs",), check=lambda e, p: assert_types(e, p + "rs", ["Power"])),
    Case("rescaling_scale_only", ((6,),), after(lambda p: L.Rescaling(2.5, name=p + "rs")), compared=("rs",)),
    Case("rescaling_per_channel", ((5, 7, 3),),
         after(lambda p: L.Rescaling(scale=[0.5, 2.0, -1.0], offset=[1.0, 0.0, -2.0], name=p + "rs")),
         compared=("rs",)),
    Case("normalization_image", ((5, 7, 3),),
         after(lambda p: L.Normalization(mean=MEAN, variance=VARIANCE, name=p + "norm")), compared=("norm",)),
    Case("normalization_invert", ((5, 7, 3),),
         after(lambda p: L.Normalization(mean=MEAN, variance=VARIANCE, invert=True, name=p + "norm")),
         compared=("norm",)),
    Case("normalization_flat", ((3,),),
         after(lambda p: L.Normalization(mean=MEAN, variance=VARIANCE, name=p + "norm")), compared=("norm",)),
    Case("normalization_scalar", ((5, 7, 3),),
         after(lambda p: L.Normalization(axis=None, mean=0.5, variance=2.0, name=p + "norm")), compared=("norm",)),
    # One channel: Keras keeps (1,)-shaped mean and variance, which become one Power.
    Case("normalization_one_channel", ((5, 7, 1),),
         after(lambda p: L.Normalization(mean=[0.25], variance=[3.0], name=p + "norm")), compared=("norm",),
         check=lambda e, p: assert_types(e, p + "norm", ["Power"])),
    Case("normalization_sequence", ((4, 3),),
         after(lambda p: L.Normalization(mean=MEAN, variance=VARIANCE, name=p + "norm")), compared=("norm",)),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory, "normalization")


@pytest.mark.parametrize("case", params(CASES))
def test_normalization(batch, case):
    assert_case(batch, case)


def test_all_cases_convert_as_one_net(batch):
    batch.check_all_batches()


def test_batchnorm_weights_carry_over(tmp_path):
    """Caffe's BatchNorm holds Keras' moving mean and variance (scale factor 1), the Scale gamma and beta."""
    from ._harness import build_model, convert_files, randomize

    model = build_model([Case("w", ((5, 7, 3),), after(bn(epsilon=0.01)))])
    randomize(model, seed=3)
    export, _ = convert_files(model, tmp_path)
    gamma, beta, mean, variance = model.get_layer("w__bn").get_weights()
    bn_blobs = export.weights["w__bn/bn"]
    np.testing.assert_array_equal(bn_blobs[0], mean)
    np.testing.assert_array_equal(bn_blobs[1], variance)
    np.testing.assert_array_equal(bn_blobs[2], [1.0])
    np.testing.assert_array_equal(export.weights["w__bn"][0], gamma)
    np.testing.assert_array_equal(export.weights["w__bn"][1], beta)
    assert layer_named(export, "w__bn/bn").batch_norm_param.eps == pytest.approx(0.01)
