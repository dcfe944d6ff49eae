"""Importance criteria pick the channels they should, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.errors import PruningError

pytestmark = pytest.mark.backends




def conv_model():
    import keras

    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(6, 1, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x))


def test_l1_and_l2_drop_the_smallest_filters():
    from keraffe.pruning.structured import prune_channels

    model = conv_model()
    kernel, bias = model.get_layer("conv").get_weights()
    kernel = np.ones_like(kernel)
    kernel[..., 1] = 0.1
    kernel[..., 4] = 0.2
    kernel[..., 5] = 0.05
    kernel[0, 0, 0, 2] = 3.0
    model.get_layer("conv").set_weights([kernel, np.zeros_like(bias)])
    for importance in ("l1", "l2"):
        pruned = prune_channels(model, 0.5, importance=importance)
        assert pruned.get_layer("conv").get_weights()[0].shape[-1] == 3
        kept = np.flatnonzero(np.isin(kernel[0, 0, 1], pruned.get_layer("conv").get_weights()[0][0, 0, 1]))
        np.testing.assert_array_equal(kept, [0, 2, 3])


def test_bn_gamma_drops_the_smallest_scales():
    from keraffe.pruning.structured import plan_channels

    model = conv_model()
    bn = model.get_layer("bn")
    gamma, beta, mean, variance = bn.get_weights()
    bn.set_weights([np.array([1.0, 0.01, 2.0, -0.02, 0.5, 0.03], np.float32), beta, mean, variance])
    plan = plan_channels(model, 0.5, importance="bn_gamma")
    group = plan.graph.group_of("conv")
    removed = group.filters["conv"][np.isin(group.channels, plan.removed)]
    np.testing.assert_array_equal(np.sort(removed), [1, 3, 5])


def test_taylor_ranks_by_weight_times_gradient():
    from keraffe.pruning.structured import plan_channels

    model = conv_model()
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., [0, 3]] = 0.0
    bias[[0, 3]] = 0.0
    model.get_layer("conv").set_weights([kernel, bias])
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(16, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, 16))
    before = [w.copy() for w in model.get_weights()]
    plan = plan_channels(model, 0.34, importance="taylor", data=data)
    group = plan.graph.group_of("conv")
    removed = group.filters["conv"][np.isin(group.channels, plan.removed)]
    np.testing.assert_array_equal(np.sort(removed), [0, 3])  # w = 0, so w * dL/dw = 0
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with pytest.raises(PruningError, match="`data=\\(x, y\\)`"):
        plan_channels(model, 0.5, importance="taylor")


def test_callable_importance_and_its_mistakes():
    from keraffe.pruning.structured import plan_channels

    model = conv_model()

    def prefer_high_indices(model, graph, group):
        return np.arange(len(group), dtype=float)

    plan = plan_channels(model, 0.5, importance=prefer_high_indices)
    group = plan.graph.group_of("conv")
    np.testing.assert_array_equal(np.sort(group.filters["conv"][np.isin(group.channels, plan.removed)]), [0, 1, 2])
    with pytest.raises(PruningError, match="returned 2 scores for group 'conv', which has 6 channels"):
        plan_channels(model, 0.5, importance=lambda model, graph, group: np.zeros(2))
