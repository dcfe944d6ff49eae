"""prune_channels: smaller layers, the right weights in them, exact where the removed channels were zero."""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.errors import PruningError
from tests.pruning.structured import _models

pytestmark = pytest.mark.backends


def predict(model, x):
    return np.asarray(model.predict(x, verbose=0))


def max_rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))


def test_pruning_all_zero_channels_leaves_outputs_unchanged():
    from keraffe.pruning.structured import plan_channels

    model = _models.residual_concat_model()
    bn = model.get_layer("stem_bn")
    gamma, _, _, variance = bn.get_weights()
    bn.set_weights([gamma, np.full(8, 0.5, np.float32), np.zeros(8, np.float32), variance])  # relu(0.5) passes
    # The stem/branch group is coupled by the Add: zero the same 4 filters in both.
    _models.zero_filters(model, "stem", [1, 3, 5, 6])
    _models.zero_filters(model, "branch", [1, 3, 5, 6])
    _models.zero_filters(model, "valid3x3", [0, 2, 4])
    x = _models.images((10, 10, 3))
    plan = plan_channels(model, 0.5, importance="l1")
    result = plan.apply()
    pruned = result.model

    assert pruned.get_layer("stem").get_weights()[0].shape == (3, 3, 3, 4)
    assert pruned.get_layer("branch").get_weights()[0].shape == (1, 1, 4, 4)
    assert pruned.get_layer("valid3x3").get_weights()[0].shape == (3, 3, 4, 3)
    assert pruned.get_layer("logits").get_weights()[0].shape == (8 * 8 * 7, 4)
    # The zeroed channels' BN betas turned into constants that were folded into these biases:
    assert set(result.fold.biases) == {"branch", "valid3x3", "logits"}
    assert result.fold.unfolded == []
    assert max_rel(predict(model, x), predict(pruned, x)) < 1e-5


def test_dense_after_flatten_keeps_the_strided_rows_of_surviving_channels():
    from keraffe.pruning.structured import plan_channels

    model = _models.residual_concat_model()
    plan = plan_channels(model, 0.5)
    pruned = plan.apply().model
    graph = plan.graph
    concat = next(r for r in graph.records if r.name == "concat")
    alive = graph.alive(concat.out_layouts[0], plan.removed)
    assert alive.sum() == 7
    rows = np.flatnonzero(np.tile(alive, 8 * 8))
    np.testing.assert_array_equal(rows % 14, np.tile(np.flatnonzero(alive), 64))
    kernel = model.get_layer("logits").get_weights()[0]
    np.testing.assert_array_equal(pruned.get_layer("logits").get_weights()[0], kernel[rows])


def test_constant_reaching_a_padded_3x3_is_reported_not_folded():
    import keras

    from keraffe.pruning.structured import plan_channels

    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 1, name="a")(inputs)
    x = keras.layers.BatchNormalization(name="a_bn")(x)
    x = keras.layers.Conv2D(3, 3, padding="same", name="same3x3")(x)
    model = keras.Model(inputs, x)
    _models.randomise_batchnorm(model)
    bn = model.get_layer("a_bn")
    gamma, beta, mean, variance = bn.get_weights()
    bn.set_weights([gamma, np.full(4, 0.7, np.float32), mean, variance])
    _models.zero_filters(model, "a", [0, 1])
    result = plan_channels(model, 0.5).apply()
    assert [(u.layer, u.channels) for u in result.fold.unfolded] == [("same3x3", 2)]
    assert "padded borders" in result.fold.unfolded[0].reason
    assert result.fold.biases == {}
    x = _models.images((6, 6, 2))
    full, small = predict(model, x), predict(result.model, x)
    # Inside, one pixel away from every border, the constant would have been exact; at the borders it is not.
    assert max_rel(full, small) > 1e-3


def test_squeeze_excite_model_prunes_gate_block_and_separable_together():
    from keraffe.pruning.structured import plan_channels

    model = _models.squeeze_excite_model()
    plan = plan_channels(model, 0.5)
    pruned = plan.apply().model
    assert plan.kept == {"expand": (12, 6), "se_reduce": (3, 2), "sep": (6, 3), "up": (5, 3), "probs": (3, 3)}
    assert pruned.get_layer("dw").get_weights()[0].shape == (3, 3, 6, 1)
    assert pruned.get_layer("se_reshape").get_config()["target_shape"] == (1, 1, 6)
    assert pruned.get_layer("se_expand").get_weights()[0].shape == (1, 1, 2, 6)
    assert pruned.get_layer("sep").get_weights()[0].shape == (3, 3, 6, 1)
    assert pruned.get_layer("sep").get_weights()[1].shape == (1, 1, 6, 3)
    assert pruned.get_layer("up").get_weights()[0].shape == (2, 2, 3, 3)  # (kh, kw, out, in)
    assert pruned.output_shape == model.output_shape
    out = predict(pruned, _models.images((8, 8, 4)))
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)


