"""The channel graph: which channels are coupled, which are kept, read from the Keras graph."""

from __future__ import annotations

import numpy as np
import pytest

from tests.pruning.structured import _models

pytestmark = pytest.mark.backends


def groups_by_name(model, **kwargs):
    from keraffe.pruning.structured import ChannelGraph

    graph = ChannelGraph(model, **kwargs)
    return graph, {group.name: group for group in graph.groups}


def test_residual_add_couples_both_producers_and_concat_keeps_offsets():
    graph, groups = groups_by_name(_models.residual_concat_model())
    assert set(groups) == {"stem", "valid3x3", "logits"}
    assert groups["stem"].sources == ("stem", "branch")
    assert len(groups["stem"]) == 8
    # channel i of the stem is channel i of the branch: the Add couples equal positions
    np.testing.assert_array_equal(groups["stem"].filters["stem"], np.arange(8))
    np.testing.assert_array_equal(groups["stem"].filters["branch"], np.arange(8))
    assert groups["valid3x3"].sources == ("valid3x3",)
    assert groups["logits"].prunable.sum() == 0
    assert "model output" in groups["logits"].protected_by
    concat = next(r for r in graph.records if r.name == "concat")
    roots = graph.roots[concat.out_layouts[0]]
    valid_roots = graph.roots[graph.source_atoms["valid3x3"]]
    stem_roots = graph.roots[graph.source_atoms["stem"]]
    np.testing.assert_array_equal(roots, np.concatenate([valid_roots, stem_roots]))


def test_flatten_layout_is_strided_channel_fastest():
    graph, _ = groups_by_name(_models.residual_concat_model())
    flatten = next(r for r in graph.records if r.name == "flatten")
    concat = next(r for r in graph.records if r.name == "concat")
    channels = graph.roots[concat.out_layouts[0]]
    flat = graph.roots[flatten.out_layouts[0]]
    assert len(flat) == 8 * 8 * 14
    # NHWC flattening: feature p holds channel p % C
    np.testing.assert_array_equal(flat, channels[np.arange(len(flat)) % 14])


def test_squeeze_excite_gate_couples_with_the_block_and_reduce_is_its_own_group():
    _, groups = groups_by_name(_models.squeeze_excite_model())
    assert groups["expand"].sources == ("expand", "se_expand")
    assert len(groups["expand"]) == 12
    np.testing.assert_array_equal(groups["expand"].filters["se_expand"], np.arange(12))
    assert groups["se_reduce"].sources == ("se_reduce",)
    assert groups["sep"].sources == ("sep",) and len(groups["sep"]) == 6
    assert groups["up"].sources == ("up",) and len(groups["up"]) == 5
    assert not groups["probs"].prunable.any()


def test_nested_model_couples_across_its_boundary():
    _, groups = groups_by_name(_models.nested_model())
    assert groups["outer_conv"].sources == ("outer_conv", "inner_conv")
    assert groups["outer_conv"].prunable.all()


def test_unknown_layer_is_a_barrier_that_keeps_its_input_channels():
    graph, groups = groups_by_name(_models.barrier_model())
    # ChannelShuffle's call is traced: keras.ops.flip inside it is what the planner cannot cut through.
    assert graph.barriers == {"shuffle": "keras.ops.Flip is not understood by the channel planner (in its call)"}
    assert not groups["before_barrier"].prunable.any()
    assert "shuffle" in groups["before_barrier"].protected_by
    assert groups["after_barrier"].prunable.all()


def test_excluded_layer_keeps_its_channels():
    _, groups = groups_by_name(_models.residual_concat_model(), exclude=("valid3x3",))
    assert not groups["valid3x3"].prunable.any()
    assert groups["valid3x3"].protected_by == "valid3x3 is excluded"


def test_softmax_over_channels_and_grouped_conv_are_barriers():
    import keras

    from keraffe.pruning.structured import ChannelGraph

    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(8, 1, name="a")(inputs)
    x = keras.layers.Conv2D(8, 3, groups=2, name="grouped")(x)
    x = keras.layers.Softmax(name="softmax")(x)
    x = keras.layers.Conv2D(4, 1, name="b")(x)
    graph = ChannelGraph(keras.Model(inputs, x))
    assert set(graph.barriers) == {"grouped", "softmax"}
    assert "groups=2" in graph.barriers["grouped"]
    assert [g.name for g in graph.groups if g.prunable.any()] == []
