"""``keraffe inspect`` for Caffe nets: the table, the exact JSON form, and its numbers.

The numbers are checked three ways: by hand for a small net (every count
below is worked out in the comments), by hand for LeNet from the zoo, and
against real Caffe's own parameter blobs for zoo nets with trained weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from keraffe.cli.main import main

REPO = Path(__file__).resolve().parents[2]
ZOO = REPO.parent / "shared" / "zoo"

SMALL = """
name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "dw" type: "Convolution" bottom: "pool" top: "dw"
        convolution_param { num_output: 4 group: 4 kernel_size: 3 bias_term: false } }
layer { name: "ip" type: "InnerProduct" bottom: "dw" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""
#: name, type, bottoms, tops, shapes, params, MACs -- by hand:
#: conv: weights 4*3*3*3 + bias 4 = 112; MACs = top count 2*4*8*8 = 512, times 3*3*3 = 27 -> 13824
#: pool 8x8 -> 4x4; dw (group 4): weights 4*1*3*3 = 36, top 2*4*2*2 = 32, times 1*3*3 -> 288
#: ip: 16 inputs -> 5: weights 80 + bias 5 = 85; MACs 2 * 16 * 5 = 160
SMALL_ROWS = [
    ("data", "Input", [], ["data"], [[2, 3, 8, 8]], 0, 0),
    ("conv", "Convolution", ["data"], ["conv"], [[2, 4, 8, 8]], 112, 13824),
    ("relu", "ReLU", ["conv"], ["conv#1"], [[2, 4, 8, 8]], 0, 0),
    ("pool", "Pooling", ["conv#1"], ["pool"], [[2, 4, 4, 4]], 0, 0),
    ("dw", "Convolution", ["pool"], ["dw"], [[2, 4, 2, 2]], 36, 288),
    ("ip", "InnerProduct", ["dw"], ["ip"], [[2, 5]], 85, 160),
    ("prob", "Softmax", ["ip"], ["prob"], [[2, 5]], 0, 0),
]
KEYS = ("name", "type", "bottoms", "tops", "shapes", "params", "macs")


def zoo(rel: str) -> Path:
    if not ZOO.is_dir():
        pytest.skip(f"model zoo not found at {ZOO} (it lives beside the repository, in ../shared/zoo)")
    return ZOO / rel


def inspect(capsys, *args) -> str:
    code = main(["inspect", *map(str, args)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def inspect_json(capsys, *args) -> dict:
    return json.loads(inspect(capsys, *args, "--json"))


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.prototxt"
    path.write_text(SMALL)
    return path


def test_json_has_exactly_the_documented_form(small, capsys):
    report = inspect_json(capsys, small)
    assert set(report) == {"layers", "total_params", "total_macs"}
    for row in report["layers"]:
        assert list(row) == list(KEYS)
        assert isinstance(row["params"], int) and isinstance(row["macs"], int)
        assert all(isinstance(d, int) for shape in row["shapes"] for d in shape)


def test_json_numbers_for_a_small_net(small, capsys):
    report = inspect_json(capsys, small)
    assert [tuple(row[k] for k in KEYS) for row in report["layers"]] == SMALL_ROWS
    assert report["total_params"] == 112 + 36 + 85
    assert report["total_macs"] == 13824 + 288 + 160


def test_input_shape_changes_shapes_and_macs(small, capsys):
    report = inspect_json(capsys, small, "--input-shape", "1,3,16,16")
    rows = {row["name"]: row for row in report["layers"]}
    assert rows["conv"]["shapes"] == [[1, 4, 16, 16]] and rows["conv"]["macs"] == 1 * 4 * 16 * 16 * 27
    assert rows["dw"]["shapes"] == [[1, 4, 6, 6]]
    # The InnerProduct's input grew (4*6*6 = 144 values): more parameters.
    assert rows["ip"]["params"] == 144 * 5 + 5
    assert report["total_params"] == 112 + 36 + 725


def test_table_shows_every_layer_and_the_totals(small, capsys):
    out = inspect(capsys, small)
    lines = out.splitlines()
    for name, type_name, bottoms, tops, shapes, params, macs in SMALL_ROWS:
        row = next(line for line in lines if line.strip("│ ").startswith(name + " "))
        assert type_name in row
        for blob in bottoms + tops:
            assert blob in row
        assert "x".join(map(str, shapes[0])) in row
        assert f"{params:,}" in row and f"{macs:,}" in row
    total = next(line for line in lines if "total" in line)
    assert "7 layers" in total and "233" in total and "14,272" in total
    assert "outputs: prob 2x5" in out


def test_lenet_by_hand(capsys):
    report = inspect_json(capsys, zoo("lenet_mnist_trained/lenet.prototxt"))
    rows = {row["name"]: (row["shapes"], row["params"], row["macs"]) for row in report["layers"]}
    n = 64  # the prototxt's batch
    assert rows["conv1"] == ([[n, 20, 24, 24]], 20 * 25 + 20, n * 20 * 24 * 24 * 25)
    assert rows["conv2"] == ([[n, 50, 8, 8]], 50 * 20 * 25 + 50, n * 50 * 8 * 8 * 20 * 25)
    assert rows["ip1"] == ([[n, 500]], 800 * 500 + 500, n * 800 * 500)
    assert rows["ip2"] == ([[n, 10]], 500 * 10 + 10, n * 500 * 10)
    assert report["total_params"] == 431_080
    assert report["total_macs"] == n * (20 * 576 * 25 + 50 * 64 * 500 + 800 * 500 + 5000)


def test_in_place_and_multi_top_layers(tmp_path, capsys):
    path = tmp_path / "n.prototxt"
    path.write_text(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 6 dim: 2 dim: 2 } } }\n'
        'layer { name: "s" type: "Slice" bottom: "x" top: "a" top: "b" slice_param { slice_point: 2 } }\n'
        'layer { name: "r" type: "ReLU" bottom: "b" top: "b" }\n'
        'layer { name: "r2" type: "ReLU" bottom: "b" top: "b" }\n')
    rows = {row["name"]: row for row in inspect_json(capsys, path)["layers"]}
    assert rows["s"]["tops"] == ["a", "b"] and rows["s"]["shapes"] == [[1, 2, 2, 2], [1, 4, 2, 2]]
    assert rows["r2"]["bottoms"] == ["b#1"] and rows["r2"]["tops"] == ["b#2"]


