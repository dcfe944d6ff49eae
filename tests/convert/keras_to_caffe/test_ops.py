"""keras.ops calls against real Caffe: elementwise math, broadcasting, reductions, shapes, slicing, products.

Each case's ops run inside a Lambda named with the case's prefix: the Lambda
is traced and its ops inlined, and its output (the ops' result) is compared.
A functional model mixing many ops directly (every op a node of the model's
own graph, each compared on its own) and the refusals follow.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from keraffe.convert.keras_to_caffe import convert_model
from keraffe.errors import ConversionError, UnsupportedLayerError

from ._harness import Batch, Case, assert_case, assert_verified, caffe_types, params, randomize

pytestmark = pytest.mark.pycaffe

L = keras.layers
IMAGE = ((5, 7, 3),)
SEQUENCE = ((6, 4),)
VECTOR = ((6,),)
RNG = np.random.default_rng(7)
CHANNEL = RNG.standard_normal(3).astype(np.float32)
ROWS = RNG.standard_normal((6, 1)).astype(np.float32)
FULL = RNG.standard_normal((5, 7, 3)).astype(np.float32)
MATRIX = RNG.standard_normal((4, 5)).astype(np.float32)
PIXEL_MATRIX = RNG.standard_normal((3, 2)).astype(np.float32)
TIME_MATRIX = RNG.standard_normal((6, 2)).astype(np.float32)
VECTOR_MATRIX = RNG.standard_normal((6, 3)).astype(np.float32)


def op(function, *extra_shapes):
    """A case build: ``function`` of the inputs inside a Lambda named p + "op"."""
    def build(x, p):
        return L.Lambda(lambda tensors: function(*tensors) if isinstance(tensors, list) else function(tensors),
                        name=p + "op")(x if len(x) > 1 else x[0])
    return build


def case(name, function, shapes=IMAGE, **kwargs):
    return Case(name, shapes, op(function), compared=("op",), **kwargs)


def uses(*types):
    def check(export, p):
        assert set(types) <= set(caffe_types(export, p)), caffe_types(export, p)
    return check


def positive(t):
    return ops.abs(t) + 0.5


CASES = [
    # ------------------------------------------------------------ arithmetic with constants
    case("add_scalar", lambda t: t + 1.5, check=uses("Power")),
    case("scalar_minus", lambda t: 2.0 - t),
    case("times_scalar", lambda t: t * -3.0),
    case("over_scalar", lambda t: t / 4.0),
    case("scalar_over", lambda t: 3.0 / positive(t)),
    case("plus_channel_constant", lambda t: t + CHANNEL, check=uses("Scale")),
    case("times_full_constant", lambda t: t * FULL),
    case("rows_constant", lambda t: t * ROWS, shapes=SEQUENCE),
    # ------------------------------------------------------------ two tensors, broadcast
    case("add_same_shape", lambda a, b: a + b, shapes=IMAGE * 2),
    case("add_row_broadcast", lambda a, b: a + b, shapes=((5, 7, 3), (5, 1, 3)), check=uses("Bias")),
    case("times_column_broadcast", lambda a, b: a * b, shapes=((5, 7, 3), (1, 7, 3))),
    case("add_both_broadcast", lambda a, b: a + b, shapes=((1, 7, 3), (5, 1, 3)), check=uses("Tile")),
    case("small_minus_big", lambda a, b: a - b, shapes=((5, 1, 3), (5, 7, 3))),
    case("big_minus_small", lambda a, b: a - b, shapes=((5, 7, 3), (1, 1, 3))),
    case("divide_tensors", lambda a, b: a / positive(b), shapes=IMAGE * 2),
    case("maximum_tensors", lambda a, b: ops.maximum(a, b), shapes=IMAGE * 2),
    case("minimum_broadcast", lambda a, b: ops.minimum(a, b), shapes=((5, 7, 3), (5, 7, 1))),
    case("maximum_constant", lambda t: ops.maximum(t, 0.25)),
    case("minimum_constant", lambda t: ops.minimum(t, -0.25)),
    # ------------------------------------------------------------ elementwise functions
    case("abs", ops.abs, check=uses("AbsVal")),
    case("negative", ops.negative),
    case("square", ops.square),
    case("sqrt", lambda t: ops.sqrt(positive(t))),
    case("reciprocal", lambda t: ops.reciprocal(positive(t))),
    case("exp", ops.exp),
    case("log", lambda t: ops.log(positive(t))),
    case("power_constant", lambda t: ops.power(positive(t), 1.5)),
    case("power_integer", lambda t: ops.power(t, 3)),
    case("constant_power", lambda t: ops.power(2.0, t)),
    case("clip", lambda t: ops.clip(t, -0.5, 0.7)),
    case("clip_zero_six", lambda t: ops.clip(t * 4.0, 0.0, 6.0)),
    case("cast_float", lambda t: ops.cast(t, "float32") * 2.0),
    *[case(f"activation_{name}", getattr(ops, name)) for name in (
        "relu", "relu6", "sigmoid", "tanh", "softplus", "softsign", "silu", "hard_sigmoid", "hard_silu", "selu")],
    case("activation_elu_alpha", lambda t: ops.elu(t, alpha=0.5)),
    case("activation_leaky_relu", lambda t: ops.leaky_relu(t, negative_slope=0.1)),
    case("activation_gelu_tanh", lambda t: ops.gelu(t, approximate=True)),
    case("softmax_channels", lambda t: ops.softmax(t, axis=-1)),
    case("softmax_rows", lambda t: ops.softmax(t, axis=1)),
    case("softmax_sequence", lambda t: ops.softmax(t, axis=-1), shapes=SEQUENCE),
    # ------------------------------------------------------------ reductions
    case("mean_spatial_keepdims", lambda t: ops.mean(t, axis=(1, 2), keepdims=True), check=uses("Pooling")),
    case("mean_channels", lambda t: ops.mean(t, axis=-1)),
    case("sum_rows", lambda t: ops.sum(t, axis=1)),
    case("max_channels_keepdims", lambda t: ops.max(t, axis=-1, keepdims=True)),
    case("min_rows_and_channels", lambda t: ops.min(t, axis=(1, 3))),
    case("mean_all_but_batch", lambda t: ops.mean(t, axis=(1, 2, 3))),
    case("sum_sequence_time", lambda t: ops.sum(t, axis=1), shapes=SEQUENCE),
    case("mean_sequence_features", lambda t: ops.mean(t, axis=-1), shapes=SEQUENCE, check=uses("Reduction")),
    case("max_sequence_features", lambda t: ops.max(t, axis=2, keepdims=True), shapes=SEQUENCE),
    # ------------------------------------------------------------ shapes
    case("transpose_sequence_then_matmul", lambda t: ops.matmul(ops.transpose(t, (0, 2, 1)), TIME_MATRIX),
         shapes=SEQUENCE),
    case("transpose_image", lambda t: ops.transpose(t, (0, 2, 1, 3)) * 2.0),
    case("reshape", lambda t: ops.reshape(t, (-1, 2, 3)), shapes=VECTOR),
    case("reshape_sequence", lambda t: ops.reshape(t, (-1, 24)), shapes=SEQUENCE),
    case("expand_then_squeeze", lambda t: ops.squeeze(ops.expand_dims(t, 1) + 1.0, axis=1), shapes=SEQUENCE),
    case("expand_dims", lambda t: ops.expand_dims(t, -1) * 2.0, shapes=SEQUENCE),
    case("concatenate_channels", lambda a, b: ops.concatenate([a, b], axis=-1), shapes=IMAGE * 2),
    case("concatenate_rows", lambda a, b: ops.concatenate([a, b * 2.0], axis=1), shapes=IMAGE * 2),
    case("stack", lambda a, b: ops.stack([a, b], axis=1), shapes=SEQUENCE * 2),
    case("stack_last", lambda a, b: ops.stack([a, b], axis=-1), shapes=IMAGE * 2),
    # ------------------------------------------------------------ slicing
    case("slice_rows", lambda t: t[:, 1:4], check=uses("Slice")),
    case("slice_steps", lambda t: t[:, ::2, 1::3]),
    case("slice_steps_fitting", lambda t: t[:, 1::2, ::3], shapes=((5, 6, 3),)),
    case("slice_index", lambda t: t[..., 1]),
    case("slice_mixed", lambda t: t[:, 1:-1, 2:, :2]),
    case("slice_new_axis", lambda t: t[:, None, :, 0], shapes=SEQUENCE),
    case("split_channels", lambda t: ops.split(t, 3, axis=-1)[1] * 2.0),
    case("split_sequence", lambda t: ops.concatenate(ops.split(t, [2, 5], axis=1)[::-1], axis=1), shapes=SEQUENCE),
    case("pad_zeros_output", lambda t: ops.pad(t, ((0, 0), (1, 2), (0, 1), (0, 0)))),
    # ------------------------------------------------------------ products by a constant
    case("matmul_sequence", lambda t: ops.matmul(t, MATRIX), shapes=SEQUENCE, check=uses("InnerProduct")),
    case("dot_image_pixels", lambda t: ops.dot(t, PIXEL_MATRIX), check=uses("Convolution")),
    case("matmul_vector", lambda t: ops.matmul(t, VECTOR_MATRIX), shapes=VECTOR),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory, "ops")


@pytest.mark.parametrize("case", params(CASES))
def test_op(batch, case):
    assert_case(batch, case)


def test_all_cases_convert_as_one_net(batch):
    batch.check_all_batches()


def test_a_model_mixing_many_ops(tmp_path):
    """A functional graph of raw keras.ops (each op a node of the model itself): every op's blob is compared."""
    weight = np.random.default_rng(3).standard_normal((24, 7)).astype(np.float32)
    x = keras.Input((6, 5, 4), name="x")
    y = keras.Input((6, 5, 1), name="y")
    a = ops.relu(x) * 0.5 + 1.0
    gate = ops.sigmoid(ops.mean(a, axis=(1, 2), keepdims=True))
    b = a * gate - y
    c = ops.transpose(b, (0, 2, 1, 3))
    d = ops.reshape(c, (-1, 5, 24))
    e = ops.matmul(d, weight)
    f = ops.concatenate([e, ops.square(e), ops.abs(e[:, :, :3])], axis=-1)
    g = ops.max(f, axis=1) + ops.min(f, axis=1)
    h = ops.clip(g, -2.0, 2.0) - ops.sqrt(ops.abs(g) + 1.0) / 3.0
    left, right = ops.split(h, [5], axis=-1)
    out = ops.softmax(ops.stack([ops.sum(left, axis=-1), ops.mean(right, axis=-1)], axis=-1))
    model = keras.Model([x, y], [out, ops.exp(-ops.square(b[:, ::2]))], name="mixed_ops")
    randomize(model)
    export, report = assert_verified(model, tmp_path)
    compared = {r.keras_layer for r in report.layers}
    kinds = {type(op).__name__ for op in model.operations if op.name in compared}
    assert {"Mean", "Reshape", "Matmul", "Concatenate", "Max", "Min", "Clip", "Split", "Stack",
            "Softmax", "GetItem", "Square", "Sqrt"} <= kinds, kinds
    assert len(compared) >= 25


