"""examples/simple_classifier.py end to end (tiny epochs), its data fallbacks, and its JSON."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import keraffe

pytestmark = pytest.mark.backends


def test_demo_writes_table_and_json_with_measured_numbers(demo, tmp_path, capsys):
    out, models = tmp_path / "results", tmp_path / "models"
    assert demo.main(["--dataset", "digits", "--epochs", "2", "--prune-epochs", "3", "--sparsity", "0.75",
                      "--out", str(out), "--models-dir", str(models)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "simple_classifier.json").read_text())

    assert result["backend"] == keras.backend.backend()
    assert (result["train_images"], result["test_images"]) == (1437, 360)
    assert result["pruned"]["min_kernel_sparsity"] >= 0.745
    assert result["dense"]["min_kernel_sparsity"] < 0.01
    assert result["pruned"]["gzip_bytes"] < result["dense"]["gzip_bytes"]
    for name in ("dense.keras", "pruned.keras"):
        assert (models / name).stat().st_size == result[name.split(".")[0]]["keras_bytes"]
    reloaded = keras.saving.load_model(models / "pruned.keras")
    data = demo.load_digits_16x16()
    assert demo.accuracy(reloaded, data.x_test, data.y_test) == result["pruned"]["accuracy"]
    assert f"{result['pruned']['accuracy']:.2%}" in printed
    assert f"{result['pruned']['gzip_bytes']:,}" in printed

    if hasattr(keraffe, "keras_to_caffe"):
        assert result["caffe"]["status"] == "ok"
        # OpenCV's float32 may flip at most one borderline image of 360.
        assert abs(result["caffe"]["accuracy"] - result["pruned"]["accuracy"]) <= 1 / 360 + 1e-9
        assert (models / "pruned.prototxt").is_file() and (models / "pruned.caffemodel").is_file()
    else:
        assert result["caffe"]["status"].startswith("skipped: keraffe.keras_to_caffe is not available")


def test_caffe_step_is_skipped_with_a_reason_where_the_converter_is_missing(demo, monkeypatch, tmp_path):
    monkeypatch.delattr(keraffe, "keras_to_caffe", raising=False)
    data = demo.load_digits_16x16()
    model = demo.build_classifier(data.x_train.shape[1:], data.num_classes)
    assert demo.caffe_accuracy(model, data, tmp_path) == {
        "status": "skipped: keraffe.keras_to_caffe is not available in this keraffe"
    }
    assert list(tmp_path.iterdir()) == []


def test_download_failure_falls_back_to_digits_with_a_notice(demo, monkeypatch, capsys):
    def offline():
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    data = demo.load_data("mnist")
    assert data.name == "digits-16x16"
    assert data.x_train.shape == (1437, 16, 16, 1) and data.x_test.shape == (360, 16, 16, 1)
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert "notice: keras.datasets.mnist could not be loaded (OSError: network is unreachable)" in (
        capsys.readouterr().out
    )


def test_data_file_in_keras_mnist_layout_is_used_as_given(demo, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 256, (20, 12, 12), dtype=np.uint8), y_train=np.arange(20) % 3,
             x_test=rng.integers(0, 256, (6, 12, 12), dtype=np.uint8), y_test=np.arange(6) % 3)
    data = demo.load_data(data=path)
    assert (data.name, data.num_classes) == ("tiny", 3)
    assert data.x_train.shape == (20, 12, 12, 1) and data.x_train.dtype == np.float32
    assert data.x_train.max() <= 1.0
    with pytest.raises(SystemExit, match="missing arrays"):
        np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 4, 4)))
        demo.load_data(data=tmp_path / "bad.npz")