def test_train_val_net_with_input_shape(capsys):
    report = inspect_json(capsys, zoo("bvlc_lenet/lenet_train_test.prototxt"), "--input-shape", "1,1,28,28")
    names = [row["name"] for row in report["layers"]]
    assert names[0] == "mnist" and report["layers"][0]["type"] == "Input"
    assert "accuracy" not in names and "loss" not in names
    assert report["total_params"] == 431_080


def test_weights_are_counted_from_the_file(capsys):
    shapes_only = inspect_json(capsys, zoo("mtcnn/det3.prototxt"))
    with_weights = inspect_json(capsys, zoo("mtcnn/det3.prototxt"), "--weights", zoo("mtcnn/det3.caffemodel"))
    assert with_weights == shapes_only


def test_table_notes_what_loading_changed(capsys):
    out = inspect(capsys, zoo("mtcnn/det1.prototxt"), "--weights", zoo("mtcnn/det1.caffemodel"))
    assert "note: input fields replaced by an Input layer" in out
    assert "note: the weights file calls its net '12Net'" in out
    out = inspect(capsys, zoo("legacy_v1_cifar10_quick/cifar10_quick_v1.prototxt"),
                  "--weights", zoo("cifar10_quick_trained/cifar10_quick_iter_5000.caffemodel"))
    assert "note: V1 layers upgraded to V2" in out


@pytest.mark.pycaffe
@pytest.mark.parametrize("prototxt, caffemodel", [
    ("mtcnn/det3.prototxt", "mtcnn/det3.caffemodel"),
    ("yufacedetectnet_v2/yufacedetectnet-open-v2.prototxt", "yufacedetectnet_v2/yufacedetectnet-open-v2.caffemodel"),
    ("ultraface_rfb320/RFB-320.prototxt", "ultraface_rfb320/RFB-320.caffemodel"),
], ids=["mtcnn_det3", "yufacedetectnet_v2", "ultraface_rfb320"])
def test_param_counts_equal_real_caffes(prototxt, caffemodel, capsys):
    from keraffe.verify.caffe_runtime import pycaffe_params

    report = inspect_json(capsys, zoo(prototxt), "--weights", zoo(caffemodel))
    caffe = pycaffe_params(zoo(prototxt), zoo(caffemodel))
    per_layer = {name: int(sum(np.asarray(b).size for b in blobs)) for name, blobs in caffe.items()}
    ours = {row["name"]: row["params"] for row in report["layers"] if row["params"]}
    assert ours == per_layer
    assert report["total_params"] == sum(per_layer.values())
