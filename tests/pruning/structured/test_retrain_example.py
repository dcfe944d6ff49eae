"""examples/retrain_resnet50_cifar10.py --smoke: every step of the demo runs, and its numbers hold."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "examples" / "retrain_resnet50_cifar10.py"


def load_example():
    name = "keraffe_example_retrain_resnet50_cifar10"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.pycaffe
@pytest.mark.slow
def test_smoke_run_prunes_exports_and_verifies(tmp_path):
    example = load_example()
    config = example.parse_args(["--smoke", "--out", str(tmp_path)])
    assert (config.weights, config.epochs, config.prune_epochs) == ("none", 1, 1)
    example.run(config)
    results = json.loads((tmp_path / "retrain_resnet50_cifar10.json").read_text())
    assert results["verify"]["runtime"] == "caffe"
    assert results["verify"]["ok"] and results["verify"]["max_rel"] <= 1e-4
    assert results["verify"]["blobs_compared"] > 100
    ratios = results["report"]["ratios"]
    assert ratios["macs"] < 0.6 and ratios["parameters"] < 0.6 and ratios["caffemodel_bytes"] < 0.6
    assert results["report"]["after"]["latency_ms"] > 0
    assert results["kept_channels"]["conv1_conv"] == [64, 32]
    assert set(results["accuracy"]) == {"dense", "pruned", "pruned_fine_tuned"}
    assert (tmp_path / "resnet50_cifar10.caffemodel").is_file()


def test_missing_cifar10_download_says_what_to_do(monkeypatch):
    import keras

    example = load_example()

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(SystemExit, match="--data cifar10.npz"):
        example.load_cifar10(None)
