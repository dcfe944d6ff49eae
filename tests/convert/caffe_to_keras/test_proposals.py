"""Faster R-CNN's region proposals, and the ROI pooling that reads them.

* brocolli-caffe's C++ ``Proposal`` is judged by real Caffe, which has it.
* py-faster-rcnn's Python ``rpn.proposal_layer.ProposalLayer`` runs in neither
  runtime as a Python layer. OpenCV's ``Proposal`` computes it (same anchors,
  decoding, clipping and NMS) except for the minimum box size, which OpenCV
  leaves out: handed over as OpenCV's Proposal (keraffe.passes.bvlc_spelling),
  it is judged by OpenCV with an im_info scale of 1/16, at which no box is
  under the minimum. The minimum, PVANet's ratios and the rest are also judged
  by numpy written from py-faster-rcnn's proposal_layer.py, generate_anchors.py,
  bbox_transform.py and its GPU NMS kernel (tests/caffe_reference.py).

Proposals have a data-dependent number of rows. Caffe's blob holds the real
ones; keraffe's Keras tensor holds post_nms_topn rows per image, padded with
-1, and every blob computed from them keeps their rows (keraffe.layout.PROPOSALS).
Scores are drawn uniformly, so no two tie (the originals' sorts order ties in
an unspecified way).
"""

from __future__ import annotations

import numpy as np
import pytest

import caffe_reference
from keraffe.errors import ShapeError

from ._harness import Batch, Case, assert_case, build_net, classes_of, convert_case, inputs, params

FEAT_STRIDE = 16


def layer(type_name: str, param: str, bottoms, tops, name: str) -> str:
    b = " ".join(f'bottom: "{{p}}{x}"' for x in bottoms)
    t = " ".join(f'top: "{{p}}{x}"' for x in tops)
    return f'layer {{ name: "{{p}}{name}" type: "{type_name}" {b} {t} {param} }}\n'


def rpn_inputs(anchors: int, height: int, width: int, batch: int = 1):
    return inputs(cls=(batch, 2 * anchors, height, width), bbox=(batch, 4 * anchors, height, width), im_info=(1, 3))


def rpn_values(scale: float, spread: float = 0.3):
    """Uniform scores, small deltas, and im_info (image height, width, scale) for the feature map."""
    def adjust(values, p):
        rng = np.random.default_rng(7)
        values[p + "cls"] = rng.uniform(0.0, 1.0, values[p + "cls"].shape).astype(np.float32)
        values[p + "bbox"] *= np.float32(spread)
        _, _, height, width = values[p + "cls"].shape
        values[p + "im_info"] = np.array([[height * FEAT_STRIDE, width * FEAT_STRIDE, scale]], np.float32)
    return adjust


def python_proposal(param_str: str, tops=("rois",)) -> str:
    return layer("Python", f'python_param {{ module: "rpn.proposal_layer" layer: "ProposalLayer" '
                           f'param_str: "{param_str}" }}', ("cls", "bbox", "im_info"), tops, "proposal")


CPP = ("proposal_param { feat_stride: 16 base_size: 16 min_size: 16 ratio: 0.5 ratio: 1 ratio: 2 "
       "scale: 64 scale: 128 pre_nms_topn: 200 post_nms_topn: %d nms_thresh: 0.6 }")

CASES = [
    # ---------------------------------------------------------------- real Caffe: brocolli's C++ Proposal
    Case("cpp_proposal", rpn_inputs(6, 6, 8), layer("Proposal", CPP % 30, ("cls", "bbox", "im_info"),
                                                    ("rois", "scores"), "proposal"),
         adjust=rpn_values(1.0), check=lambda m, p: classes_of(m, p) == ["Proposal"]),
    # Two images; both read im_info's first row, as brocolli does.
    Case("cpp_proposal_two_images", rpn_inputs(6, 5, 4, batch=2), layer(
        "Proposal", CPP % 12, ("cls", "bbox", "im_info"), ("rois",), "proposal"), adjust=rpn_values(1.0)),
    # ---------------------------------------------------------------- OpenCV: py-faster-rcnn's Python layer,
    # then ROI pooling of its proposals (rows follow the proposals)
    Case("python_proposal_roi_pooling", {**rpn_inputs(9, 7, 9), "features": (1, 4, 7, 9)},
         python_proposal("'feat_stride': 16")
         + layer("ROIPooling", "roi_pooling_param { pooled_h: 2 pooled_w: 3 spatial_scale: 0.0625 }",
                 ("features", "rois"), ("pooled",), "roi_pool")
         + layer("InnerProduct", "inner_product_param { num_output: 5 }", ("pooled",), ("score",), "fc")
         + layer("Softmax", "", ("score",), ("prob",), "softmax"),
         runtime="opencv", adjust=rpn_values(1.0 / FEAT_STRIDE)),
    # PVANet's copy of the layer, which reads ratios: 7 x 2 = 14 anchors.
    Case("python_proposal_pvanet_ratios", rpn_inputs(14, 5, 6), python_proposal(
        "{'feat_stride': 16, 'ratios': [0.333, 0.5, 0.667, 1, 1.5, 2, 3], 'scales': [2, 9]}"),
         runtime="opencv", adjust=rpn_values(1.0 / FEAT_STRIDE)),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory.mktemp("proposals"))


