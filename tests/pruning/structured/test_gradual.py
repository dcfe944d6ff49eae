"""GradualChannelPruning: masks grow along the cubic ramp, then removal is exact."""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.errors import PruningError

pytestmark = pytest.mark.backends


def small_cnn():
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)          # 'valid': folds stay exact
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 1, name="conv2")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def test_gradual_pruning_masks_during_fit_and_removes_exactly_at_the_end():
    import keras

    from keraffe.pruning.structured import GradualChannelPruning

    model = small_cnn()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = GradualChannelPruning(0.5, start_epoch=0, end_epoch=2)
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[callback])

    assert [epoch for epoch, _, _ in callback.history] == [0, 1, 2]
    ratios = [ratio for _, ratio, _ in callback.history]
    np.testing.assert_allclose(ratios, [0.5 * (1 - (1 - t) ** 3) for t in (1 / 3, 2 / 3, 1)])
    masked = [count for _, _, count in callback.history]
    assert masked == sorted(masked) and masked[-1] == 8  # 4 of conv1's 8, 4 of conv2's 8

    kernel = model.get_layer("conv1").get_weights()[0]
    zero = np.all(kernel == 0, axis=(0, 1, 2))
    assert zero.sum() == 4  # the optimizer's momentum did not regrow the masked filters
    pruned = callback.pruned_model
    assert pruned.get_layer("conv1").get_weights()[0].shape[-1] == 4
    assert pruned.get_layer("conv2").get_weights()[0].shape == (1, 1, 4, 4)
    assert callback.plan.macs_after < 0.5 * callback.plan.macs_before
    full = np.asarray(model.predict(x, verbose=0))
    small = np.asarray(pruned.predict(x, verbose=0))
    assert np.max(np.abs(full - small)) / np.max(np.abs(full)) < 1e-5


def test_gradual_pruning_rejects_bad_epochs():
    from keraffe.pruning.structured import GradualChannelPruning

    with pytest.raises(PruningError, match="`end_epoch` \\(1\\) comes before `start_epoch` \\(2\\)"):
        GradualChannelPruning(0.5, start_epoch=2, end_epoch=1)
    with pytest.raises(PruningError, match="`start_epoch` must be a non-negative int, received -1"):
        GradualChannelPruning(0.5, start_epoch=-1)
    with pytest.raises(PruningError, match="`ratio`"):
        GradualChannelPruning(2.0)
