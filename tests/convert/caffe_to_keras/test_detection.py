"""SSD's PriorBox and DetectionOutput against real Caffe (brocolli-caffe has the SSD layers).

The nets put many priors on small feature maps of a small image, so boxes
overlap heavily and non-maximum suppression decides what is kept; the tests
check that it did suppress. DetectionOutput's Caffe blob is (1, 1, n, 7) with
a data-dependent n; keraffe's Keras tensor is (batch, rows, 7) padded with -1
and mapped back by its layout, including Caffe's rule for images without
detections (one [image, -1, ...] row per image, only when no image has any).

Every PriorBox here sets ``clip`` explicitly: its default is false in SSD's
final schema (and keraffe's, and OpenCV's) but true in brocolli-caffe's, and
keraffe writes no default-valued field, so brocolli would clip an unset one.
(SSD's and brocolli's PriorBox hold min/max sizes in ints; the sizes here are whole.)
"""

from __future__ import annotations

import numpy as np
import pytest

from ._harness import Batch, Case, assert_case, classes_of, convert_case, inputs, params

pytestmark = pytest.mark.pycaffe


def layer(type_name: str, param: str = "", bottoms=("x",), tops=("y",), name: str | None = None) -> str:
    b = " ".join(f'bottom: "{{p}}{x}"' for x in bottoms)
    t = " ".join(f'top: "{{p}}{x}"' for x in tops)
    return f'layer {{ name: "{{p}}{name or tops[0]}" type: "{type_name}" {b} {t} {param} }}\n'


def conv(bottom: str, top: str, channels: int, extra: str = "") -> str:
    return layer("Convolution", f"convolution_param {{ num_output: {channels} kernel_size: 3 pad: 1 {extra} }}",
                 (bottom,), (top,))


def head(i: int, feature: str, priors_per_cell: int, classes: int, loc_classes: int, prior: str) -> str:
    """One SSD head: loc and conf convolutions, Permute(0, 2, 3, 1), Flatten, and the PriorBox."""
    text = conv(feature, f"loc{i}", priors_per_cell * 4 * loc_classes) + conv(feature, f"conf{i}",
                                                                             priors_per_cell * classes)
    for kind in ("loc", "conf"):
        text += layer("Permute", "permute_param { order: 0 order: 2 order: 3 order: 1 }", (f"{kind}{i}",),
                      (f"{kind}{i}_perm",))
        text += layer("Flatten", "", (f"{kind}{i}_perm",), (f"{kind}{i}_flat",))
    return text + layer("PriorBox", f"prior_box_param {{ {prior} }}", (feature, "data"), (f"prior{i}",))


def ssd(classes: int, loc_classes: int, heads, detection: str) -> str:
    """A two-scale SSD: stride-2 features, heads, concatenations, softmax over classes, DetectionOutput."""
    text = conv("data", "f0", 4, "stride: 2") + conv("f0", "f1", 4, "stride: 2")
    for i, (per_cell, prior) in enumerate(heads):
        text += head(i, f"f{i}", per_cell, classes, loc_classes, prior)
    text += layer("Concat", "concat_param { axis: 1 }", ("loc0_flat", "loc1_flat"), ("loc",))
    text += layer("Concat", "concat_param { axis: 1 }", ("conf0_flat", "conf1_flat"), ("conf",))
    text += layer("Concat", "concat_param { axis: 2 }", ("prior0", "prior1"), ("priors",))
    text += layer("Reshape", f"reshape_param {{ shape {{ dim: 0 dim: -1 dim: {classes} }} }}", ("conf",),
                  ("conf_reshape",))
    text += layer("Softmax", "softmax_param { axis: 2 }", ("conf_reshape",), ("conf_softmax",))
    text += layer("Flatten", "", ("conf_softmax",), ("conf_flat",))
    text += layer("DetectionOutput", f"detection_output_param {{ {detection} }}", ("loc", "conf_flat", "priors"),
                  ("detections",))
    return text


SSD_CENTER_SIZE = ssd(
    3, 1,
    [(4, "min_size: 4 max_size: 8 aspect_ratio: 2 flip: true clip: false variance: 0.1 variance: 0.1 variance: 0.2 "
         "variance: 0.2"),
     (6, "min_size: 8 max_size: 11 aspect_ratio: 2 aspect_ratio: 3 flip: true clip: false variance: 0.1 variance: 0.1 "
         "variance: 0.2 variance: 0.2")],
    "num_classes: 3 share_location: true background_label_id: 0 code_type: CENTER_SIZE "
    "nms_param { nms_threshold: 0.45 top_k: 40 } keep_top_k: 25 confidence_threshold: 0.05")

SSD_CORNER_PER_CLASS = ssd(
    4, 4,
    [(2, "min_size: 5 aspect_ratio: 2 flip: false clip: true variance: 0.1 step: 2 offset: 0.3"),
     (3, "min_size: 7 aspect_ratio: 3 flip: true clip: true variance: 0.2")],
    "num_classes: 4 share_location: false background_label_id: 2 code_type: CORNER "
    "nms_param { nms_threshold: 0.3 top_k: 20 eta: 0.9 } confidence_threshold: 0.1")

