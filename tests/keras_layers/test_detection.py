"""PriorBox and DetectionOutput against SSD's algorithm, written out in plain numpy.

References from weiliu89's SSD: prior_box_layer.cpp (per cell, per min size,
held in an int as SSD's code does: the min square, the sqrt(min * max) square, then one box per other aspect
ratio; corners normalised by the image size, optionally clipped; then the
variances) and detection_output_layer.cpp with bbox_util.cpp (DecodeBBox for
the three code types, GetMaxScoreIndex: scores above the threshold, stable
sorted, top_k; ApplyNMSFast with the adaptive eta; keep_top_k over all
classes; rows label by label in score order).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from keraffe.keras_layers import DetectionOutput, PriorBox

from ._common import assert_close, check_layer, rng

pytestmark = pytest.mark.backends


def expand_ratios(ratios, flip):
    expanded = [1.0]
    for ratio in ratios:
        if any(abs(ratio - r) < 1e-6 for r in expanded):
            continue
        expanded.append(ratio)
        if flip:
            expanded.append(1.0 / ratio)
    return expanded


def ssd_priors(layer_hw, image_hw, min_sizes, max_sizes, ratios, variances, step=None, offset=0.5, clip=False):
    img_h, img_w = image_hw
    step_h, step_w = step or (img_h / layer_hw[0], img_w / layer_hw[1])
    corners = []
    for h in range(layer_hw[0]):
        for w in range(layer_hw[1]):
            cx, cy = (w + offset) * step_w, (h + offset) * step_h
            for s, min_size in enumerate(min_sizes):
                min_size = int(min_size)  # SSD: "int min_size_ = min_sizes_[s];" (likewise max_size_)
                boxes = [(min_size, min_size)]
                if max_sizes:
                    side = math.sqrt(min_size * int(max_sizes[s]))
                    boxes.append((side, side))
                boxes += [(min_size * math.sqrt(r), min_size / math.sqrt(r)) for r in ratios if abs(r - 1) >= 1e-6]
                for bw, bh in boxes:
                    corners += [(cx - bw / 2) / img_w, (cy - bh / 2) / img_h, (cx + bw / 2) / img_w,
                                (cy + bh / 2) / img_h]
    corners = np.array(corners)
    if clip:
        corners = np.clip(corners, 0, 1)
    variance = np.resize(np.array(variances or [0.1], np.float64), corners.size)
    return np.stack([corners, variance])[None]


PRIORS = [
    # (id, feature HW, image HW, min, max, ratios, flip, variances, image_size, step, offset, clip)
    ("ssd_style", (3, 4), (12, 10), [4.0], [8.0], [2.0], True, [0.1, 0.1, 0.2, 0.2], None, None, 0.5, False),
    ("two_sizes_clip", (5, 4), (15, 11), [3.0, 6.0], [5.0, 9.0], [2.0, 0.5, 3.0], True, [0.1], None, None, 0.5,
     True),
    ("fixed_image_and_step", (2, 3), (15, 11), [7.0], [], [3.0], False, [0.2], (14, 12), (6.0, 4.0), 0.2, True),
    ("non_integer_sizes", (4, 4), (8, 8), [2.5], [5.5], [1.5], True, [0.1, 0.2, 0.3, 0.4], None, None, 0.3, False),
]


@pytest.mark.parametrize("name, feature, image, min_sizes, max_sizes, ratios, flip, variances, image_size, step, "
                         "offset, clip", PRIORS, ids=[p[0] for p in PRIORS])
def test_prior_box(name, feature, image, min_sizes, max_sizes, ratios, flip, variances, image_size, step, offset,
                   clip, tmp_path):
    expanded = expand_ratios(ratios, flip)
    expected = ssd_priors(feature, image_size or image, min_sizes, max_sizes, expanded, variances, step, offset,
                          clip)
    layer = PriorBox(min_sizes, max_sizes, expanded, variances, image_size, step, offset, clip)
    inputs = [np.zeros((2,) + feature + (3,), np.float32), np.zeros((2,) + image + (3,), np.float32)]
    check_layer(layer, inputs, expected, tmp_path)


# ---------------------------------------------------------------- DetectionOutput


def box_size(b):
    return 0.0 if b[2] < b[0] or b[3] < b[1] else (b[2] - b[0]) * (b[3] - b[1])


def jaccard(a, b):
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return 0.0
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / (box_size(a) + box_size(b) - inter)


def decode(loc, prior, variance, code_type, encoded):
    var = np.ones(4) if encoded else variance
    pw, ph = prior[2] - prior[0], prior[3] - prior[1]
    if code_type == "CORNER":
        return prior + var * loc
    if code_type == "CORNER_SIZE":
        return prior + var * loc * np.array([pw, ph, pw, ph])
    cx = var[0] * loc[0] * pw + (prior[0] + prior[2]) / 2
    cy = var[1] * loc[1] * ph + (prior[1] + prior[3]) / 2
    w = math.exp(var[2] * loc[2]) * pw
    h = math.exp(var[3] * loc[3]) * ph
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def ssd_detections(loc, conf, priors, num_classes, share_location, background, nms_threshold, top_k, eta,
                   keep_top_k, threshold, code_type, encoded):
    """Caffe's rows [image, label, score, xmin, ymin, xmax, ymax] for each image."""
    num_priors = priors.shape[2] // 4
    prior_boxes = priors[0, 0].reshape(num_priors, 4)
    prior_vars = priors[0, 1].reshape(num_priors, 4)
    loc_classes = 1 if share_location else num_classes
    threshold = -np.finfo(np.float32).max if threshold is None else threshold
    result = []
    for n in range(loc.shape[0]):
        locs = loc[n].reshape(num_priors, loc_classes, 4)
        scores = conf[n].reshape(num_priors, num_classes)
        boxes = {c: np.array([decode(locs[p, 0 if share_location else c], prior_boxes[p], prior_vars[p], code_type,
                                     encoded) for p in range(num_priors)]) for c in range(num_classes)}
        indices = {}
        for c in range(num_classes):
            if c == background:
                continue
            order = sorted([p for p in range(num_priors) if scores[p, c] > threshold], key=lambda p: -scores[p, c])
            if top_k > -1:
                order = order[:top_k]
            kept, adaptive = [], nms_threshold
            for p in order:
                keep = all(jaccard(boxes[c][p], boxes[c][k]) <= adaptive for k in kept)
                if keep:
                    kept.append(p)
                    if eta < 1 and adaptive > 0.5:
                        adaptive *= eta
            indices[c] = kept
        if keep_top_k > -1 and sum(len(v) for v in indices.values()) > keep_top_k:
            pairs = sorted(((scores[p, c], c, p) for c, kept in indices.items() for p in kept), key=lambda t: -t[0])
            indices = {}
            for _, c, p in pairs[:keep_top_k]:
                indices.setdefault(c, []).append(p)
        rows = [[n, c, scores[p, c], *boxes[c][p]] for c in sorted(indices) for p in indices[c]]
        result.append(np.array(rows).reshape(-1, 7))
    return result


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


