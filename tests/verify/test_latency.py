"""deployment_report: pruning's numbers before and after, with the Caffe exports' size and OpenCV latency."""

from __future__ import annotations

import pytest

from tests.pruning.structured import _models


def test_report_counts_sizes_and_times_both_models():
    from keraffe.pruning.structured import model_macs, prune_channels
    from keraffe.verify.latency import deployment_report

    model = _models.residual_concat_model()
    pruned = prune_channels(model, 0.5)
    report = deployment_report(model, pruned, threads=1, rounds=1, repeats=2)
    assert report.before.parameters == model.count_params()
    assert report.after.parameters == pruned.count_params()
    assert (report.before.macs, report.after.macs) == (model_macs(model), model_macs(pruned))
    assert report.after.caffemodel_bytes < report.before.caffemodel_bytes
    assert report.after.keras_bytes < report.before.keras_bytes
    assert report.before.latency_ms > 0 and report.after.latency_ms > 0
    assert report.ratio("macs") == pytest.approx(report.after.macs / report.before.macs)
    text = report.render()
    assert "caffemodel_bytes" in text and "OpenCV DNN, 1 thread(s)" in text
    assert set(report.to_dict()["ratios"]) == {"parameters", "macs", "keras_bytes", "caffemodel_bytes",
                                                "latency_ms"}


def test_report_without_a_caffe_export_says_why():
    from keraffe.pruning.structured import prune_channels
    from keraffe.verify.latency import deployment_report

    model = _models.barrier_model()  # its ChannelShuffle has no Caffe converter
    report = deployment_report(model, prune_channels(model, 0.5), latency=True)
    assert report.before.caffemodel_bytes is None and report.before.latency_ms is None
    assert report.before.note.startswith("no Caffe export: ")
    assert report.after.parameters < report.before.parameters


def test_pruning_report_is_keras_only():
    """Pruning's own report measures the Keras models and leaves the Caffe side empty."""
    from keraffe.pruning.structured import prune_channels, structured_report

    model = _models.residual_concat_model()
    report = structured_report(model, prune_channels(model, 0.5))
    assert report.after.parameters < report.before.parameters
    assert report.after.keras_bytes < report.before.keras_bytes
    assert report.before.caffemodel_bytes is None and report.before.latency_ms is None
    assert "n/a" in report.render()