def test_squeeze_excite_zero_channels_are_exact_where_the_constant_stays_zero():
    """Without BN shifts a zeroed channel stays 0 through the padded depthwise conv: removing it is exact."""
    from keraffe.pruning.structured import prune_channels

    model = _models.squeeze_excite_model()
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, _, _, variance = layer.get_weights()
            layer.set_weights([gamma, np.zeros_like(gamma), np.zeros_like(gamma), variance])
    for name in ("expand", "se_expand"):
        _models.zero_filters(model, name, [0, 2, 4, 6, 8, 10])
    _models.zero_filters(model, "se_reduce", [1])
    _models.zero_filters(model, "sep", [0, 1, 2])
    _models.zero_filters(model, "up", [3, 4])
    x = _models.images((8, 8, 4))
    pruned = prune_channels(model, 0.5)
    assert pruned.get_layer("expand").get_weights()[0].shape[-1] == 6
    assert max_rel(predict(model, x), predict(pruned, x)) < 1e-5


def test_nested_model_is_rebuilt_nested_and_exact_for_zero_channels():
    import keras

    from keraffe.pruning.structured import prune_channels

    model = _models.nested_model()
    _models.zero_filters(model, "outer_conv", [0, 1, 2, 3])
    inner = model.get_layer("block")
    _models.zero_filters(inner, "inner_conv", [0, 1, 2, 3])
    x = _models.images((6, 6, 3))
    pruned = prune_channels(model, 0.5)
    block = pruned.get_layer("block")
    assert isinstance(block, keras.Model)
    assert block.get_layer("inner_conv").get_weights()[0].shape == (3, 3, 4, 4)
    assert max_rel(predict(model, x), predict(pruned, x)) < 1e-5


def test_original_model_is_untouched_and_the_result_saves_and_reloads(tmp_path):
    import keras

    from keraffe.pruning.structured import prune_channels

    model = _models.squeeze_excite_model()
    before = [w.copy() for w in model.get_weights()]
    pruned = prune_channels(model, 0.5)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    reloaded = keras.saving.load_model(path)
    x = _models.images((8, 8, 4))
    np.testing.assert_allclose(predict(reloaded, x), predict(pruned, x), rtol=1e-6, atol=1e-7)
    assert reloaded.count_params() == pruned.count_params() < model.count_params()


def test_sequential_model_stays_sequential():
    import keras

    from keraffe.pruning.structured import prune_channels

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(6, 3, name="c"),
                              keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(3, name="d")])
    pruned = prune_channels(model, 0.5)
    assert isinstance(pruned, keras.Sequential)
    assert pruned.get_layer("c").get_weights()[0].shape == (3, 3, 1, 3)
    assert pruned.get_layer("d").get_weights()[0].shape == (6 * 6 * 3, 3)


@pytest.mark.parametrize("round_to, min_channels, expected", [(1, 1, 4), (4, 1, 4), (3, 1, 6), (5, 1, 5), (1, 6, 6)])
def test_round_to_and_min_channels(round_to, min_channels, expected):
    from keraffe.pruning.structured import plan_channels

    plan = plan_channels(_models.residual_concat_model(), 0.6, round_to=round_to, min_channels=min_channels)
    # stem/branch: 8 channels, floor(0.6 * 8) = 4 go -> 4 kept, then rounded up to round_to, at least min_channels
    assert plan.kept["stem"] == (8, expected)


def test_per_layer_prunes_only_the_named_groups():
    from keraffe.pruning.structured import plan_channels

    plan = plan_channels(_models.residual_concat_model(), per_layer={"branch": 0.25})
    assert plan.kept == {"stem": (8, 6), "valid3x3": (6, 6), "logits": (4, 4)}


def test_target_macs_reaches_the_target():
    from keraffe.pruning.structured import model_macs, plan_channels

    model = _models.residual_concat_model()
    dense = model_macs(model)
    plan = plan_channels(model, target_macs=0.5)
    assert plan.macs_before == dense
    assert 0.3 * dense < plan.macs_after <= 0.5 * dense
    assert model_macs(plan.apply().model) == plan.macs_after
    absolute = plan_channels(model, target_macs=int(0.5 * dense))
    assert absolute.macs_after == plan.macs_after


@pytest.mark.parametrize("kwargs, words", [
    ({"ratio": 1.5}, ["`ratio`", "1.5"]),
    ({"ratio": "half"}, ["`ratio`", "'half'"]),
    ({}, ["`ratio`", "`per_layer`", "`target_macs`"]),
    ({"ratio": 0.5, "target_macs": 0.5}, ["`target_macs`", "alone"]),
    ({"ratio": 0.5, "round_to": 0}, ["`round_to`", "0"]),
    ({"ratio": 0.5, "min_channels": -1}, ["`min_channels`", "-1"]),
    ({"ratio": 0.5, "exclude": "stem"}, ["`exclude`", "'stem'"]),
    ({"ratio": 0.5, "exclude": ["nope"]}, ["`exclude`", "nope"]),
    ({"ratio": 0.5, "importance": "l3"}, ["`importance`", "'l3'"]),
    ({"per_layer": {"nope": 0.5}}, ["`per_layer`", "'nope'"]),
    ({"per_layer": {"stem_bn": 0.5}}, ["`per_layer`", "'stem_bn'", "creates no channels"]),
    ({"per_layer": {"logits": 0.5}}, ["`per_layer`", "'logits'", "model output"]),
    ({"target_macs": 10}, ["`target_macs`", "cannot be reached"]),
])
def test_mistakes_raise_pruning_error_naming_the_argument(kwargs, words):
    from keraffe.pruning.structured import prune_channels

    with pytest.raises(PruningError) as error:
        prune_channels(_models.residual_concat_model(), **kwargs)
    for word in words:
        assert word in str(error.value)