DETECTIONS = [
    # (id, classes, share, background, nms, top_k, eta, keep_top_k, threshold, code type, encoded)
    ("center_size", 3, True, 0, 0.45, 20, 1.0, 15, 0.05, "CENTER_SIZE", False),
    ("corner_per_class_adaptive", 3, False, -1, 0.7, -1, 0.8, -1, None, "CORNER", False),
    ("corner_size_encoded_keep4", 4, True, 1, 0.5, 30, 1.0, 4, 0.1, "CORNER_SIZE", True),
]


@pytest.mark.parametrize("name, classes, share, background, nms, top_k, eta, keep_top_k, threshold, code, encoded",
                         DETECTIONS, ids=[d[0] for d in DETECTIONS])
def test_detection_output(name, classes, share, background, nms, top_k, eta, keep_top_k, threshold, code, encoded,
                          tmp_path):
    r = rng(12)
    # 4 x 4 cells, 3 wide boxes each on an 8 x 8 image: they overlap a lot.
    priors = ssd_priors((4, 4), (8, 8), [4.0], [7.0], [1.0, 2.0], [0.1, 0.1, 0.2, 0.2]).astype(np.float32)
    num_priors = priors.shape[2] // 4
    loc_classes = 1 if share else classes
    loc = (0.5 * r.standard_normal((2, num_priors * loc_classes * 4))).astype(np.float32)
    conf = softmax(2 * r.standard_normal((2, num_priors, classes))).reshape(2, -1).astype(np.float32)
    layer = DetectionOutput(classes, share, background, nms, top_k, eta, keep_top_k, threshold, code, encoded)
    expected = ssd_detections(loc.astype(np.float64), conf.astype(np.float64), priors.astype(np.float64), classes,
                              share, background, nms, top_k, eta, keep_top_k, threshold, code, encoded)
    rows = layer.compute_output_shape((loc.shape, conf.shape, priors.shape))[1]
    padded = np.full((2, rows, 7), -1.0)
    for n, image_rows in enumerate(expected):
        padded[n, : len(image_rows)] = image_rows
    check_layer(layer, [loc, conf, priors], padded, tmp_path, tolerance=1e-5, batched=False)
    # NMS mattered: in each image it suppressed some of the candidates above the threshold.
    unlimited = ssd_detections(loc.astype(np.float64), conf.astype(np.float64), priors.astype(np.float64), classes,
                               share, background, nms, top_k, eta, -1, threshold, code, encoded)
    scores = conf.reshape(2, num_priors, classes)
    for n, image_rows in enumerate(unlimited):
        above = [int(np.sum(scores[n, :, c] > (threshold or -np.inf))) for c in range(classes) if c != background]
        candidates = sum(min(a, top_k) if top_k > -1 else a for a in above)
        assert 0 < len(image_rows) < candidates, (n, len(image_rows), candidates)


