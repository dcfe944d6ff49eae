"""`keraffe prune`: a .keras model in and out, and a Caffe net through Keras and back to Caffe."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from keraffe.errors import KeraffeError
from tests.pruning.structured import _models


def run_prune(argv):
    from keraffe.cli import prune_cmd

    parser = argparse.ArgumentParser()
    prune_cmd.add_arguments(parser)
    return prune_cmd.run(parser.parse_args([str(a) for a in argv]))


def write_data(path, shape, nchw=False, count=48):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(count, *shape)).astype(np.float32)
    if nchw:
        x = x.transpose(0, 3, 1, 2)
    y = rng.integers(0, 4, count)
    np.savez(path, x_train=x, y_train=y, x_test=x[:16], y_test=y[:16])
    return path


def test_prune_keras_model_with_fine_tuning(tmp_path, capsys):
    import keras

    model = _models.residual_concat_model()
    model.save(tmp_path / "dense.keras")
    data = write_data(tmp_path / "data.npz", (10, 10, 3))
    assert run_prune([tmp_path / "dense.keras", "-o", tmp_path / "small.keras", "--ratio", "0.5",
                      "--data", data, "--epochs", "1", "--importance", "taylor"]) == 0
    small = keras.saving.load_model(tmp_path / "small.keras")
    assert small.get_layer("stem").get_weights()[0].shape[-1] == 4
    out = capsys.readouterr().out
    assert f"{model.count_params():,} -> {small.count_params():,} parameters" in out
    assert "after 1 epoch(s) of fine-tuning" in out


@pytest.mark.pycaffe
def test_prune_caffe_net_back_to_caffe_and_verify(tmp_path, capsys):
    import keraffe
    from keraffe.caffe.net import load_net

    model = _models.residual_concat_model()
    export = keraffe.keras_to_caffe(model, tmp_path / "net.prototxt")
    data = write_data(tmp_path / "data.npz", (10, 10, 3), nchw=True)
    assert run_prune([export.prototxt, "--weights", export.caffemodel, "-o", tmp_path / "small.prototxt",
                      "--ratio", "0.5", "--data", data, "--epochs", "1", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "verify (caffe): largest relative error" in out and out.rstrip().endswith("ok")
    small = load_net(tmp_path / "small.prototxt", tmp_path / "small.caffemodel")
    dense = load_net(export.prototxt, export.caffemodel)
    params = lambda net: sum(node.num_params for node in net.layers)  # noqa: E731
    assert params(small) < 0.6 * params(dense)


def test_prune_cli_mistakes(tmp_path):
    model = _models.residual_concat_model()
    model.save(tmp_path / "dense.keras")
    with pytest.raises(KeraffeError, match="needs its trained weights"):
        run_prune([tmp_path / "net.prototxt", "-o", tmp_path / "s.prototxt", "--ratio", "0.5"])
    with pytest.raises(KeraffeError, match="--importance taylor needs --data"):
        run_prune([tmp_path / "dense.keras", "-o", tmp_path / "s.keras", "--ratio", "0.5", "--importance", "taylor"])
    with pytest.raises(KeraffeError, match="`ratio` must be a number in \\[0, 0.99\\], received 2.0"):
        run_prune([tmp_path / "dense.keras", "-o", tmp_path / "s.keras", "--ratio", "2"])
    with pytest.raises(KeraffeError, match="also an input"):
        run_prune([tmp_path / "dense.keras", "-o", tmp_path / "dense.keras", "--ratio", "0.5"])
