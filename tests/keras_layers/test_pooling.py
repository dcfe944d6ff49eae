"""CaffePooling2D, MaxPoolingWithMask and MaxUnpooling2D against Caffe's loops, in NCHW.

The reference follows BVLC's PoolingLayer: the output size (ceil by default,
the last window dropped when it would start in the padding after the image),
windows [ph * s - pad, min(ph * s - pad + k, H + pad)) whose AVE divisor is
that extent (padding counted, the part past H + pad not), clamped to the
image for the values; MAX takes the first maximum in scan order and its mask
is h * W + w. Unpooling is SegNet's upsample_layer.cpp: top[mask[i]] = bottom[i].
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from keraffe.keras_layers import CaffePooling2D, MaxPoolingWithMask, MaxUnpooling2D

from ._common import check_layer, nchw, nhwc, rng

#: Every pooling case runs on TensorFlow; these also on JAX and PyTorch (keeps `make test` quick).
ON_EVERY_BACKEND = {"k3_s2_p1_even_clipped", "clip_rule_k3_s4_p2", "rect"}


def caffe_output(size, k, s, p, ceil=True):
    span = (size + 2 * p - k) / s
    out = (math.ceil(span) if ceil else math.floor(span)) + 1
    if p and (out - 1) * s >= size + p:
        out -= 1
    return out


def caffe_pool(x, method, kernel, stride, pad, out):
    n, c, height, width = x.shape
    values = np.zeros((n, c) + tuple(out))
    mask = np.zeros((n, c) + tuple(out))
    for ph in range(out[0]):
        for pw in range(out[1]):
            hstart, wstart = ph * stride[0] - pad[0], pw * stride[1] - pad[1]
            hend = min(hstart + kernel[0], height + pad[0])
            wend = min(wstart + kernel[1], width + pad[1])
            pool_size = (hend - hstart) * (wend - wstart)
            hstart, wstart = max(hstart, 0), max(wstart, 0)
            hend, wend = min(hend, height), min(wend, width)
            window = x[:, :, hstart:hend, wstart:wend].astype(np.float64)
            if method == "ave":
                values[:, :, ph, pw] = window.sum(axis=(2, 3)) / pool_size
                continue
            flat = window.reshape(n, c, -1)
            best = flat.argmax(axis=2)  # the first maximum, as Caffe's strict '>' keeps
            values[:, :, ph, pw] = flat.max(axis=2)
            rows, cols = np.unravel_index(best, window.shape[2:])
            mask[:, :, ph, pw] = (rows + hstart) * width + cols + wstart
    return values, mask


POOLS = [
    # (id, NHWC shape, kernel, stride, pad, ceil)
    ("k3_s2_ceil_even", (2, 8, 6, 3), (3, 3), (2, 2), (0, 0), True),
    ("k2_s2_ceil_odd", (2, 7, 9, 3), (2, 2), (2, 2), (0, 0), True),
    ("k3_s2_p1_odd", (2, 7, 9, 2), (3, 3), (2, 2), (1, 1), True),
    ("k3_s2_p1_even_clipped", (1, 8, 6, 2), (3, 3), (2, 2), (1, 1), True),
    ("clip_rule_k2_s3_p1", (1, 5, 5, 2), (2, 2), (3, 3), (1, 1), True),
    ("clip_rule_k3_s4_p2", (1, 6, 6, 2), (3, 3), (4, 4), (2, 2), True),
    ("rect", (2, 17, 11, 3), (3, 2), (2, 3), (1, 1), True),
    ("floor_with_pad", (1, 7, 9, 2), (3, 3), (2, 2), (1, 1), False),
    ("k3_s1_p2", (1, 6, 5, 2), (3, 3), (1, 1), (2, 2), True),
]


POOL_PARAMS = [pytest.param(*p, id=p[0], marks=[pytest.mark.backends] if p[0] in ON_EVERY_BACKEND else [])
               for p in POOLS]


@pytest.mark.parametrize("method", ["max", "ave"])
@pytest.mark.parametrize("name, shape, kernel, stride, pad, ceil", POOL_PARAMS)
def test_caffe_pooling(method, name, shape, kernel, stride, pad, ceil, tmp_path):
    x = rng(4).standard_normal(shape).astype(np.float32)
    out = tuple(caffe_output(size, k, s, p, ceil) for size, k, s, p in zip(shape[1:3], kernel, stride, pad))
    expected, _ = caffe_pool(nchw(x), method, kernel, stride, pad, out)
    check_layer(CaffePooling2D(method, kernel, stride, pad, out), x, nhwc(expected), tmp_path)


@pytest.mark.parametrize("name, shape, kernel, stride, pad, ceil", POOL_PARAMS)
def test_max_pooling_with_mask(name, shape, kernel, stride, pad, ceil, tmp_path):
    x = rng(5).standard_normal(shape).astype(np.float32)
    out = tuple(caffe_output(size, k, s, p, ceil) for size, k, s, p in zip(shape[1:3], kernel, stride, pad))
    values, mask = caffe_pool(nchw(x), "max", kernel, stride, pad, out)
    check_layer(MaxPoolingWithMask(kernel, stride, pad, out), x, [nhwc(values), nhwc(mask)], tmp_path,
                tolerance=0)


@pytest.mark.backends
def test_max_pooling_with_mask_takes_the_first_of_equal_values(tmp_path):
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 1, 0, 0] = x[0, 0, 1, 0] = x[0, 1, 1, 0] = 1.0  # a tie inside the first window
    values, mask = caffe_pool(nchw(x), "max", (2, 2), (2, 2), (0, 0), (2, 2))
    assert mask[0, 0, 0, 0] == 1  # (0, 1): first in scan order
    check_layer(MaxPoolingWithMask((2, 2), (2, 2), (0, 0), (2, 2)), x, [nhwc(values), nhwc(mask)], tmp_path,
                tolerance=0)


def segnet_unpool(values, mask, out_hw):
    n, c = values.shape[:2]
    top = np.zeros((n, c, out_hw[0] * out_hw[1]))
    for i in range(n):
        for j in range(c):
            for v, m in zip(values[i, j].reshape(-1), mask[i, j].reshape(-1)):
                top[i, j, int(m)] = v
    return top.reshape((n, c) + tuple(out_hw))


@pytest.mark.backends
@pytest.mark.parametrize("shape, kernel", [((2, 6, 8, 3), (2, 2)), ((1, 7, 5, 2), (2, 2)), ((1, 6, 9, 2), (2, 3))],
                         ids=["even", "odd", "rect"])
def test_max_unpooling(shape, kernel, tmp_path):
    x = rng(6).standard_normal(shape).astype(np.float32)
    out = tuple(caffe_output(size, k, k, 0) for size, k in zip(shape[1:3], kernel))
    values, mask = caffe_pool(nchw(x), "max", kernel, kernel, (0, 0), out)
    expected = segnet_unpool(values, mask, shape[1:3])
    check_layer(MaxUnpooling2D(kernel, shape[1:3]), [nhwc(values).astype(np.float32), nhwc(mask).astype(np.float32)],
                nhwc(expected), tmp_path)


ROIS = np.array([[0, 2, 4, 20, 30], [1, 0, 0, 23, 19], [0, 10, 10, 10, 10], [1, 3.3, 7.7, 12.5, 9.49],
                 [0, 1.5, 2.5, 7.5, 6.5], [-1, -1, -1, -1, -1]], np.float32)


def _opencv(type_name, param, features_nchw, rois):
    """OpenCV DNN's own ROIPooling / PSROIPooling, on the real rows (it has no use for keraffe's -1 padding)."""
    import cv2

    prototxt = (f'name: "roi"\nlayer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ '
                + " ".join(f"dim: {d}" for d in features_nchw.shape) + ' } } }\n'
                f'layer {{ name: "rois" type: "Input" top: "rois" input_param {{ shape {{ dim: {len(rois)} dim: 5 }} }} }}\n'
                f'layer {{ name: "pool" type: "{type_name}" bottom: "x" bottom: "rois" top: "y" {param} }}\n')
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "roi.prototxt")
        path.write_text(prototxt)
        net = cv2.dnn.readNetFromCaffe(str(path))
        net.setInput(features_nchw, "x")
        net.setInput(rois, "rois")
        return np.asarray(net.forward("pool"))


@pytest.mark.backends
@pytest.mark.parametrize("type_name", ["ROIPooling", "PSROIPooling"])
def test_roi_pooling_matches_opencv(type_name, tmp_path):
    """py-faster-rcnn's ROIPooling and R-FCN's PSROIPooling, judged by OpenCV's; padding rows (-1) give 0."""
    from keraffe.keras_layers import PSROIPooling, ROIPooling

    features = rng(4).standard_normal((2, 10, 12, 18)).astype(np.float32)
    real = ROIS[:-1]
    if type_name == "ROIPooling":
        layer = ROIPooling((3, 2), 0.5, name="roi_pooling")
        expected = _opencv(type_name, "roi_pooling_param { pooled_h: 3 pooled_w: 2 spatial_scale: 0.5 }",
                           nchw(features), real)
    else:
        layer = PSROIPooling(2, 3, 0.5, name="psroi_pooling")
        expected = _opencv(type_name, "psroi_pooling_param { spatial_scale: 0.5 output_dim: 2 group_size: 3 }",
                           nchw(features), real)
    expected = np.concatenate([nhwc(expected), np.zeros((1,) + nhwc(expected).shape[1:], np.float32)])
    check_layer(layer, [features, ROIS], expected, tmp_path, batched=False)
