"""A model saved in the middle of pruning reloads with masks, step, schedule and pattern, and goes on."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keraffe import pruning

from ._helpers import compile_for_test, numpy, random_classification, small_conv_model

pytestmark = pytest.mark.backends


def masks_by_layer(model):
    return {w.layer.name: [numpy(m).copy() for m in w.masks] for w in pruning.pruning_wrappers(model)}


def test_save_mid_pruning_reload_and_continue_gives_the_same_masks(tmp_path):
    x, y = random_classification(samples=64)
    schedule = pruning.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=12, frequency=2)
    model = compile_for_test(pruning.prune_low_magnitude(small_conv_model(), pruning_schedule=schedule))
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)  # steps 0-3: part-way
    path = tmp_path / "mid_pruning.keras"
    model.save(path)

    restored = keras.saving.load_model(path)  # safe_mode on; keraffe.pruning is imported
    for name, masks in masks_by_layer(model).items():
        for saved, loaded in zip(masks, masks_by_layer(restored)[name]):
            np.testing.assert_array_equal(loaded, saved)
    restored_wrappers = pruning.pruning_wrappers(restored)
    assert [w.current_step() for w in restored_wrappers] == [3, 3]
    assert all(w.pruning_schedule == schedule for w in restored_wrappers)
    sparsity_mid = pruning.layer_sparsities(restored)
    assert 0.0 < min(sparsity_mid.values()) and max(sparsity_mid.values()) < 0.8

    # Both continue on the same batches; the optimizer state was saved too.
    callbacks = [pruning.UpdatePruningStep()]
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=callbacks)
    restored.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=callbacks)
    assert [w.current_step() for w in restored_wrappers] == [15, 15]
    continued, continued_restored = masks_by_layer(model), masks_by_layer(restored)
    for name in continued:
        for a, b in zip(continued[name], continued_restored[name]):
            np.testing.assert_array_equal(b, a)
    for wrapper in restored_wrappers:
        for mask in wrapper.masks:
            size = int(np.prod(mask.shape))
            assert int((numpy(mask) == 0).sum()) == size - round(size * 0.2)


def test_m_by_n_and_block_settings_survive_save_and_load(tmp_path):
    inputs = keras.Input((4, 4, 8))
    hidden = pruning.prune_low_magnitude(keras.layers.Conv2D(8, 1, name="conv"), sparsity_m_by_n=(2, 4))(inputs)
    hidden = keras.layers.Flatten()(hidden)
    outputs = pruning.prune_low_magnitude(
        keras.layers.Dense(4, name="dense"), block_size=(4, 2), block_pooling_type="MAX"
    )(hidden)
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "patterns.keras")
    restored = keras.saving.load_model(tmp_path / "patterns.keras")
    conv, dense = pruning.pruning_wrappers(restored)
    assert conv.sparsity_m_by_n == (2, 4) and conv.block_size == (1, 1)
    assert dense.block_size == (4, 2) and dense.block_pooling_type == "MAX" and dense.sparsity_m_by_n is None
    assert conv.get_config()["sparsity_m_by_n"] == [2, 4]


def test_stripped_model_reloads_as_plain_keras(tmp_path):
    pruned = pruning.prune_low_magnitude(small_conv_model(), pruning_schedule=pruning.ConstantSparsity(0.5, 0))
    x, y = random_classification(samples=32)
    compile_for_test(pruned).fit(x, y, batch_size=16, epochs=1, verbose=0)
    stripped = pruning.strip_pruning(pruned)
    stripped.save(tmp_path / "stripped.keras")
    reloaded = keras.saving.load_model(tmp_path / "stripped.keras")
    assert "PruneLowMagnitude" not in (tmp_path / "stripped.keras").read_bytes().decode("latin-1")
    np.testing.assert_allclose(numpy(reloaded(x)), numpy(pruned(x)), rtol=1e-5, atol=1e-5)
