"""m:n and block sparsity through training: every group and every block of the trained kernels."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keraffe import pruning

from ._helpers import numpy

pytestmark = pytest.mark.backends


def structured_model():
    """Dense, Conv2D and Conv2DTranspose, each with input channels in multiples of 4."""
    inputs = keras.Input((6, 6, 4))
    hidden = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    hidden = keras.layers.Conv2DTranspose(8, 2, strides=2, name="deconv")(hidden)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    outputs = keras.layers.Dense(4, name="dense")(hidden)
    return keras.Model(inputs, outputs)


def train(model, steps=12):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8 * steps, 6, 6, 4)).astype("float32")
    y = rng.normal(size=(8 * steps, 4)).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def effective_kernels(model):
    """(layer name, kernel as the network sees it, input axis) for every pruned kernel."""
    result = []
    for wrapper in pruning.pruning_wrappers(model):
        by_name = dict(zip([v.name for v in wrapper.layer.weights], wrapper.masked_weight_values()))
        axis = -1 if isinstance(wrapper.layer, keras.layers.Conv2DTranspose) else -2
        result.append((wrapper.layer.name, by_name["kernel"], axis))
    return result


def test_two_four_sparsity_holds_in_every_input_channel_group():
    schedule = pruning.ConstantSparsity(0.5, begin_step=2, frequency=3)
    model = pruning.prune_low_magnitude(structured_model(), pruning_schedule=schedule, sparsity_m_by_n=(2, 4))
    train(model)
    kernels = effective_kernels(model)
    assert [name for name, _, _ in kernels] == ["conv", "deconv", "dense"]
    for name, kernel, axis in kernels:
        groups = np.moveaxis(kernel, axis, -1).reshape(-1, 4)
        zeros_per_group = (groups == 0).sum(axis=1)
        assert zeros_per_group.tolist() == [2] * len(groups), name


@pytest.mark.parametrize("pooling", ["AVG", "MAX"])
def test_block_sparsity_zeros_whole_blocks_of_conv_and_dense_kernels(pooling):
    schedule = pruning.ConstantSparsity(0.5, begin_step=2, frequency=3)
    model = pruning.prune_low_magnitude(
        structured_model(), pruning_schedule=schedule, block_size=(4, 2), block_pooling_type=pooling
    )
    train(model)
    for name, kernel, axis in effective_kernels(model):
        output_axis = -2 if axis == -1 else -1
        plane = np.moveaxis(kernel, (axis, output_axis), (-2, -1))  # (..., in, out)
        rows, cols = plane.shape[-2:]
        blocks = plane.reshape(*plane.shape[:-2], rows // 4, 4, cols // 2, 2)
        nonzero_per_block = (blocks != 0).sum(axis=(-3, -1)).ravel()
        # A block is all zeros or (trained float weights being non-zero) all non-zeros.
        assert set(nonzero_per_block.tolist()) == {0, 8}, name
        assert (nonzero_per_block == 0).sum() == len(nonzero_per_block) // 2, name


def test_depthwise_and_separable_kernels_take_m_by_n_along_input_channels():
    inputs = keras.Input((5, 5, 8))
    hidden = keras.layers.DepthwiseConv2D(3, name="depthwise")(inputs)
    outputs = keras.layers.SeparableConv2D(4, 3, name="separable")(hidden)
    model = keras.Model(inputs, keras.layers.Flatten()(outputs))
    pruned = pruning.prune_low_magnitude(model, sparsity_m_by_n=(1, 4))
    x = np.random.default_rng(1).normal(size=(8, 5, 5, 8)).astype("float32")
    pruned(x, training=True)  # one training step of the wrapper: step 0 prunes
    for wrapper in pruning.pruning_wrappers(pruned):
        for variable, mask in zip(wrapper.pruned_weights, wrapper.masks):
            groups = np.moveaxis(numpy(mask), -2, -1).reshape(-1, 4)
            assert (groups == 0).sum(axis=1).tolist() == [1] * len(groups), variable.path
