"""keraffe.host_memory: variables take one copy of an array, and writers see variables without a copy.

The memory saved is measured by bench/caffe2keras.py; these tests hold the
values and the sharing (or not) of memory, which is what makes it safe.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keraffe.host_memory import ALIGNMENT, aligned_copy, host_view, initial_value, weight_array

pytestmark = pytest.mark.backends


@pytest.mark.parametrize("shape", [(), (0, 3), (7,), (5, 3, 2), (1000, 257)])
def test_aligned_copy_is_an_aligned_independent_copy(shape):
    source = np.random.default_rng(0).normal(size=shape).astype("float32")
    copy = aligned_copy(source)
    assert copy.ctypes.data % ALIGNMENT == 0 or not source.size  # an empty array has no data to align
    assert copy.flags.c_contiguous and copy.dtype == source.dtype and copy.shape == source.shape
    np.testing.assert_array_equal(copy, source)
    if source.size:
        assert not np.shares_memory(copy, source)


def test_aligned_copy_reads_strided_views_and_casts():
    source = np.arange(24, dtype="float64").reshape(2, 3, 4).transpose(2, 0, 1)
    copy = aligned_copy(source, "float32")
    assert copy.dtype == np.float32 and copy.flags.c_contiguous
    np.testing.assert_array_equal(copy, source.astype("float32"))


def test_aligned_copy_refuses_a_cast_that_loses_kind():
    with pytest.raises(TypeError):
        aligned_copy(np.ones(3, "float32"), "int32")


def _variable_from(array, dtype="float32"):
    return keras.Variable(initializer=lambda shape, dtype: initial_value(array, dtype), shape=array.shape, dtype=dtype)


@pytest.mark.parametrize("shape", [(3,), (64, 33), (2, 3, 3, 5)])
def test_a_variable_from_initial_value_holds_the_array_and_not_its_memory(shape):
    source = np.random.default_rng(1).normal(size=shape).astype("float32")
    expected = source.copy()
    variable = _variable_from(source)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), expected)
    source[...] = 0  # the caller's array is its own: the variable must not change with it
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), expected)
    variable.assign_add(keras.ops.ones(shape))  # nor the other way round
    np.testing.assert_array_equal(source, 0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected + 1)


def test_initial_value_casts_to_the_variable_dtype():
    variable = _variable_from(np.arange(6, dtype="float64").reshape(2, 3), dtype="float16")
    assert keras.backend.standardize_dtype(variable.dtype) == "float16"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), np.arange(6).reshape(2, 3))


def test_a_layer_built_on_adopted_variables_computes_like_one_given_its_weights():
    rng = np.random.default_rng(2)
    kernel, bias = rng.normal(size=(40, 30)).astype("float32"), rng.normal(size=30).astype("float32")
    x = rng.normal(size=(4, 40)).astype("float32")
    adopted = keras.layers.Dense(30)
    adopted.build((None, 40))
    reference = keras.layers.Dense(30)
    reference.build((None, 40))
    reference.set_weights([kernel, bias])
    adopted.kernel.assign(_variable_from(kernel))
    adopted.bias.assign(_variable_from(bias))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(adopted(x)), keras.ops.convert_to_numpy(reference(x)),
                               rtol=1e-6, atol=1e-6)


def test_host_view_shows_the_variable_without_copying_it():
    source = np.random.default_rng(3).normal(size=(128, 64)).astype("float32")
    variable = _variable_from(source)
    first, second = host_view(variable), host_view(variable)
    np.testing.assert_array_equal(first, source)
    # Two views of one CPU variable are one memory: neither was copied.
    assert np.shares_memory(first, second)
    variable.assign(keras.ops.zeros((128, 64)))
    np.testing.assert_array_equal(host_view(variable), 0)

    with pytest.raises(ValueError, match="read-only"):
        first[0, 0] = 1.0  # a view must never become a way to write into the model


def test_weight_array_shows_a_float32_variable_and_copies_anything_else_as_float32():
    source = np.random.default_rng(6).normal(size=(9, 4)).astype("float32")
    variable = _variable_from(source)
    shown = weight_array(variable)
    assert shown.dtype == np.float32 and not shown.flags.writeable
    # A snapshot: TensorFlow's and JAX's views are already; PyTorch's would follow the variable, so it is copied.
    assert np.shares_memory(shown, host_view(variable)) == (keras.backend.backend() != "torch")
    np.testing.assert_array_equal(shown, source)
    half = weight_array(_variable_from(source, dtype="float16"))
    assert half.dtype == np.float32 and not half.flags.writeable
    np.testing.assert_array_equal(half, source.astype("float16").astype("float32"))
    plain = weight_array(np.arange(3, dtype="int64"))
    assert plain.dtype == np.float32 and not plain.flags.writeable
    np.testing.assert_array_equal(plain, [0, 1, 2])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_variables_of_other_dtypes_are_created_and_shown(dtype):
    """bfloat16 has no DLPack form in NumPy: Keras' own path creates it, and reading it back copies it."""
    source = np.arange(12, dtype="float32").reshape(3, 4) / 4
    variable = _variable_from(source, dtype=dtype)
    assert keras.backend.standardize_dtype(variable.dtype) == dtype
    np.testing.assert_array_equal(np.asarray(host_view(variable), dtype="float32"), source)
    np.testing.assert_array_equal(weight_array(variable), source)


def test_weight_array_is_a_snapshot_that_later_training_does_not_change():
    source = np.random.default_rng(7).normal(size=(6, 5)).astype("float32")
    variable = _variable_from(source)
    kept = weight_array(variable)
    variable.assign(keras.ops.zeros((6, 5)))
    variable.assign_add(keras.ops.ones((6, 5)))
    np.testing.assert_array_equal(kept, source)
