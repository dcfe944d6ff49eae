"""``keraffe prune NET.prototxt --target T``: --round-to defaults to the target's channel multiple, and the
export is fitted and checked for the target."""

from __future__ import annotations

import argparse

import pytest

from keraffe.cli.main import main
from keraffe.cli.prune_cmd import round_to_for

NET = """
name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 16 dim: 16 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 48 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" convolution_param { num_output: 48 kernel_size: 3 pad: 1 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "gap" type: "Pooling" bottom: "conv2" top: "gap" pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "gap" top: "fc" inner_product_param { num_output: 16 } }
"""


@pytest.mark.parametrize("target, given, caffe, expected", [
    ("ascend", None, True, 16), ("nnie", None, True, 1), ("rknn", None, True, 1), ("caffe1", None, True, 1),
    ("ascend", 8, True, 8), ("ascend", None, False, 1)])
def test_round_to_default(target, given, caffe, expected):
    assert round_to_for(argparse.Namespace(target=target, round_to=given), caffe) == expected


def test_pruned_caffe_net_for_ascend_keeps_multiples_of_16(tmp_path, capsys):
    from keraffe.caffe.caffemodel import write_caffemodel
    from keraffe.caffe.net import load_net
    from keraffe.caffe.seeded import attach_seeded_weights

    path = tmp_path / "small.prototxt"
    path.write_text(NET)
    net = attach_seeded_weights(load_net(path))
    write_caffemodel(tmp_path / "small.caffemodel", net.to_net_parameter(), net.weight_arrays())
    out = tmp_path / "pruned.prototxt"
    assert main(["prune", str(path), "--weights", str(tmp_path / "small.caffemodel"), "-o", str(out),
                 "--ratio", "0.5", "--target", "ascend"]) == 0
    printed = capsys.readouterr().out
    assert "--round-to 16: target ascend's channel multiple" in printed
    assert "target ascend: 0 error(s)" in printed or "target ascend: clean" in printed
    pruned = load_net(out)
    channels = {node.name: pruned.shapes[node.outputs[0]][1] for node in pruned.layers if node.type == "Convolution"}
    assert channels and all(c % 16 == 0 and c < 48 for c in channels.values()), channels
