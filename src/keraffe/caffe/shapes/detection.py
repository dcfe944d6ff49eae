"""SSD's PriorBox and DetectionOutput, MobileNet-YOLO's detection outputs, Faster R-CNN's proposals."""

from __future__ import annotations

import dataclasses

from keraffe.caffe.python_layers import python_layer_params
from keraffe.caffe.shapes import LayerShapes, count, expect_bottoms, python_layer_kind, shape_rule
from keraffe.errors import ShapeError


def prior_aspect_ratios(param) -> list[float]:
    """1, then each new ratio (and its inverse when flipping), duplicates removed as SSD does."""
    ratios = [1.0]
    for ratio in param.aspect_ratio:
        if any(abs(ratio - existing) < 1e-6 for existing in ratios):
            continue
        ratios.append(ratio)
        if param.flip:
            ratios.append(1.0 / ratio)
    return ratios


def priors_per_cell(param) -> int:
    if not len(param.min_size):
        raise ShapeError("prior_box_param needs min_size")
    if len(param.max_size) and len(param.max_size) != len(param.min_size):
        raise ShapeError(f"{len(param.max_size)} max_size values for {len(param.min_size)} min_size values")
    return len(prior_aspect_ratios(param)) * len(param.min_size) + len(param.max_size)


@shape_rule("PriorBox")
def prior_box(layer, bottoms):
    expect_bottoms(layer, bottoms, 2)
    feature = bottoms[0]
    if len(feature) != 4:
        raise ShapeError(f"the feature map must be (N, C, H, W), got {feature}")
    return LayerShapes(((1, 2, feature[2] * feature[3] * priors_per_cell(layer.prior_box_param) * 4),))


@shape_rule("DetectionOutput")
def detection_output(layer, bottoms):
    expect_bottoms(layer, bottoms, 3)
    loc, conf, priors = bottoms
    param = layer.detection_output_param
    num_priors = priors[2] // 4
    loc_classes = 1 if param.share_location else param.num_classes
    if len(loc) < 2 or num_priors * loc_classes * 4 != loc[1]:
        raise ShapeError(f"{num_priors} priors need {num_priors * loc_classes * 4} location values, got {loc}")
    if len(conf) < 2 or num_priors * param.num_classes != conf[1]:
        raise ShapeError(f"{num_priors} priors need {num_priors * param.num_classes} confidences, got {conf}")
    # Caffe sets (1, 1, 1, 7) at setup; the forward pass sets the number of kept boxes.
    return LayerShapes(((1, 1, 1, 7),), dynamic=True)


@shape_rule("YoloDetectionOutput")
def yolo_detection_output(layer, bottoms):
    """MobileNet-YOLO: rows of [image, label, score, box] after NMS; Caffe sets (1, 1, 1, 7) until the forward pass."""
    expect_bottoms(layer, bottoms, 1, 2)
    for bottom in bottoms:
        if len(bottom) != 4:
            raise ShapeError(f"needs (N, C, H, W) feature maps, got {bottom}")
    return LayerShapes(((1, 1, 1, 7),), dynamic=True)


@shape_rule("Yolov3DetectionOutput")
def yolov3_detection_output(layer, bottoms):
    param = layer.yolov3_detection_output_param
    if len(bottoms) != param.mask_group_num:
        raise ShapeError(f"has {len(bottoms)} bottoms and mask_group_num {param.mask_group_num}; the fork CHECKs "
                         "they are equal")
    for bottom in bottoms:
        if len(bottom) != 4:
            raise ShapeError(f"needs (N, C, H, W) feature maps, got {bottom}")
    return LayerShapes(((1, 1, 1, 7),), dynamic=True)


# ------------------------------------------------------------------ Faster R-CNN's region proposals

#: py-faster-rcnn's Python proposal layer (also py-R-FCN's, and PVANet's copy that reads ratios).
PYTHON_PROPOSAL = python_layer_kind("rpn.proposal_layer", "ProposalLayer")
#: py-faster-rcnn's default ratios (generate_anchors), the only ones its ProposalLayer uses.
DEFAULT_RATIOS = (0.5, 1.0, 2.0)
#: lib/fast_rcnn/config.py, TEST: RPN_PRE_NMS_TOP_N, RPN_POST_NMS_TOP_N, RPN_NMS_THRESH, RPN_MIN_SIZE.
PYTHON_PROPOSAL_TEST = {"pre_nms_topn": 6000, "post_nms_topn": 300, "nms_thresh": 0.7, "min_size": 16}


