"""Core layers against real Caffe: InputLayer, Dense (rank 2 and higher), Flatten, Reshape, Permute, the
inference-time identities (Dropout, SpatialDropout2D, GaussianNoise, GaussianDropout, AlphaDropout,
ActivityRegularization, Identity) and keras.ops arithmetic with scalars in functional graphs.

Flatten of a channels-last image holds Caffe's (C, H, W) order; a Dense after
it reads its weight rows reordered, so no transpose is needed even in Caffe
1.0. Permute changes only the recorded layout, so the layers after it are what
show whether it was understood.
"""

from __future__ import annotations

import keras
import pytest

from ._harness import Batch, Case, assert_case, assert_types, layer_named, params

pytestmark = pytest.mark.pycaffe

L = keras.layers


def chain(*factories):
    def build(x, p):
        y = x[0]
        for factory in factories:
            y = factory(p)(y)
        return y
    return build


def dense(units=5, name="dense", **kwargs):
    return lambda p: L.Dense(units, name=p + name, **kwargs)


def flatten(name="flat"):
    return lambda p: L.Flatten(name=p + name)


def reshape(shape, name="reshape"):
    return lambda p: L.Reshape(shape, name=p + name)


def permute(dims, name="permute"):
    return lambda p: L.Permute(dims, name=p + name)


def conv(filters=3, name="conv"):
    return lambda p: L.Conv2D(filters, 3, padding="same", name=p + name)


CASES = [
    # ------------------------------------------------------------ Dense
    Case("dense_flat", ((6,),), chain(dense()), compared=("dense",),
         check=lambda e, p: assert_types(e, p + "dense", ["InnerProduct"])),
    Case("dense_no_bias", ((6,),), chain(dense(use_bias=False)), compared=("dense",)),
    Case("dense_relu", ((6,),), chain(dense(activation="relu")), compared=("dense",)),
    Case("dense_sequence", ((4, 6),), chain(dense()), compared=("dense",)),
    Case("dense_rank4_image", ((5, 7, 3),), chain(dense(4)), compared=("dense",),
         check=lambda e, p: assert_types(e, p + "dense", ["Convolution"])),
    Case("dense_rank4_no_bias_tanh", ((5, 7, 3),), chain(dense(4, use_bias=False, activation="tanh")),
         compared=("dense",)),
    Case("dense_rank5", ((2, 3, 4, 3),), chain(dense(2)), compared=("dense",)),
    Case("dense_two_in_a_row", ((6,),), chain(dense(8, "d1", activation="relu"), dense(3, "d2")),
         compared=("d1", "d2")),
    # ------------------------------------------------------------ Flatten
    Case("flatten_image_dense", ((3, 4, 2),), chain(flatten(), dense()), compared=("flat", "dense")),
    Case("flatten_image_odd_dense", ((5, 3, 3),), chain(conv(), flatten(), dense(4)), compared=("flat", "dense")),
    Case("flatten_one_channel", ((4, 5, 1),), chain(flatten(), dense()), compared=("flat", "dense")),
    Case("flatten_one_pixel", ((1, 1, 4),), chain(flatten(), dense()), compared=("flat", "dense")),
    Case("flatten_sequence", ((4, 5),), chain(flatten(), dense()), compared=("flat", "dense")),
    Case("flatten_flat", ((6,),), chain(flatten(), dense()), compared=("dense",)),
    # ------------------------------------------------------------ Reshape
    Case("reshape_image_to_flat_dense", ((3, 4, 2),), chain(reshape((24,)), dense()),
         compared=("dense",), target="opencv"),
    Case("reshape_flat_to_image_conv", ((24,),), chain(reshape((3, 4, 2)), conv()), compared=("conv",),
         target="opencv"),
    Case("reshape_flat_to_pixel", ((4,),), chain(dense(3), reshape((1, 1, 3)), conv()), compared=("conv",)),
    Case("reshape_flat_to_column", ((6,),), chain(reshape((6, 1, 1)), conv(2)), compared=("conv",)),
    Case("reshape_flat_to_sequence", ((12,),), chain(reshape((3, 4)), dense(2)), compared=("dense",)),
    Case("reshape_sequence_to_flat", ((3, 4),), chain(reshape((12,)), dense(2)), compared=("dense",)),
    Case("reshape_image_to_sequence", ((3, 4, 2),), chain(reshape((12, 2)), dense(3)), compared=("dense",),
         target="opencv"),
    # ------------------------------------------------------------ Permute
    # A Permute that moves data (the next layer reads memory order) needs Caffe's Permute: target opencv.
    Case("permute_sequence_dense", ((4, 5),), chain(permute((2, 1)), dense(3)), compared=("dense",),
         target="opencv"),
    Case("permute_image_conv", ((5, 7, 3),), chain(permute((2, 1, 3)), conv()), compared=("conv",),
         target="opencv"),
    # Permuting only size-1 axes is a reshape, which Caffe 1.0 has.
    Case("permute_unit_axes_conv", ((1, 7, 3),), chain(permute((2, 1, 3)), conv()), compared=("conv",)),
    Case("permute_image_channels_first_flatten", ((3, 4, 2),), chain(permute((3, 1, 2)), flatten(), dense()),
         compared=("dense",), target="opencv"),
    Case("permute_twice", ((4, 5),), chain(permute((2, 1), "p1"), permute((2, 1), "p2"), dense(3)),
         compared=("dense",)),
    # ------------------------------------------------------------ identities at inference
    Case("dropout", ((6,),), chain(L.Dropout and (lambda p: L.Dropout(0.5, name=p + "drop")), dense()),
         compared=("drop", "dense"), check=lambda e, p: assert_types(e, p + "drop", ["Dropout"])),
    Case("dropout_image", ((5, 7, 3),), chain(conv(), lambda p: L.Dropout(0.3, name=p + "drop"), conv(2, "conv2")),
         compared=("drop", "conv2")),
    Case("spatial_dropout", ((5, 7, 3),), chain(lambda p: L.SpatialDropout2D(0.4, name=p + "drop"), conv()),
         compared=("conv",)),
    Case("gaussian_noise", ((6,),), chain(lambda p: L.GaussianNoise(0.7, name=p + "noise"), dense()),
         compared=("dense",)),
    Case("gaussian_dropout", ((6,),), chain(lambda p: L.GaussianDropout(0.3, name=p + "noise"), dense()),
         compared=("dense",)),
    Case("alpha_dropout", ((6,),), chain(lambda p: L.AlphaDropout(0.3, name=p + "noise"), dense()),
         compared=("dense",)),
    Case("activity_regularization", ((6,),),
         chain(lambda p: L.ActivityRegularization(l1=0.1, l2=0.2, name=p + "reg"), dense()), compared=("dense",)),
    Case("identity", ((5, 7, 3),), chain(lambda p: L.Identity(name=p + "id"), conv()), compared=("conv",)),
]


