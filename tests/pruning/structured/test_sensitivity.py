"""sensitivity: one group at a time, a PNG, and per-layer ratios that meet a MAC target."""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.errors import PruningError
from tests.pruning.structured import _models

pytestmark = pytest.mark.backends


def test_sensitivity_table_plot_and_suggestion(tmp_path):
    from keraffe.pruning.structured import plan_channels, sensitivity

    model = _models.residual_concat_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 10, 10, 3)).astype(np.float32)
    y = np.argmax(np.asarray(model.predict(x, verbose=0)), axis=-1)  # labels the dense model gets all right
    result = sensitivity(model, (x, y), "accuracy", ratios=(0.25, 0.5, 0.75), plot=tmp_path / "s.png")
    assert result.dense_score == 100.0
    assert set(result.scores) == {"stem", "valid3x3"}
    assert all(len(v) == 3 and all(0 <= s <= 100 for s in v) for v in result.scores.values())
    assert all(list(m) == sorted(m, reverse=True) and m[0] < result.macs_before for m in result.macs.values())
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    per_layer = result.suggest(0.6)
    assert set(per_layer) <= {"stem", "valid3x3"} and all(r in (0.25, 0.5, 0.75) for r in per_layer.values())
    plan = plan_channels(model, per_layer=per_layer)
    assert plan.macs_after <= 0.6 * plan.macs_before
    with pytest.raises(PruningError, match="cannot be reached"):
        result.suggest(100)


def test_sensitivity_mistakes():
    from keraffe.pruning.structured import sensitivity

    model = _models.residual_concat_model()
    data = (np.zeros((2, 10, 10, 3), np.float32), np.zeros(2, int))
    with pytest.raises(PruningError, match="`metric` must be one of \\['accuracy'\\]"):
        sensitivity(model, data, "f1")
    with pytest.raises(PruningError, match="`groups` names \\['logits'\\]"):
        sensitivity(model, data, groups=["logits"])
    with pytest.raises(PruningError, match="`ratio` must be a number"):
        sensitivity(model, data, ratios=(0.5, 1.2))


def test_macs_sweep_measures_each_budget_fine_tunes_and_plots(tmp_path):
    from keraffe.pruning.structured import macs_sweep

    model = _models.residual_concat_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 10, 10, 3)).astype(np.float32)
    y = np.argmax(np.asarray(model.predict(x, verbose=0)), axis=-1)
    tuned = []
    result = macs_sweep(model, (x, y), budgets=(0.6, 0.3), fine_tune=tuned.append, plot=tmp_path / "sweep.png")
    assert result.dense_score == 100.0 and len(tuned) == 2
    assert [p.budget for p in result.points] == [0.6, 0.3]
    assert all(p.macs <= b * result.macs_before for p, b in zip(result.points, (0.6, 0.3)))
    assert result.points[0].macs > result.points[1].macs
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result.plot(tmp_path / "beside.png", others={"another pruner": [(result.macs_before * 0.5, 90.0)]})
    assert (tmp_path / "beside.png").stat().st_size > 1000
    with pytest.raises(PruningError, match="`budgets` is empty"):
        macs_sweep(model, (x, y), budgets=())