@dataclasses.dataclass(frozen=True)
class PythonProposalSetting:
    feat_stride: int
    ratios: tuple[float, ...]
    scales: tuple[float, ...]
    #: Why the ratios are what they are (PVANet's copy of the layer reads them; py-faster-rcnn's does not).
    note: str = ""


def python_proposal_setting(layer, score_channels: int) -> PythonProposalSetting:
    """feat_stride, ratios and scales of the Python ProposalLayer, from its param_str and its score map.

    py-faster-rcnn's layer reads 'feat_stride' and 'scales' (default 8, 16, 32)
    and always uses ratios (0.5, 1, 2); PVANet's copy of the same file also
    reads 'ratios'. Both read the second half of the score map's channels as
    object scores, so that map has 2 x anchors channels: when param_str gives
    ratios, the channel count says which of the two layers the net was made for.
    """
    try:
        params = python_layer_params(layer)
        feat_stride = int(params["feat_stride"])
        scales = tuple(float(s) for s in params.get("scales", (8, 16, 32)))
        given = params.get("ratios")
        ratios = tuple(float(r) for r in given) if given is not None else DEFAULT_RATIOS
    except (KeyError, TypeError, ValueError) as error:
        raise ShapeError(f"param_str {layer.python_param.param_str!r} does not give what the layer reads "
                         f"('feat_stride', and optionally 'scales' and 'ratios'): {error}") from None
    note = ""
    if given is not None and score_channels != 2 * len(ratios) * len(scales):
        if score_channels == 2 * len(DEFAULT_RATIOS) * len(scales):
            note = ("param_str gives ratios, which py-faster-rcnn's ProposalLayer does not read; the score map's "
                    f"{score_channels} channels say this net uses its default ratios {DEFAULT_RATIOS}")
            ratios = DEFAULT_RATIOS
    anchors = len(ratios) * len(scales)
    if score_channels != 2 * anchors:
        raise ShapeError(f"{len(ratios)} ratios x {len(scales)} scales make {anchors} anchors, whose scores need "
                         f"{2 * anchors} channels; the score map has {score_channels}")
    return PythonProposalSetting(feat_stride, ratios, scales, note)


def _proposal_maps(bottoms, anchors: int) -> None:
    scores, deltas, im_info = bottoms
    if len(scores) != 4 or len(deltas) != 4:
        raise ShapeError(f"needs (N, 2A, H, W) scores and (N, 4A, H, W) deltas, got {scores} and {deltas}")
    if scores[1] != 2 * anchors or deltas[1] != 4 * anchors or scores[2:] != deltas[2:] or scores[0] != deltas[0]:
        raise ShapeError(f"{anchors} anchors need scores (N, {2 * anchors}, H, W) and deltas (N, {4 * anchors}, H, W) "
                         f"of one size; got {scores} and {deltas}")
    if count(im_info, 1) < 3:
        raise ShapeError(f"im_info must hold (height, width, scale), got {im_info}")


@shape_rule(PYTHON_PROPOSAL)
def python_proposal(layer, bottoms):
    """(R, 5) rois and (R, 1) scores; R is known after the forward pass (setup says 1)."""
    expect_bottoms(layer, bottoms, 3)
    setting = python_proposal_setting(layer, bottoms[0][1] if len(bottoms[0]) > 1 else 0)
    _proposal_maps(bottoms, len(setting.ratios) * len(setting.scales))
    # setup() shapes the scores (1, 1, 1, 1); forward() reshapes them to (R, 1), their shape from then on.
    tops = [(1, 5), (1, 1)][: max(1, len(layer.top))]
    return LayerShapes(tuple(tops), dynamic=True)


@shape_rule("Proposal")
def proposal(layer, bottoms):
    """brocolli-caffe's C++ Proposal: up to post_nms_topn rows per image; the forward pass says how many."""
    expect_bottoms(layer, bottoms, 3)
    param = layer.proposal_param
    anchors = len(param.ratio) * len(param.scale)
    if not anchors:
        raise ShapeError("proposal_param needs at least one ratio and one scale")
    _proposal_maps(bottoms, anchors)
    rows = bottoms[0][0] * param.post_nms_topn
    tops = [(rows, 5), (rows,)][: max(1, len(layer.top))]
    return LayerShapes(tuple(tops), dynamic=True)
