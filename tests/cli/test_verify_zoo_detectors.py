"""`keraffe caffe2keras` then `keraffe verify --per-layer` on zoo detectors: a Faster R-CNN and a YOLO.

The zoo holds these prototxts without weights, so the tests give them seeded
ones (written as a caffemodel, as a user's would be). Faster R-CNN's RPN
layers are scaled to a trained net's output range (deltas well under exp's
overflow, scores unsaturated), and its im_info gives the image size with a
scale of 1/16 (no proposal under py-faster-rcnn's 16-pixel minimum, which
OpenCV's Proposal, the judge, leaves out). YOLO's detection layer runs in no
runtime: verify compares every other blob and says it did not judge that one.

The commands run as a user runs them, in a process of their own (in this
one, the tests' imports of keraffe.verify.* would shadow keraffe.verify, the
function the command calls, with the package of that name).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keraffe.caffe.caffemodel import write_caffemodel
from keraffe.caffe.net import load_net
from keraffe.caffe.seeded import attach_seeded_weights

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.pycaffe, pytest.mark.zoo_convert]


def _weights(zoo, rel, tmp_path, calm=()):
    net = attach_seeded_weights(load_net(zoo / rel), seed=0)
    for name in calm:
        node = net.layer(name)
        node.weights = [w * np.float32(0.01) for w in node.weights]
    path = tmp_path / "weights.caffemodel"
    write_caffemodel(path, net.to_net_parameter(), net.weight_arrays())
    return net, path


def _keraffe(*argv):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "keraffe.cli.main", *map(str, argv)], capture_output=True,
                          text=True, env=env, timeout=900)


def _convert_and_verify(zoo, rel, weights, tmp_path, *extra):
    model = tmp_path / "model.keras"
    run = _keraffe("caffe2keras", zoo / rel, "--weights", weights, "-o", model)
    assert run.returncode == 0, run.stderr[-3000:]
    run = _keraffe("verify", model, zoo / rel, "--weights", weights, "--per-layer", "--json", *extra)
    assert run.stdout.strip(), run.stderr[-3000:]
    return run.returncode, json.loads(run.stdout)


def test_faster_rcnn_verifies_layer_by_layer_in_opencv(zoo, tmp_path):
    rel = "faster_rcnn_zf/test.prototxt"
    net, weights = _weights(zoo, rel, tmp_path, calm=("rpn_cls_score", "rpn_bbox_pred"))
    rng = np.random.default_rng(0)
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, data=rng.standard_normal(net.shapes[net.inputs[0]]).astype(np.float32),
             im_info=np.array([[224, 224, 1.0 / 16]], np.float32))
    code, report = _convert_and_verify(zoo, rel, weights, tmp_path, "--runtime", "opencv", "--input", inputs)
    rows = {row["caffe"]: row for row in report["layers"]}
    assert code == 0 and report["ok"], report
    # Every blob was compared, the proposals and the per-proposal head included.
    assert {"rois", "roi_pool_conv5", "cls_prob", "bbox_pred"} <= set(rows)
    assert all(row["ok"] for row in rows.values())
    assert rows["rois"]["shape"][1] == 5 and report["unjudged"] == {}


def test_yolo_verifies_up_to_its_detection_layer_in_caffe(zoo, tmp_path):
    rel = "yolov3_darknet/yolov3-tiny.prototxt"
    _, weights = _weights(zoo, rel, tmp_path)
    code, report = _convert_and_verify(zoo, rel, weights, tmp_path)
    assert code == 0 and report["ok"], report
    assert len(report["layers"]) > 20 and all(row["ok"] for row in report["layers"])
    assert list(report["unjudged"]) == ["layer24-yolo"]
    assert "Yolov3DetectionOutput" in report["unjudged"]["layer24-yolo"]
