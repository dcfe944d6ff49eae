"""Recurrent models: LSTM/GRU/SimpleRNN units are cut as gate groups; Bidirectional, TimeDistributed, Embedding.

A unit of an LSTM is four columns of its kernel, recurrent kernel and bias
(one per gate: i, f, c, o), plus its row of the recurrent kernel; GRU has
three gates (both reset_after settings), SimpleRNN one. Judged against Keras
itself: a model whose removed units were silent (all their own weights zero)
computes exactly what the pruned one computes, and constants that removed
channels leave behind are folded into the next recurrent layer's bias exactly.
The pruned models also export to Caffe (GRU and Bidirectional unrolled into
standard layers) and real Caffe matches them at every output.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.pruning.structured import _models

KINDS = ["text", "gru_v1", "bidirectional", "time_distributed"]


def _inputs(model, count=3):
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    if "int" in str(model.inputs[0].dtype):
        return rng.integers(0, 20, (count, *shape)).astype("int32")
    return rng.normal(size=(count, *shape)).astype(np.float32)


def _max_rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))


def test_lstm_and_gru_units_are_cut_as_gate_groups():
    from keraffe.pruning.structured import plan_channels

    model = _models.recurrent_model("text")
    plan = plan_channels(model, 0.5)
    pruned = plan.apply().model
    graph = plan.graph
    for name, gates, units in (("lstm", 4, 10), ("gru", 3, 8)):
        kept = np.flatnonzero(graph.alive(graph.source_atoms[name], plan.removed))
        assert len(kept) == units // 2
        columns = np.concatenate([g * units + kept for g in range(gates)])
        rows = np.flatnonzero(graph.alive(graph.records[[r.name for r in graph.records].index(name)].in_layouts[0],
                                          plan.removed))
        kernel, recurrent, bias = model.get_layer(name).get_weights()
        new_kernel, new_recurrent, new_bias = pruned.get_layer(name).get_weights()
        np.testing.assert_array_equal(new_kernel, kernel[np.ix_(rows, columns)])
        np.testing.assert_array_equal(new_recurrent, recurrent[np.ix_(kept, columns)])
        assert new_bias.shape == bias[..., columns].shape  # GRU's reset_after bias is (2, 3 * units)
    assert pruned.get_layer("embed").get_weights()[0].shape == (20, 6)


@pytest.mark.backends
@pytest.mark.parametrize("kind", KINDS)
def test_removing_silent_units_changes_nothing(kind):
    from keraffe.pruning.structured import model_macs, plan_channels

    model = _models.recurrent_model(kind)
    plan = plan_channels(model, 0.5)
    assert plan.macs_after <= 0.55 * plan.macs_before, plan.summary()
    _models.silence_planned_channels(plan)
    result = plan.apply()
    assert result.fold.unfolded == []
    assert model_macs(result.model) == plan.macs_after
    x = _inputs(model)
    assert _max_rel(model.predict(x, verbose=0), result.model.predict(x, verbose=0)) < 1e-5


@pytest.mark.pycaffe
@pytest.mark.parametrize("kind", KINDS)
def test_pruned_recurrent_model_matches_real_caffe(kind, tmp_path):
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.pruning.structured import plan_channels
    from keraffe.verify import verify

    model = _models.recurrent_model(kind)
    pruned = plan_channels(model, 0.5).apply().model
    export = keraffe.keras_to_caffe(pruned, tmp_path / "pruned.prototxt")
    report = verify(pruned, load_net(export.prototxt, export.caffemodel), runtime="caffe",
                    tensor_map=export.tensor_map)
    assert report.ok, report
    assert report.max_rel <= 1e-4


@pytest.mark.backends
def test_constants_of_removed_channels_fold_into_the_recurrent_bias():
    """Conv1D channels whose filters are zero still carry BatchNormalization's shift, a constant at every step;
    through the GRU's kernel (reset_after=False) it is a constant per gate, which its bias absorbs exactly."""
    from keraffe.pruning.structured import plan_channels

    model = _models.recurrent_model("gru_v1")
    plan = plan_channels(model, per_layer={"conv": 0.5})
    _models.zero_filters(model, "conv", np.flatnonzero(~plan.graph.alive(plan.graph.source_atoms["conv"],
                                                                          plan.removed)))
    result = plan.apply()
    assert set(result.fold.biases) == {"gru"} and result.fold.unfolded == []
    x = _inputs(model)
    assert _max_rel(model.predict(x, verbose=0), result.model.predict(x, verbose=0)) < 1e-5


def test_units_that_are_not_silent_are_reported_not_folded():
    """Units with non-zero biases keep a state the recurrence reads: removing them changes the model, and the
    fold result says where."""
    from keraffe.pruning.structured import plan_channels

    result = plan_channels(_models.recurrent_model("text"), 0.5).apply()
    reasons = {(u.layer, u.reason) for u in result.fold.unfolded}
    assert ("lstm", "the recurrence reads the removed units' non-zero states") in reasons
    assert ("embed", "a removed embedding column is not the same for every token") in reasons


def test_recurrent_macs_count_every_step_and_gate():
    from keraffe.pruning.structured import model_macs

    model = _models.recurrent_model("text")  # 7 steps: LSTM 12 -> 10, GRU 10 -> 8, Dense 8 -> 3
    assert model_macs(model) == 7 * 4 * (12 * 10 + 10 * 10) + 7 * 3 * (10 * 8 + 8 * 8) + 8 * 3


def test_bidirectional_pairs_the_directions_and_keeps_them_equally_wide():
    from keraffe.pruning.structured import plan_channels

    model = _models.recurrent_model("bidirectional")
    plan = plan_channels(model, 0.5)
    assert plan.kept["bi_lstm"] == (6, 3) and plan.kept["bi_gru"] == (5, 3)
    pruned = plan.apply().model
    layer = pruned.get_layer("bi_lstm")
    assert layer.forward_layer.units == layer.backward_layer.units == 3
    assert tuple(pruned.get_layer("bi_gru").input.shape) == (None, 5, 6)