def no_layers_for_identities(export, p):
    """Inference identities add no Caffe layer (Dropout keeps Caffe's own, which is one at TEST time)."""
    names = [layer.name for layer in export.net.layer]
    assert not any(n.startswith(p + "noise") or n.startswith(p + "reg") or n.startswith(p + "id") for n in names)


# ---------------------------------------------------------------- keras.ops arithmetic with a scalar
def ops(function):
    def build(x, p):
        y = L.Dense(4, name=p + "dense")(x[0])
        return L.Dense(3, name=p + "after")(function(y))
    return build


OPS_CASES = [
    Case("ops_add", ((6,),), ops(lambda y: y + 3.0), compared=("after",)),
    Case("ops_radd", ((6,),), ops(lambda y: 3.0 + y), compared=("after",)),
    Case("ops_sub", ((6,),), ops(lambda y: y - 1.5), compared=("after",)),
    Case("ops_rsub", ((6,),), ops(lambda y: 1.5 - y), compared=("after",)),
    Case("ops_mul", ((6,),), ops(lambda y: y * -2.0), compared=("after",)),
    Case("ops_rmul", ((6,),), ops(lambda y: 0.5 * y), compared=("after",)),
    Case("ops_div", ((6,),), ops(lambda y: y / 4.0), compared=("after",)),
    Case("ops_chain", ((6,),), ops(lambda y: y * ((y + 3.0) / 6.0) - 1.0), compared=("after",)),
]

ALL = CASES + OPS_CASES


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(ALL, tmp_path_factory, "core")


@pytest.mark.parametrize("case", params(ALL))
def test_core(batch, case):
    assert_case(batch, case)


def test_all_cases_convert_as_one_net(batch):
    batch.check_all_batches()


def test_identities_add_no_caffe_layer(batch):
    for case in CASES:
        if case.id in ("gaussian_noise", "gaussian_dropout", "alpha_dropout", "activity_regularization", "identity"):
            no_layers_for_identities(batch.result(case).export, case.id + "__")


def test_dense_after_flatten_reorders_rows_not_values(batch):
    """Caffe 1.0 has no Permute: Dense after a channels-last Flatten reads rows in (C, H, W) order instead."""
    case = next(c for c in CASES if c.id == "flatten_image_dense")
    export = batch.result(case).export
    assert_types(export, "flatten_image_dense__", ["Flatten", "InnerProduct"])
    assert any(r.keras_layer == "flatten_image_dense__dense" and "reordered" in r.note for r in export.report)


def test_input_layer_becomes_caffe_input(tmp_path):
    """InputLayer: one Caffe Input with Keras' shape in NCHW order, named after the Keras input."""
    from ._harness import convert_files

    image = keras.Input((9, 11, 3), name="image")
    vector = keras.Input((6,), name="vector")
    model = keras.Model([image, vector], [L.Conv2D(2, 3, name="c")(image), L.Dense(2, name="d")(vector)])
    export, net = convert_files(model, tmp_path)
    inputs = [layer for layer in export.net.layer if layer.type == "Input"]
    assert [layer.name for layer in inputs] == ["image", "vector"]
    assert list(layer_named(export, "image").input_param.shape[0].dim) == [1, 3, 9, 11]
    assert list(layer_named(export, "vector").input_param.shape[0].dim) == [1, 6]
    assert export.tensor_map.inputs == ["image", "vector"]
