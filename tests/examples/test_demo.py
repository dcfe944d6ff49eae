"""The README's main command, examples/demo.py, end to end on a short schedule."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_ships_three_models_to_caffe_and_back(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--epochs", "3", "--prune-epochs", "3",
         "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "demo.json").read_text())
    models = result["models"]
    assert set(models) == {"dense", "sparse", "channels"}
    for name, row in models.items():
        assert row["export_ok"] and row["back_ok"], (name, row)
        # The Caffe model classifies the test set as the Keras model does.
        assert abs(row["opencv_accuracy"] - row["accuracy"]) < 0.01, (name, row)
        assert row["round_trip_max_abs"] < 1e-4, (name, row)
        for suffix in (".keras", ".prototxt", ".caffemodel", "_from_caffe.keras"):
            assert (out / f"{name}{suffix}").is_file()
    assert models["sparse"]["sparsity"] > 0.7
    assert models["channels"]["macs"] < 0.5 * models["dense"]["macs"]
    assert models["sparse"]["caffemodel_gzip_bytes"] < 0.6 * models["dense"]["caffemodel_gzip_bytes"]
    assert "Caffe accuracy in OpenCV DNN" in run.stdout
    # The front door is quiet: none of TensorFlow's native start-up lines reach the user.
    noise = [line for line in run.stderr.splitlines()
             if any(word in line for word in ("cuda", "cuInit", "oneDNN", "absl::InitializeLog", "port.cc"))]
    assert not noise, noise
