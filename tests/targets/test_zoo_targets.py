"""Real nets from the zoo: what keraffe check finds for each target, and what --fix makes of it.

* Darknet's YOLOv3: Ascend needs Huawei's Upsample spelling (fixed) and
  Huawei's own YOLO head (refused, with the recipe); keraffe knows the fork's
  head's shapes, so every layer is checked in full.
* GoogLeNet for RKNN: four MAX poolings round differently down than up; the
  fitted net passes and computes the same outputs, bit for bit, in real Caffe.
* MobileNet-YOLOv3 for NNIE: its fork's DepthwiseConvolution is neither Caffe
  1.0 nor an NNIE layer; written as grouped Convolution, the net passes.
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.caffe.net import load_net
from keraffe.caffe.seeded import attach_seeded_weights
from keraffe.cli.main import main
from keraffe.targets import get_profile
from keraffe.targets.check import check_files, check_net
from keraffe.targets.fit import fit_net


def test_yolov3_for_ascend(zoo, tmp_path, capsys):
    path = zoo / "yolov3_darknet/yolov3.prototxt"
    report = check_files(path, "ascend")
    errors = {(v.rule, v.layer, v.fix) for v in report.errors}
    upsamples = {v.layer for v in report.errors if v.rule == "A-25"}
    assert len(upsamples) == 2 and all(v.fix == "upsample_stride_spelling" for v in report.errors if v.rule == "A-25")
    assert ("A-26/27", "detection_out", None) in errors
    assert report.unchecked == []
    fixed = tmp_path / "yolov3_ascend.prototxt"
    assert main(["check", str(path), "--target", "ascend", "--fix", "-o", str(fixed)]) == 1  # the head remains
    out = capsys.readouterr().out
    assert out.count("fixed: upsample_stride_spelling") == 2
    assert {(v.rule, v.layer) for v in check_files(fixed, "ascend").errors} == {("A-26/27", "detection_out")}
    assert "stride: 2" in fixed.read_text()


@pytest.mark.pycaffe
def test_googlenet_for_rknn_fits_and_computes_the_same(zoo):
    from keraffe.verify import run_reference, seeded_inputs

    net = attach_seeded_weights(load_net(zoo / "bvlc_googlenet/deploy.prototxt", None, (1, 3, 224, 224)))
    profile = get_profile("rknn")
    assert {(v.rule, v.fix) for v in check_net(net, profile).errors} == {("R-12", "ceil_pooling_as_floor")}
    fitted = fit_net(net, profile)
    assert len(fitted.notes) == 4 and check_net(fitted.net, profile).clean
    inputs = seeded_inputs(net)
    outputs = [t.blob for t in net.outputs]
    before = run_reference(net, inputs, outputs, "caffe")
    after = run_reference(fitted.net, inputs, outputs, "caffe")
    for blob in outputs:
        np.testing.assert_array_equal(after[blob], before[blob])


def test_mobilenet_yolov3_for_nnie(zoo):
    net = load_net(zoo / "mobilenet_yolov3_lite_tusimple/mobilenet_yolov3_lite_deploy.prototxt")
    profile = get_profile("nnie")
    before = check_net(net, profile)
    assert {(v.rule, v.layer_type, v.fix) for v in before.errors} == {
        ("N-4", "DepthwiseConvolution", "depthwise_as_grouped")}
    assert check_net(fit_net(net, profile).net, profile).clean