def test_detection_output_image_without_scores(tmp_path):
    """Image 1 has no score above the threshold: its rows are all padding."""
    r = rng(13)
    priors = ssd_priors((3, 3), (6, 6), [3.0], [], [2.0], [0.1]).astype(np.float32)
    num_priors = priors.shape[2] // 4
    loc = (0.3 * r.standard_normal((2, num_priors * 4))).astype(np.float32)
    conf = r.uniform(0.2, 1.0, (2, num_priors * 2)).astype(np.float32)
    conf[1] = 0.05
    layer = DetectionOutput(2, confidence_threshold=0.1, nms_threshold=0.4, top_k=8)
    expected = ssd_detections(loc.astype(np.float64), conf.astype(np.float64), priors.astype(np.float64), 2, True, 0,
                              0.4, 8, 1.0, -1, 0.1, "CORNER", False)
    assert len(expected[0]) > 0 and len(expected[1]) == 0
    rows = layer.compute_output_shape((loc.shape, conf.shape, priors.shape))[1]
    padded = np.full((2, rows, 7), -1.0)
    padded[0, : len(expected[0])] = expected[0]
    out = check_layer(layer, [loc, conf, priors], padded, tmp_path, batched=False)[0]
    assert_close("image 1", np.full((rows, 7), -1.0), out[1])


# ---------------------------------------------------------------- MobileNet-YOLO, Faster R-CNN


def test_yolo_detection_outputs_match_the_fork(tmp_path):
    """Both YOLO layers against numpy ports of MobileNet-YOLO's C++ (tests/caffe_reference.py)."""
    import caffe_reference
    from keraffe.keras_layers import Yolov3DetectionOutput, YoloDetectionOutput

    from ._common import nchw

    biases = [1.08, 1.19, 3.42, 4.41, 6.63, 11.38]
    maps = rng(5).standard_normal((1, 5, 5, 27)).astype(np.float32)
    expected = caffe_reference.yolo_detection_output([nchw(maps)], 4, 3, biases, 0.2, 0.45)[0, 0]
    rows = check_layer(YoloDetectionOutput(4, 3, biases, 0.2, 0.45, name="yolo"), maps,
                       _padded(expected, 75), tmp_path)[0]
    assert 1 < np.sum(rows[0, :, 0] >= 0) < 75
    v3 = [rng(6).standard_normal((1, 4, 5, 24)).astype(np.float32), rng(7).standard_normal((1, 8, 10, 24)).astype(
        np.float32)]
    biases = [10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119]
    expected = caffe_reference.yolov3_detection_output([nchw(m) for m in v3], 3, 3, biases, [3, 4, 5, 0, 1, 2],
                                                       [32, 16], 0.3, 0.45)[0, 0]
    check_layer(Yolov3DetectionOutput(3, 3, biases, [3, 4, 5, 0, 1, 2], [32, 16], 0.3, 0.45, name="yolo3"), v3,
                _padded(expected, 300), tmp_path)


def _padded(rows, count):
    """The fork's (n, 7) rows in keraffe's convention: (1, count, 7), padded with -1."""
    out = np.full((1, count, 7), -1.0, np.float32)
    out[0, :len(rows)] = rows
    return out


def test_proposals_match_py_faster_rcnn(tmp_path):
    """py-faster-rcnn's ProposalLayer (rpn/proposal_layer.py and its GPU NMS), ported in tests/caffe_reference.py."""
    import caffe_reference
    from keraffe.caffe.anchors import py_faster_rcnn_anchors
    from keraffe.keras_layers import Proposal

    from ._common import nchw

    scores = rng(8).uniform(0.0, 1.0, (1, 6, 7, 18)).astype(np.float32)
    deltas = (rng(9).standard_normal((1, 6, 7, 36)) * 0.8).astype(np.float32)
    im_info = np.array([[96, 112, 1.0]], np.float32)
    rois, kept = caffe_reference.py_faster_rcnn_proposals(nchw(scores), nchw(deltas), im_info, 16,
                                                          post_nms_top_n=50)
    layer = Proposal(py_faster_rcnn_anchors((0.5, 1, 2), (8, 16, 32)).tolist(), 16, post_nms_topn=50, name="proposal")
    expected = [np.full((50, 5), -1.0, np.float32), np.full((50, 1), -1.0, np.float32)]
    expected[0][:len(rois)], expected[1][:len(rois)] = rois, kept
    check_layer(layer, [scores, deltas, im_info], expected, tmp_path, tolerance=2e-6)