@pytest.mark.pycaffe
@pytest.mark.parametrize("case", params(CASES))
def test_proposals_match_the_runtimes(batch, case):
    assert_case(batch, case)


@pytest.mark.pycaffe
def test_cases_run_as_one_net(batch):
    batch.check_all_batches()


# ---------------------------------------------------------------- numpy: py-faster-rcnn's own code


def _real(rows):
    return rows[rows[:, 0] >= 0]


@pytest.mark.parametrize("param_str, anchors, ratios, scales", [
    # The minimum box size (16 x im_info[2] = 16 pixels) removes boxes here.
    ("'feat_stride': 16", 9, (0.5, 1, 2), (8, 16, 32)),
    ("{'feat_stride': 16, 'ratios': [0.333, 0.5, 0.667, 1, 1.5, 2, 3], 'scales': [2, 3, 5]}", 21,
     (0.333, 0.5, 0.667, 1, 1.5, 2, 3), (2, 3, 5)),
    # py-faster-rcnn's own layer ignores ratios; the score map's 2 x 3 x 2 channels say this net is one of those.
    ("{'feat_stride': 16, 'ratios': [1, 2], 'scales': [4, 8]}", 6, (0.5, 1, 2), (4, 8)),
], ids=["default_minimum_size", "pvanet_ratios", "ratios_ignored"])
def test_python_proposal_matches_py_faster_rcnn(param_str, anchors, ratios, scales, tmp_path):
    case = Case("proposal", rpn_inputs(anchors, 6, 7), python_proposal(param_str, ("rois", "scores")),
                adjust=rpn_values(1.0, spread=0.8))
    _, _, values, outputs = convert_case(case, tmp_path)
    p = "proposal__"
    rois, scores = caffe_reference.py_faster_rcnn_proposals(values[p + "cls"], values[p + "bbox"], values[p + "im_info"],
                                                            FEAT_STRIDE, ratios, scales)
    got = _real(outputs[p + "rois"])
    assert got.shape == rois.shape and 1 < len(rois) < 6 * 7 * anchors
    np.testing.assert_allclose(got, rois, rtol=0, atol=1e-3)
    np.testing.assert_allclose(outputs[p + "scores"][: len(rois)], scores, rtol=0, atol=1e-6)
    assert np.all(outputs[p + "scores"][len(rois):] == -1)


def test_minimum_size_removes_boxes(tmp_path):
    """At scale 1 the 16-pixel minimum removes boxes that scale 1/16 keeps: the filter acts."""
    kept = {}
    for scale in (1.0, 1.0 / FEAT_STRIDE):
        case = Case("proposal", rpn_inputs(9, 5, 5), python_proposal("'feat_stride': 16"),
                    adjust=rpn_values(scale, spread=1.5))
        _, _, values, outputs = convert_case(case, tmp_path)
        kept[scale] = len(_real(outputs["proposal__rois"]))
    assert kept[1.0] < kept[1.0 / FEAT_STRIDE]


def test_score_map_that_does_not_fit_the_anchors_is_refused(tmp_path):
    case = Case("proposal", rpn_inputs(5, 4, 4), python_proposal("'feat_stride': 16"))
    with pytest.raises(ShapeError, match="make 9 anchors, whose scores need 18 channels; the score map has 10"):
        build_net([case], tmp_path / "net.prototxt")
