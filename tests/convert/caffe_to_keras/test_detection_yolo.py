"""MobileNet-YOLO's YoloDetectionOutput and Yolov3DetectionOutput against numpy ports of the fork's C++ source.

Neither real Caffe (brocolli) nor OpenCV has these layers, so the judge is
tests/caffe_reference.py, written from MobileNet-YOLO's
yolo_detection_output_layer.cpp and yolov3_detection_output_layer.cpp (loops,
float32 arithmetic, std::sort by score, ApplyNms) and sharing no code with
keraffe. Inputs are seeded normals: many boxes pass the threshold and overlap,
so NMS decides what is kept (the tests check that it dropped some), and no two
scores tie (the fork's std::sort leaves the order of equal scores unspecified).
"""

from __future__ import annotations

import numpy as np
import pytest

import caffe_reference
from keraffe.errors import ConversionError

from ._harness import Case, assert_close, build_net, classes_of, convert, convert_case, inputs

BIASES = "biases: 1.08 biases: 1.19 biases: 3.42 biases: 4.41 biases: 6.63 biases: 11.38"
V3_BIASES = ("biases: 10 biases: 13 biases: 16 biases: 30 biases: 33 biases: 23 biases: 30 biases: 61 "
             "biases: 62 biases: 45 biases: 59 biases: 119")


def layer(type_name: str, param: str, bottoms, name: str = "det") -> str:
    b = " ".join(f'bottom: "{{p}}{x}"' for x in bottoms)
    return f'layer {{ name: "{{p}}{name}" type: "{type_name}" {b} top: "{{p}}detections" {param} }}\n'


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split()[1::2]]


def _run(case, tmp_path):
    _, _, values, outputs = convert_case(case, tmp_path)
    return values, outputs[case.id + "__detections"]


V2_PARAM = f"yolo_detection_output_param {{ num_classes: 4 num_box: 3 confidence_threshold: 0.2 {BIASES} }}"


def test_yolov2_one_map(tmp_path):
    case = Case("yolo2", inputs(a=(1, 27, 5, 5)), layer("YoloDetectionOutput", V2_PARAM, ("a",)),
                check=lambda m, p: classes_of(m, p) == ["YoloDetectionOutput"])
    values, got = _run(case, tmp_path)
    expected = caffe_reference.yolo_detection_output([values["yolo2__a"]], 4, 3, _floats(BIASES), 0.2, 0.45)
    assert_close(case.id, expected, got, tolerance=1e-5)
    # With a threshold no IoU reaches, every candidate is kept: NMS dropped some of them.
    candidates = caffe_reference.yolo_detection_output([values["yolo2__a"]], 4, 3, _floats(BIASES), 0.2, 2.0)
    assert 1 < expected.shape[2] < candidates.shape[2]


def test_yolov2_two_maps_and_default_threshold(tmp_path):
    """mobilenet_yolov2's head: two maps, each decoded on its own grid, one NMS over both."""
    param = f"yolo_detection_output_param {{ num_classes: 4 num_box: 3 nms_threshold: 0.3 {BIASES} }}"
    case = Case("yolo2_two", inputs(a=(1, 27, 4, 4), b=(1, 27, 6, 6)), layer("YoloDetectionOutput", param, ("a", "b")))
    values, got = _run(case, tmp_path)
    expected = caffe_reference.yolo_detection_output([values["yolo2_two__a"], values["yolo2_two__b"]], 4, 3,
                                                     _floats(BIASES), 0.01, 0.3)
    assert_close(case.id, expected, got, tolerance=1e-5)
    assert expected.shape[2] > 1


def test_yolov2_without_detections_gives_one_row_of_minus_one(tmp_path):
    param = f"yolo_detection_output_param {{ num_classes: 4 num_box: 3 confidence_threshold: 0.999 {BIASES} }}"
    case = Case("yolo2_none", inputs(a=(1, 27, 3, 3)), layer("YoloDetectionOutput", param, ("a",)))
    values, got = _run(case, tmp_path)
    expected = caffe_reference.yolo_detection_output([values["yolo2_none__a"]], 4, 3, _floats(BIASES), 0.999, 0.45)
    np.testing.assert_array_equal(expected, [[[[0, -1, -1, -1, -1, -1, -1]]]])
    np.testing.assert_array_equal(got, expected)


V3_PARAM = (f"yolov3_detection_output_param {{ num_classes: 3 num_box: 3 confidence_threshold: 0.3 "
            f"nms_threshold: 0.45 {V3_BIASES} mask: 3 mask: 4 mask: 5 mask: 0 mask: 1 mask: 2 "
            "anchors_scale: 32 anchors_scale: 16 mask_group_num: 2 }")


def test_yolov3_two_maps(tmp_path):
    """yolov3-tiny's head. Several classes of one box pass the threshold; NMS keeps at most the best of them."""
    case = Case("yolo3", inputs(a=(1, 24, 4, 5), b=(1, 24, 8, 10)),
                layer("Yolov3DetectionOutput", V3_PARAM, ("a", "b")),
                check=lambda m, p: classes_of(m, p) == ["Yolov3DetectionOutput"])
    values, got = _run(case, tmp_path)
    bottoms = [values["yolo3__a"], values["yolo3__b"]]
    expected = caffe_reference.yolov3_detection_output(bottoms, 3, 3, _floats(V3_BIASES), [3, 4, 5, 0, 1, 2],
                                                       [32, 16], 0.3, 0.45)
    assert_close(case.id, expected, got, tolerance=1e-5)
    candidates = caffe_reference.yolov3_detection_output(bottoms, 3, 3, _floats(V3_BIASES), [3, 4, 5, 0, 1, 2],
                                                         [32, 16], 0.3, 2.0)
    boxes = {tuple(row[3:]) for row in candidates[0, 0]}
    assert 1 < expected.shape[2] < len(boxes) < candidates.shape[2]  # several classes per box; NMS dropped some


def test_yolov3_without_detections(tmp_path):
    param = V3_PARAM.replace("confidence_threshold: 0.3", "confidence_threshold: 1.0")
    case = Case("yolo3_none", inputs(a=(1, 24, 2, 2), b=(1, 24, 4, 4)), layer("Yolov3DetectionOutput", param, ("a", "b")))
    _, got = _run(case, tmp_path)
    np.testing.assert_array_equal(got, [[[[0, -1, -1, -1, -1, -1, -1]]]])


@pytest.mark.parametrize("text, message", [
    (layer("YoloDetectionOutput", V2_PARAM, ("a",)), "square grid"),
    (layer("Yolov3DetectionOutput", V3_PARAM.replace("mask_group_num: 2", "mask_group_num: 1 gaussian_box: true"),
           ("a",)), "gaussian_box"),
    (layer("YoloDetectionOutput", V2_PARAM.replace("num_classes: 4", "num_classes: 5"), ("a",)), "channels"),
], ids=["not_square", "gaussian", "channels"])
def test_what_the_fork_would_misread_is_refused(text, message, tmp_path):
    case = Case("refused", inputs(a=(1, 27, 4, 6) if "square" in message else (1, 24 if "gaussian" in message else 27,
                                                                               4, 4)), text)
    with pytest.raises(ConversionError, match=message):
        convert(build_net([case], tmp_path / "net.prototxt"))
