"""The reference boxes (anchors) of region proposal layers, with no Keras in it.

Two rules are in use, and they differ:

* py-faster-rcnn's Python ProposalLayer (``generate_anchors``): a 16x16 box
  whose width is round(sqrt(256 / ratio)) and height round(width * ratio)
  (numpy's round, half to even), each scaled by every scale, in float64.
  PVANet's copy of the layer takes its ratios from param_str; py-faster-rcnn's
  and py-R-FCN's always use (0.5, 1, 2).
* brocolli-caffe's C++ Proposal (and OpenCV's): ``scale`` is a size in pixels,
  half-extents 0.5 * ROUND(sqrt(base² / ratio) * scale / base - 1) with ROUND(x)
  = (int)(x + 0.5), in float, around the base box's centre.

Either way the anchors are ratio-major, scale-minor: index = ratio * scales + scale.
"""

from __future__ import annotations

import math

import numpy as np


def py_faster_rcnn_anchors(ratios, scales, base_size: int = 16) -> np.ndarray:
    """(ratios * scales, 4) anchors [x1, y1, x2, y2] of py-faster-rcnn's generate_anchors, float64."""
    size = base_size * base_size
    center = 0.5 * (base_size - 1)
    boxes = []
    for ratio in ratios:
        width = np.round(math.sqrt(size / ratio))
        height = np.round(width * ratio)
        for scale in scales:
            w, h = width * scale, height * scale
            half_w, half_h = 0.5 * (w - 1), 0.5 * (h - 1)
            boxes.append([center - half_w, center - half_h, center + half_w, center + half_h])
    return np.asarray(boxes, np.float64)


def brocolli_anchors(ratios, scales, base_size: int = 16) -> np.ndarray:
    """(ratios * scales, 4) anchors of brocolli-caffe's Proposal layer, in float32 as it computes them."""
    f = np.float32
    center = f(0.5) * f(base_size - 1)
    boxes = []
    for ratio in ratios:
        ratio_w = f(math.sqrt(f(f(base_size * base_size) / f(ratio))))
        ratio_h = f(ratio_w * f(ratio))
        for scale in scales:
            # ROUND(x) = (int)(x + 0.5) of ratio_w * scale (a float product), then in double: * 1.0 / base - 1.
            half_w = f(0.5) * f(int(float(f(ratio_w * f(scale))) * 1.0 / base_size - 1.0 + 0.5))
            half_h = f(0.5) * f(int(float(f(ratio_h * f(scale))) * 1.0 / base_size - 1.0 + 0.5))
            boxes.append([center - half_w, center - half_h, center + half_w, center + half_h])
    return np.asarray(boxes, np.float32)