# ---------------------------------------------------------------- refused, with the reason


def refusal(function, shapes=((5, 7, 3),)):
    inputs = [keras.Input(s) for s in shapes]
    model = keras.Model(inputs, function(*inputs), name="refused")
    with pytest.raises((ConversionError, UnsupportedLayerError)) as caught:
        convert_model(model)
    return str(caught.value)


def test_products_of_two_activations_are_refused():
    message = refusal(lambda q, k: ops.matmul(q, ops.transpose(k, (0, 2, 1))), ((4, 6), (4, 6)))
    assert "a product of two activations (attention's scores, say) has no Caffe 1.0 layer" in message
    message = refusal(lambda q, k: ops.einsum("bqd,bkd->bqk", q, k), ((4, 6), (4, 6)))
    assert "ops.Einsum (einsum is not converted: a product of two activations" in message


def test_erf_gelu_and_data_dependent_ops_are_listed_together():
    message = refusal(lambda t: [ops.erf(t), ops.gelu(t, approximate=False), ops.where(t > 0, t, 0.0) * 2.0,
                                 ops.floor(t)])
    assert "ops.Erf (Caffe has no erf)" in message
    assert "ops.Floor (Caffe has no rounding)" in message
    assert "ops.Where (a data-dependent choice)" in message
    assert "activation 'gelu' has no exact Caffe form" in message


def test_ops_across_the_batch_axis_are_refused():
    assert "a reduction over the batch axis has no Caffe form" in refusal(lambda t: ops.sum(t, axis=0))
    assert "a transpose that moves the batch axis" in refusal(lambda t: ops.transpose(t, (1, 0, 2, 3)))
    assert "a reduction over the batch axis has no Caffe form" in refusal(lambda t: ops.mean(t))
