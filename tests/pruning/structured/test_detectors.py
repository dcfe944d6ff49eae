"""A YOLO-style detector: CSP blocks (with and without a channel split), SPPF, upsample plus concat across
scales, and a head per scale. Pruned at ratio 0.5, exact in Keras where the removed channels were silent,
and matched in real Caffe after export.

(The SSD case, a zoo net through Caffe -> Keras -> prune -> Caffe, is in test_prune_cmd.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.pruning.structured import _models

def _plan(split):
    from keraffe.pruning.structured import plan_channels

    model = _models.yolo_detector(split)
    return model, plan_channels(model, 0.5)


@pytest.mark.parametrize("split", [True, False], ids=["C2f", "C3"])
def test_detector_loses_most_macs_and_keeps_its_heads(split):
    from keraffe.pruning.structured import model_macs

    model, plan = _plan(split)
    pruned = plan.apply().model
    assert plan.macs_after <= 0.3 * plan.macs_before, plan.summary()
    assert model_macs(pruned) == plan.macs_after
    assert plan.left_whole == {}  # every layer and op was understood
    heads = {g.name: g for g in plan.graph.groups if g.name in ("head_p3", "head_p4")}
    assert all(not g.prunable.any() and g.protected_by == "it reaches a model output" for g in heads.values())
    assert [tuple(t.shape) for t in pruned.outputs] == [tuple(t.shape) for t in model.outputs]
    if split:  # the two halves of each split are pruned as groups of their own, half each
        groups = {g.name: plan.kept[g.name] for g in plan.graph.groups}
        assert groups["c3_cv1"] == (16, 8) and groups["c3_cv1:1"] == (16, 8)


@pytest.mark.backends
@pytest.mark.parametrize("split", [True, False], ids=["C2f", "C3"])
def test_detector_without_its_silent_channels_computes_the_same(split):
    model, plan = _plan(split)
    _models.silence_planned_channels(plan)
    result = plan.apply()
    x = _models.images((64, 64, 3), count=2)
    for dense, small in zip(model.predict(x, verbose=0), result.model.predict(x, verbose=0)):
        scale = np.abs(dense).max()
        assert np.max(np.abs(dense - small)) <= 1e-5 * scale
    split_ops = [layer for layer in result.model.operations if type(layer).__name__ == "Split"]
    assert len(split_ops) == (3 if split else 0)


@pytest.mark.pycaffe
@pytest.mark.parametrize("split", [True, False], ids=["C2f", "C3"])
def test_pruned_detector_matches_real_caffe(split, tmp_path):
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.verify import verify

    _, plan = _plan(split)
    pruned = plan.apply().model
    export = keraffe.keras_to_caffe(pruned, tmp_path / "pruned.prototxt")
    report = verify(pruned, load_net(export.prototxt, export.caffemodel), per_layer=True, runtime="caffe",
                    tensor_map=export.tensor_map)
    bad = [(c.caffe_tensor, c.rel) for c in report.layers if not c.ok]
    assert report.ok and not bad, bad[:5]
    assert report.max_rel <= 1e-4 and len(export.tensor_map.outputs) == 2
