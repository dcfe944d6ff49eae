"""summary(model): per-layer counts recomputed from the weights, and the saved sizes."""

from __future__ import annotations

import gzip
import json

import keras
import numpy as np
import pytest

from keraffe import pruning
from keraffe.errors import PruningError

from ._helpers import compile_for_test, random_classification, small_conv_model

pytestmark = pytest.mark.backends


@pytest.fixture
def trained_pruned():
    x, y = random_classification(samples=32)
    model = pruning.prune_low_magnitude(small_conv_model(), pruning_schedule=pruning.ConstantSparsity(0.6, 0))
    compile_for_test(model).fit(x, y, batch_size=16, epochs=1, verbose=0)
    return model


def test_rows_count_the_weights_the_network_computes_with(trained_pruned):
    report = pruning.summary(trained_pruned)
    stripped = pruning.strip_pruning(trained_pruned)
    assert [row.name for row in report.layers] == ["conv", "dense"]
    for row in report.layers:
        weights = stripped.get_layer(row.name).get_weights()
        assert row.layer_type == type(stripped.get_layer(row.name)).__name__
        assert row.parameters == sum(w.size for w in weights)
        assert row.nonzeros == sum(int(np.count_nonzero(w)) for w in weights)
        assert row.prunable_parameters == weights[0].size
        assert row.prunable_nonzeros == int(np.count_nonzero(weights[0]))
        assert row.prunable_sparsity == pytest.approx(1 - round(weights[0].size * 0.4) / weights[0].size)
        assert row.status == "pruning: unstructured, step 1, schedule sparsity 0.60"
    assert report.parameters == sum(w.size for w in stripped.get_weights())
    assert report.sparsity == pytest.approx(1 - report.nonzeros / report.parameters)


def test_sizes_are_those_of_the_saved_file_and_its_gzip(tmp_path, trained_pruned):
    stripped = pruning.strip_pruning(trained_pruned)
    path = tmp_path / "stripped.keras"
    stripped.save(path)
    report = pruning.summary(path)
    data = path.read_bytes()
    assert report.keras_bytes == len(data)
    assert report.gzip_bytes == len(gzip.compress(data, compresslevel=9, mtime=0))
    dense_path = tmp_path / "dense.keras"
    small_conv_model().save(dense_path)
    dense_report = pruning.summary(dense_path)
    # Same architecture and no optimizer state: the same size up to names in the
    # config; 60% zeros compress.
    assert abs(report.keras_bytes - dense_report.keras_bytes) < 0.01 * dense_report.keras_bytes
    assert report.gzip_bytes < 0.7 * dense_report.gzip_bytes
    assert {row.status for row in report.layers} == {"prunable, not wrapped"}


def test_text_rich_and_json_forms_carry_the_same_numbers(trained_pruned):
    report = pruning.summary(trained_pruned)
    text = str(report)
    for row in report.layers:
        assert f"{row.parameters:,}" in text and f"{row.nonzeros:,}" in text
    assert f"gzip {report.gzip_bytes:,} bytes" in text
    decoded = json.loads(json.dumps(report.to_dict()))
    assert decoded["nonzeros"] == report.nonzeros
    assert [row["nonzeros"] for row in decoded["layers"]] == [row.nonzeros for row in report.layers]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(report)
    rendered = console.export_text()
    assert all(row.name in rendered for row in report.layers)
    assert f"{report.parameters:,}" in rendered


def test_summary_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(PruningError, match=r"received 'missing.keras'"):
        pruning.summary("missing.keras")
    with pytest.raises(PruningError, match="not built"):
        pruning.summary(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(PruningError, match="received int"):
        pruning.summary(3)
