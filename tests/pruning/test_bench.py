"""bench/pruning_overhead.py: the worker trains the same model dense and pruned and reports both.

Times are measured, never asserted; this checks that the benchmark compares
like with like and that its JSON carries what the README generator reads.
"""

from __future__ import annotations

import json

import keras
import pytest

from .conftest import load_script

pytestmark = pytest.mark.backends


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/pruning_overhead.py", "keraffe_bench_pruning_overhead")


def test_worker_row_describes_both_runs(bench):
    config = bench.BenchConfig(epochs=2, warmup_epochs=1)
    row = bench.run_worker(config)
    assert row["backend"] == keras.backend.backend()
    assert row["steps_per_epoch"] == 45
    assert len(row["dense_epoch_seconds"]) == len(row["pruned_epoch_seconds"]) == 2
    assert row["dense_seconds"] == pytest.approx(sum(row["dense_epoch_seconds"]))
    assert row["ratio"] == pytest.approx(row["pruned_seconds"] / row["dense_seconds"])
    # 3 epochs x 45 steps: the 100-step frequency prunes at step 0 (50%) and step 100.
    schedule_at_100 = 0.8 + (0.5 - 0.8) * (1 - 100 / 135) ** 3
    assert sorted(row["final_sparsity"]) == ["classes", "conv1", "conv2", "hidden"]
    assert row["final_sparsity"]["hidden"] == pytest.approx(schedule_at_100, abs=1e-4)
    json.dumps(row)


def test_cli_refuses_zero_epochs(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--epochs", "0"])
    assert "--epochs and --warmup-epochs must be at least 1, received 0" in capsys.readouterr().err


def test_whole_fit_worker_times_one_fit_of_each_variant(bench):
    config = bench.BenchConfig(epochs=1)
    dense, pruned = (bench.run_whole_fit_worker(config, variant) for variant in ("dense", "pruned"))
    assert dense["variant"] == "dense" and pruned["variant"] == "pruned"
    assert dense["seconds"] > 0 and pruned["seconds"] > 0
    assert dense["backend"] == pruned["backend"] == keras.backend.backend()
