"""prune_low_magnitude and strip_pruning on every kind of input, and their errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keraffe import pruning
from keraffe.errors import KeraffeError, PruningError

from ._helpers import compile_for_test, numpy, random_classification, small_conv_model

pytestmark = pytest.mark.backends


def test_sequential_model_is_copied_and_the_original_keeps_training_free():
    model = keras.Sequential(
        [keras.Input((8, 8, 2)), keras.layers.Conv2D(8, 3, name="conv"), keras.layers.Flatten(),
         keras.layers.Dense(4, name="dense")]
    )
    original_weights = [w.copy() for w in model.get_weights()]
    pruned = pruning.prune_low_magnitude(
        model, pruning_schedule=pruning.ConstantSparsity(0.5, begin_step=0, frequency=1)
    )
    assert isinstance(pruned, keras.Sequential)
    assert [w.layer.name for w in pruning.pruning_wrappers(pruned)] == ["conv", "dense"]
    x, y = random_classification()
    np.testing.assert_allclose(numpy(pruned(x)), numpy(model(x)), rtol=1e-5, atol=1e-5)
    compile_for_test(pruned).fit(x, y, epochs=1, batch_size=16, verbose=0)
    for now, before in zip(model.get_weights(), original_weights):
        np.testing.assert_array_equal(now, before)
    assert pruning.layer_sparsities(pruned) == {"conv": 0.5, "dense": 0.5}


def test_functional_model_with_nested_model_and_shared_layer():
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6, name="inner_dense")], name="inner")
    shared = keras.layers.Dense(6, name="shared")
    inputs = keras.Input((6,))
    hidden = shared(inner(inputs))
    outputs = shared(hidden)
    model = keras.Model(inputs, outputs)
    pruned = pruning.prune_low_magnitude(model, pruning_schedule=pruning.ConstantSparsity(0.5, 0))
    names = sorted(w.layer.name for w in pruning.pruning_wrappers(pruned))
    assert names == ["inner_dense", "shared"]  # the shared layer is wrapped once, reused twice
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(numpy(pruned(x)), numpy(model(x)), rtol=1e-5, atol=1e-5)


def test_single_layer_and_list_are_wrapped_in_place():
    dense = keras.layers.Dense(3)
    wrapped = pruning.prune_low_magnitude(dense, block_size=[2, 1])
    assert isinstance(wrapped, pruning.PruneLowMagnitude)
    assert wrapped.layer is dense
    assert wrapped.block_size == (2, 1)
    assert pruning.prune_low_magnitude(wrapped) is wrapped
    layers = pruning.prune_low_magnitude([keras.layers.Dense(2), keras.layers.Conv2D(2, 1)])
    assert [type(w.layer).__name__ for w in layers] == ["Dense", "Conv2D"]
    # A wrapped layer builds into a model like any layer.
    model = keras.Sequential([keras.Input((4,)), pruning.prune_low_magnitude(keras.layers.Dense(8)),
                              keras.layers.Dense(1)])
    assert model.output_shape == (None, 1)
    assert len(pruning.pruning_wrappers(model)[0].masks) == 1


def test_strip_pruning_leaves_plain_keras_layers_with_zeros_baked_in():
    model = small_conv_model()
    pruned = pruning.prune_low_magnitude(model, pruning_schedule=pruning.ConstantSparsity(0.7, 0))
    x, y = random_classification()
    compile_for_test(pruned).fit(x, y, epochs=1, batch_size=32, verbose=0)
    stripped = pruning.strip_pruning(pruned)
    assert [type(layer).__name__ for layer in stripped.layers] == ["InputLayer", "Conv2D", "Flatten", "Dense"]
    assert not any("mask" in v.path or "pruning_step" in v.path for v in stripped.weights)
    np.testing.assert_allclose(numpy(stripped(x)), numpy(pruned(x)), rtol=1e-5, atol=1e-5)
    kernel = stripped.get_layer("dense").get_weights()[0]
    assert int((kernel == 0).sum()) == kernel.size - round(kernel.size * 0.3)
    single = pruning.strip_pruning(pruning.pruning_wrappers(pruned)[0])
    assert type(single) is keras.layers.Conv2D


def test_m_by_n_leaves_layers_with_too_few_input_channels_dense_with_a_warning():
    model = small_conv_model(input_shape=(8, 8, 2))  # conv has 2 input channels: not whole groups of 4
    with pytest.warns(UserWarning, match=r"'conv'.*2 input channels"):
        pruned = pruning.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))
    assert [w.layer.name for w in pruning.pruning_wrappers(pruned)] == ["dense"]
    rows = {row.name: row.status for row in pruning.summary(pruned).layers}
    assert rows["conv"] == "prunable, not wrapped"


def test_m_by_n_on_a_single_unfit_layer_is_an_error_naming_the_layer():
    wrapper = pruning.prune_low_magnitude(keras.layers.Dense(4, name="head"), sparsity_m_by_n=(2, 4))
    with pytest.raises(PruningError, match=r"'head/kernel'.*length 6"):
        wrapper.build((None, 6))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: pruning.prune_low_magnitude("model.keras"), "`to_prune`"),
        (lambda: pruning.prune_low_magnitude(keras.layers.Dense(2), pruning_schedule=0.5),
         "`pruning_schedule`"),
        (lambda: pruning.prune_low_magnitude(keras.layers.Dense(2), pruning_policy="xnnpack"),
         "`pruning_policy`"),
        (lambda: pruning.prune_low_magnitude(keras.layers.Dense(2), block_pooling_type="SUM"),
         "`block_pooling_type`"),
        (lambda: pruning.prune_low_magnitude(keras.layers.Dense(2), sparsity_m_by_n=(4, 2)),
         "`sparsity_m_by_n`"),
        (lambda: pruning.prune_low_magnitude(keras.layers.BatchNormalization(name="bn")),
         "no pruning rule for BatchNormalization"),
        (lambda: pruning.prune_low_magnitude(Subclassed()), "subclassed model Subclassed"),
        (lambda: pruning.prune_low_magnitude(keras.Sequential([keras.layers.Dense(2)])), "not built"),
        (lambda: pruning.strip_pruning([1, 2]), "`model`"),
        (lambda: pruning.PruneLowMagnitude("dense"), "`layer`"),
    ],
)
def test_user_mistakes_raise_pruning_error_with_argument_and_value(call, fragment):
    with pytest.raises(PruningError) as raised:
        call()
    assert fragment in str(raised.value)
    assert isinstance(raised.value, KeraffeError)


def test_quantized_layer_passes_through_with_reason():
    dense = keras.layers.Dense(4, name="q")
    dense.build((None, 8))
    dense.quantize("int8")
    assert pruning.prunable.why_not_prunable(dense).startswith("quantized (int8)")
    with pytest.raises(PruningError, match="quantized"):
        pruning.PruneLowMagnitude(dense)
