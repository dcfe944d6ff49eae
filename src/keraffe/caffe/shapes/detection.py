"""SSD's PriorBox and DetectionOutput."""

from __future__ import annotations

from keraffe.caffe.shapes import LayerShapes, expect_bottoms, shape_rule
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
