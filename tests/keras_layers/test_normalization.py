"""LRN, MVN, L2Normalize (SSD's Normalize) and AxisScale against Caffe's formulas, computed in NCHW.

References from BVLC's lrn_layer.cpp (across channels: scale = k + alpha / n *
sum of squares over n channels, zero padded; within a channel: Caffe pools
x^2 with AVE pooling, pad (n - 1) / 2, divisor n * n, then (1 + alpha * avg)),
both y = x * scale ^ -beta; mvn_layer.cpp ((x - mean) / (std + eps));
SSD's normalize_layer.cpp (x / sqrt(sum x^2 + eps) * scale) and
scale_layer.cpp / bias_layer.cpp.
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.keras_layers import LRN, MVN, AxisScale, L2Normalize

from ._common import check_layer, nchw, nhwc, rng

pytestmark = pytest.mark.backends

X = rng(2).standard_normal((2, 5, 4, 6)).astype(np.float32)  # NHWC, 6 channels


def lrn_across(x, n, alpha, beta, k):
    x = x.astype(np.float64)
    channels = x.shape[1]
    pre = (n - 1) // 2
    squared = np.pad(x * x, [(0, 0), (pre, n - 1 - pre), (0, 0), (0, 0)])
    total = sum(squared[:, c: c + channels] for c in range(n))
    return x * (k + alpha / n * total) ** -beta


def lrn_within(x, n, alpha, beta):
    x = x.astype(np.float64)
    pad = (n - 1) // 2
    squared = np.pad(x * x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    height, width = x.shape[2:]
    avg = np.zeros_like(x)
    for h in range(height):
        for w in range(width):
            avg[:, :, h, w] = squared[:, :, h: h + n, w: w + n].sum(axis=(2, 3)) / (n * n)
    return x * (1 + alpha * avg) ** -beta


@pytest.mark.parametrize("n, alpha, beta, k", [(5, 0.5, 0.75, 1.0), (3, 2.0, 0.6, 2.0), (1, 0.3, 0.5, 1.5)])
def test_lrn_across_channels(n, alpha, beta, k, tmp_path):
    expected = nhwc(lrn_across(nchw(X), n, alpha, beta, k))
    check_layer(LRN(n, alpha, beta, k, "across_channels"), X, expected, tmp_path)


@pytest.mark.parametrize("n, alpha, beta", [(3, 0.5, 0.75), (5, 3.0, 0.5)])
def test_lrn_within_channel(n, alpha, beta, tmp_path):
    expected = nhwc(lrn_within(nchw(X), n, alpha, beta))
    # k plays no part within a channel.
    check_layer(LRN(n, alpha, beta, 7.0, "within_channel"), X, expected, tmp_path)


def mvn(x, axes, normalize_variance, eps):
    x = x.astype(np.float64)
    centred = x - x.mean(axis=axes, keepdims=True)
    if not normalize_variance:
        return centred
    return centred / (np.sqrt((centred ** 2).mean(axis=axes, keepdims=True)) + eps)


@pytest.mark.parametrize("across_channels, normalize_variance, eps", [
    (False, True, 1e-9), (True, True, 1e-9), (False, False, 1e-9), (False, True, 0.5)])
def test_mvn(across_channels, normalize_variance, eps, tmp_path):
    caffe_axes = (1, 2, 3) if across_channels else (2, 3)
    keras_axes = (1, 2, 3) if across_channels else (1, 2)
    expected = nhwc(mvn(nchw(X), caffe_axes, normalize_variance, eps))
    check_layer(MVN(keras_axes, normalize_variance, eps), X, expected, tmp_path)


@pytest.mark.parametrize("across_spatial, channel_shared, eps", [
    (False, False, 1e-10), (True, True, 1e-10), (False, True, 0.5), (True, False, 1e-3)])
def test_l2_normalize(across_spatial, channel_shared, eps, tmp_path):
    x = nchw(X).astype(np.float64)
    axes = (1, 2, 3) if across_spatial else (1,)
    scale = np.array([1.7]) if channel_shared else np.linspace(0.5, 2.0, x.shape[1])
    expected = x / np.sqrt((x * x).sum(axis=axes, keepdims=True) + eps) * scale.reshape(1, -1, 1, 1)
    check_layer(L2Normalize(across_spatial, channel_shared, eps), X, nhwc(expected), tmp_path, weights=[scale])


@pytest.mark.parametrize("param_shape, use_scale, use_bias", [
    ((1, 1, 6), True, True),  # per channel on NHWC
    ((5, 4, 1), True, False),  # over H, W
    ((5, 4, 6), False, True),  # every element
    ((1, 1, 1), True, True),  # one scalar
])
def test_axis_scale(param_shape, use_scale, use_bias, tmp_path):
    r = rng(3)
    scale = r.uniform(0.5, 1.5, param_shape).astype(np.float32)
    bias = r.uniform(-1, 1, param_shape).astype(np.float32)
    expected = X.astype(np.float64) * (scale if use_scale else 1.0) + (bias if use_bias else 0.0)
    weights = ([scale] if use_scale else []) + ([bias] if use_bias else [])
    check_layer(AxisScale(param_shape, use_scale, use_bias), X, expected, tmp_path, weights=weights)
