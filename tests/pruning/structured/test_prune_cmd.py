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


@pytest.mark.pycaffe
def test_prune_zoo_ssd_through_keras_and_back(zoo, tmp_path, capsys):
    """MobileNet-SSD (seeded weights): the backbone and the extra layers lose half their channels; the heads
    keep theirs (DetectionOutput reads them as priors x 4 and priors x classes), PriorBox only reads its
    feature map's size, so the priors come out bit-identical, and real Caffe runs the pruned export as the
    pruned Keras model computes it."""
    from keraffe.caffe.caffemodel import write_caffemodel
    from keraffe.caffe.net import load_net
    from keraffe.caffe.prototxt import Dialect, write_prototxt
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.verify.caffe_runtime import run_pycaffe

    net = attach_seeded_weights(load_net(zoo / "mobilenet_ssd" / "deploy.prototxt"), seed=0)
    parameter = net.to_net_parameter()
    detection = next(layer for layer in parameter.layer if layer.type == "DetectionOutput")
    detection.detection_output_param.confidence_threshold = 0.05  # random weights score low: keep boxes to compare
    dense = tmp_path / "dense.prototxt"
    write_prototxt(dense, parameter, Dialect.FORK)
    write_caffemodel(dense.with_suffix(".caffemodel"), parameter, net.weight_arrays())
    small = tmp_path / "small.prototxt"
    assert run_prune([dense, "--weights", dense.with_suffix(".caffemodel"), "-o", small, "--ratio", "0.5",
                      "--target", "opencv", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "verify (caffe): largest relative error" in out and out.rstrip().endswith("ok")
    assert "detection_out: SSD's DetectionOutput reads its inputs as priors x 4" in out
    macs = [line for line in out.splitlines() if "channel groups pruned" in line][0]
    before, after = (int(v.replace(",", "")) for v in macs.split("MACs ")[1].split(" (")[0].split(" -> "))
    assert after < 0.35 * before

    net, pruned = load_net(dense, dense.with_suffix(".caffemodel")), load_net(small, small.with_suffix(".caffemodel"))
    outputs = lambda n: {node.name: node.weights[0].shape[0] for node in n.layers  # noqa: E731
                         if node.type == "Convolution" and node.weights}
    dense_out, small_out = outputs(net), outputs(pruned)
    heads = [name for name in dense_out if "_mbox_" in name]
    assert len(heads) == 12 and all(small_out[name] == dense_out[name] for name in heads)
    assert small_out["conv13"] == dense_out["conv13"] // 2 and small_out["conv17_2"] == dense_out["conv17_2"] // 2
    image = np.random.default_rng(0).normal(size=(1, 3, 300, 300)).astype(np.float32)
    a = run_pycaffe(dense, dense.with_suffix(".caffemodel"), {"data": image}, ["mbox_priorbox", "detection_out"])
    b = run_pycaffe(small, small.with_suffix(".caffemodel"), {"data": image}, ["mbox_priorbox", "detection_out"])
    assert np.array_equal(a["mbox_priorbox"], b["mbox_priorbox"])
    assert b["detection_out"].shape[2] > 1, "the pruned net should still detect something"
