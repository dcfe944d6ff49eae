"""``keraffe check``: exit codes, the text and JSON reports, --weights, and --fix writing a net that passes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keraffe.cli.main import main

NET = """
name: "stem"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "drop" type: "Dropout" bottom: "pool" top: "pool" }
layer { name: "up" type: "Upsample" bottom: "pool" top: "up" upsample_param { scale: 2 } }
"""


@pytest.fixture
def net_path(tmp_path):
    path = tmp_path / "stem.prototxt"
    path.write_text(NET)
    return path


def test_violations_exit_1_and_list_rule_source_and_fix(net_path, capsys):
    assert main(["check", str(net_path), "--target", "rknn"]) == 1
    out = capsys.readouterr().out
    assert "error R-12: layer 'pool' (Pooling)" in out
    assert "source: RK-MD-1.0.0 (Caffe Pooling row)" in out
    assert "fix: keraffe rewrites it (ceil_pooling_as_floor)" in out


def test_json_lists_every_violation(net_path, capsys):
    assert main(["check", str(net_path), "--target", "ascend", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "ascend" and report["clean"] is False
    assert {(v["rule"], v["layer"], v["fix"]) for v in report["violations"] if v["severity"] == "error"} == {
        ("A-28", "drop", "dropout_as_identity"), ("A-25", "up", "upsample_stride_spelling")}
    assert {v["rule"] for v in report["violations"] if v["severity"] == "advice"} == {"A-C0"}


def test_advice_alone_exits_0(tmp_path, capsys):
    path = tmp_path / "advice.prototxt"
    path.write_text(NET.split('layer { name: "pool"')[0])
    assert main(["check", str(path), "--target", "ascend"]) == 0
    assert "0 error(s), 1 advice" in capsys.readouterr().out


@pytest.mark.pycaffe
def test_fix_writes_a_clean_net_that_computes_the_same(net_path, tmp_path, capsys):
    from keraffe.caffe.caffemodel import write_caffemodel
    from keraffe.caffe.net import load_net
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.verify import run_reference

    net = attach_seeded_weights(load_net(net_path))
    weights = tmp_path / "stem.caffemodel"
    write_caffemodel(weights, net.to_net_parameter(), net.weight_arrays())
    fixed = tmp_path / "fixed.prototxt"
    assert main(["check", str(net_path), "--weights", str(weights), "--target", "rknn", "--fix",
                 "-o", str(fixed)]) == 0
    out = capsys.readouterr().out
    assert "fixed: ceil_pooling_as_floor: 'pool'" in out and f"{fixed}: target rknn: clean" in out
    assert main(["check", str(fixed), "--target", "rknn"]) == 0
    after = load_net(fixed, fixed.with_suffix(".caffemodel"))
    x = {"data": np.random.default_rng(0).normal(size=(1, 3, 12, 12)).astype(np.float32)}
    np.testing.assert_array_equal(run_reference(after, x, ["up"], "caffe")["up"],
                                  run_reference(net, x, ["up"], "caffe")["up"])


def test_fix_needs_an_output_and_never_overwrites_the_input(net_path, capsys):
    assert main(["check", str(net_path), "--target", "nnie", "--fix"]) == 1
    assert "--fix and -o go together" in capsys.readouterr().err
    assert main(["check", str(net_path), "--target", "nnie", "--fix", "-o", str(net_path)]) == 1
    assert "never overwrites its inputs" in capsys.readouterr().err
    assert net_path.read_text() == NET
