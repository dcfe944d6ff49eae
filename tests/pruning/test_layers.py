"""Every prunable layer type: its kernels reach the target, and the mask acts in the forward pass."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keraffe import pruning

from ._helpers import numpy

pytestmark = pytest.mark.backends

TARGET = 0.5

# (layer factory, input shape without batch, names of the weights that must be pruned)
LAYERS = {
    "Dense": (lambda: keras.layers.Dense(6), (10,), ["kernel"]),
    "Conv1D": (lambda: keras.layers.Conv1D(6, 3), (9, 4), ["kernel"]),
    "Conv2D": (lambda: keras.layers.Conv2D(6, 3), (7, 7, 4), ["kernel"]),
    "Conv3D": (lambda: keras.layers.Conv3D(4, 2), (4, 4, 4, 4), ["kernel"]),
    "Conv2DTranspose": (lambda: keras.layers.Conv2DTranspose(6, 3, strides=2), (4, 4, 8), ["kernel"]),
    "DepthwiseConv2D": (lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2), (7, 7, 4), ["kernel"]),
    "SeparableConv2D": (
        lambda: keras.layers.SeparableConv2D(8, 3, depth_multiplier=2),
        (7, 7, 4),
        ["depthwise_kernel", "pointwise_kernel"],
    ),
    "Embedding": (lambda: keras.layers.Embedding(20, 8), (5,), ["embeddings"]),
}


def inputs_for(name, shape, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    if name == "Embedding":
        return rng.integers(0, 20, size=(batch, *shape)).astype("int32")
    return rng.normal(size=(batch, *shape)).astype("float32")


def one_layer_model(name):
    factory, shape, _ = LAYERS[name]
    inputs = keras.Input(shape, dtype="int32" if name == "Embedding" else "float32")
    outputs = factory()(inputs)
    return keras.Model(inputs, keras.layers.Flatten()(outputs))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_kernels_reach_target_and_outputs_match_stripped(name):
    model = one_layer_model(name)
    pruned = pruning.prune_low_magnitude(
        model, pruning_schedule=pruning.ConstantSparsity(TARGET, begin_step=0, frequency=1)
    )
    wrapper = pruning.pruning_wrappers(pruned)[0]
    assert sorted(v.name for v in wrapper.pruned_weights) == sorted(LAYERS[name][2])

    x = inputs_for(name, LAYERS[name][1])
    y = np.random.default_rng(1).normal(size=pruned.output_shape[1:]).astype("float32")
    pruned.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    pruned.fit(x, np.broadcast_to(y, (len(x), *y.shape)), batch_size=8, epochs=1, verbose=0,
               callbacks=[pruning.UpdatePruningStep()])

    masked = dict(zip([v.name for v in wrapper.layer.weights], wrapper.masked_weight_values()))
    for weight_name in LAYERS[name][2]:
        size = masked[weight_name].size
        assert int((masked[weight_name] == 0).sum()) == size - round(size * (1 - TARGET))
    # Biases are never pruned.
    assert all(v.name not in ("bias", "depthwise_bias") for v in wrapper.pruned_weights)

    stripped = pruning.strip_pruning(pruned)
    assert not pruning.pruning_wrappers(stripped)
    np.testing.assert_allclose(numpy(stripped(x)), numpy(pruned(x)), rtol=1e-5, atol=1e-5)
    stripped_layer = stripped.layers[1]
    for weight_name in LAYERS[name][2]:
        stripped_value = numpy(next(v for v in stripped_layer.weights if v.name == weight_name))
        np.testing.assert_array_equal(stripped_value, masked[weight_name])


def test_pruned_weights_get_zero_gradient_and_optimizer_cannot_revive_them():
    """Adam's momentum keeps moving a weight after its gradient stops; the mask must still win."""
    model = one_layer_model("Dense")
    # Prune once, at step 3, after Adam has built up momentum on every weight.
    pruned = pruning.prune_low_magnitude(
        model, pruning_schedule=pruning.ConstantSparsity(0.6, begin_step=3, end_step=3)
    )
    wrapper = pruning.pruning_wrappers(pruned)[0]
    x = inputs_for("Dense", (10,), batch=32)
    y = np.random.default_rng(2).normal(size=(32, 6)).astype("float32")
    pruned.compile(optimizer=keras.optimizers.Adam(5e-2), loss="mse")
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0)  # steps 0-3: the mask is set at step 3
    mask_after_pruning = numpy(wrapper.masks[0]).copy()
    kernel_after_pruning = numpy(wrapper.pruned_weights[0]).copy()
    pruned.fit(x, y, batch_size=8, epochs=3, verbose=0)  # 12 more steps, none prunes

    mask_now = numpy(wrapper.masks[0])
    kernel_now = numpy(wrapper.pruned_weights[0])
    pruned_positions = mask_after_pruning == 0
    assert int(pruned_positions.sum()) == 36
    np.testing.assert_array_equal(mask_now, mask_after_pruning)
    # The stored values did move (momentum), but the network never sees them.
    assert np.abs(kernel_now - kernel_after_pruning)[pruned_positions].max() > 0
    effective = pruning.strip_pruning(pruned).layers[1].get_weights()[0]
    assert (effective[pruned_positions] == 0).all()
    np.testing.assert_allclose(numpy(pruned(x)), x @ effective + pruned.layers[1].layer.get_weights()[1],
                               rtol=1e-4, atol=1e-4)


def test_unsupported_layers_pass_through_and_summary_says_so():
    inputs = keras.Input((6, 6, 3))
    hidden = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = keras.layers.Flatten()(hidden)
    outputs = keras.layers.Dense(2, name="dense")(hidden)
    model = keras.Model(inputs, outputs)
    pruned = pruning.prune_low_magnitude(model)
    wrapped = {w.layer.name for w in pruning.pruning_wrappers(pruned)}
    assert wrapped == {"conv", "dense"}
    batch_norm = next(layer for layer in pruned.layers if layer.name == "bn")
    assert isinstance(batch_norm, keras.layers.BatchNormalization)
    for copied, original in zip(batch_norm.get_weights(), model.get_layer("bn").get_weights()):
        np.testing.assert_array_equal(copied, original)
    rows = {row.name: row for row in pruning.summary(pruned).layers}
    assert rows["bn"].status == "passed through: no pruning rule for BatchNormalization"
    assert rows["bn"].prunable_parameters == 0
    assert rows["conv"].status.startswith("pruning:")