SSD_CORNER_SIZE_ENCODED = ssd(
    3, 1,
    [(2, "min_size: 6 aspect_ratio: 2 flip: false clip: false img_size: 12 variance: 1"),
     (1, "min_size: 9 img_h: 12 img_w: 10 step_h: 4 step_w: 3 clip: false")],
    "num_classes: 3 background_label_id: 1 code_type: CORNER_SIZE variance_encoded_in_target: true "
    "nms_param { nms_threshold: 0.5 } keep_top_k: 7")

DATA = inputs(data=(2, 3, 12, 10))

# Detection inputs given directly, to control the scores image by image.
DIRECT_INPUTS = inputs(data=(2, 3, 8, 8), feat=(2, 1, 4, 4), loc=(2, 32 * 4), conf=(2, 32 * 3))
DIRECT = (layer("PriorBox", "prior_box_param { min_size: 4 aspect_ratio: 2 flip: false clip: true variance: 0.1 }",
                ("feat", "data"), ("priors",))
          + layer("DetectionOutput", "detection_output_param { num_classes: 3 code_type: CORNER "
                  "nms_param { nms_threshold: 0.35 top_k: 12 } confidence_threshold: 0.0 }",
                  ("loc", "conf", "priors"), ("detections",)))


def _loc_small(values, p):
    values[p + "loc"] *= np.float32(0.5)


def _second_image_without_scores(values, p):
    _loc_small(values, p)
    values[p + "conf"][1] = -np.abs(values[p + "conf"][1]) - 0.5


def _no_scores(values, p):
    _loc_small(values, p)
    values[p + "conf"][:] = -np.abs(values[p + "conf"]) - 0.5


def detection_layers(model, p):
    assert classes_of(model, p).count("DetectionOutput") == 1
    assert "Permute" not in classes_of(model, p), classes_of(model, p)


CASES = [
    Case("ssd_center_size", DATA, SSD_CENTER_SIZE, check=detection_layers),
    Case("ssd_corner_per_class_eta", DATA, SSD_CORNER_PER_CLASS, check=detection_layers),
    Case("ssd_corner_size_encoded_variance", DATA, SSD_CORNER_SIZE_ENCODED, check=detection_layers),
    Case("direct", DIRECT_INPUTS, DIRECT, adjust=_loc_small),
    # Image 1 has no score above the threshold: Caffe lists image 0's rows only.
    Case("direct_second_image_empty", DIRECT_INPUTS, DIRECT, adjust=_second_image_without_scores),
    # No image has a detection: Caffe writes one [image, -1, ...] row per image.
    Case("direct_no_detections", DIRECT_INPUTS, DIRECT, adjust=_no_scores),
    # ---------------------------------------------------------------- PriorBox alone
    Case("priorbox_variants", inputs(data=(2, 3, 15, 11), f=(2, 2, 5, 4), g=(2, 2, 2, 3)),
         layer("PriorBox", "prior_box_param { min_size: 3 min_size: 6 max_size: 5 max_size: 9 aspect_ratio: 2 "
               "aspect_ratio: 0.5 flip: true clip: false variance: 0.1 variance: 0.2 variance: 0.3 variance: 0.4 }",
               ("f", "data"), ("p0",))
         + layer("PriorBox", "prior_box_param { min_size: 7 aspect_ratio: 3 flip: true clip: true offset: 0.2 "
                 "step_h: 6 step_w: 4 img_h: 14 img_w: 12 }", ("g", "data"), ("p1",))
         + layer("PriorBox", "prior_box_param { min_size: 4 max_size: 10 img_size: 20 step: 5 clip: true "
                 "variance: 0.25 }", ("f", "data"), ("p2",))),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory.mktemp("detection"))


@pytest.mark.parametrize("case", params(CASES))
def test_detection_matches_caffe(batch, case):
    assert_case(batch, case)


def test_cases_run_as_one_net(batch):
    batch.check_all_batches()


def test_nms_suppresses_overlapping_boxes(tmp_path):
    """In the direct net, many candidates per class pass the threshold; NMS must drop some of them."""
    case = Case("direct", DIRECT_INPUTS, DIRECT, adjust=_loc_small)
    _, _, values, outputs = convert_case(case, tmp_path)
    detections = outputs["direct__detections"][0, 0]
    conf = values["direct__conf"].reshape(2, 32, 3)
    for image in range(2):
        for label in range(1, 3):
            candidates = min(12, int(np.sum(conf[image, :, label] > 0.0)))
            kept = int(np.sum((detections[:, 0] == image) & (detections[:, 1] == label)))
            assert 0 < kept < candidates, (image, label, kept, candidates)


def test_ssd_nms_keeps_fewer_than_top_k(tmp_path):
    case = Case("ssd", DATA, SSD_CENTER_SIZE)
    _, _, _, outputs = convert_case(case, tmp_path)
    detections = outputs["ssd__detections"][0, 0]
    # 174 priors, 2 foreground classes, top_k 40: NMS and keep_top_k 25 cut that to at most 25 per image.
    for image in range(2):
        rows = detections[detections[:, 0] == image]
        assert 0 < len(rows) <= 25
        assert set(np.unique(rows[:, 1])) <= {1.0, 2.0}
