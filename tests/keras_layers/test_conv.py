"""GroupedConv2DTranspose against Caffe's Deconvolution, written as its col2im scatter.

Caffe's weights are (in, out / group, kH, kW); input channel i of group g adds
w[i, o] * x[i, y, x] at (y * stride + ky * dilation, x * stride + kx *
dilation) of output channel g * out / group + o. The full output is then
cropped (Caffe's pad) and the bias added. The layer's kernel is
(kH, kW, out / group, in).
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.keras_layers import GroupedConv2DTranspose

from ._common import check_layer, nchw, nhwc, rng

pytestmark = pytest.mark.backends


def caffe_deconv(x, weight, bias, stride, dilation, groups, cropping):
    n, channels, height, width = x.shape
    _, per_group_out, kh, kw = weight.shape
    out_channels = per_group_out * groups
    per_group_in = channels // groups
    full_h = (height - 1) * stride[0] + dilation[0] * (kh - 1) + 1
    full_w = (width - 1) * stride[1] + dilation[1] * (kw - 1) + 1
    full = np.zeros((n, out_channels, full_h, full_w))
    for i in range(channels):
        g = i // per_group_in
        for o in range(per_group_out):
            for ky in range(kh):
                for kx in range(kw):
                    oy, ox = ky * dilation[0], kx * dilation[1]
                    full[:, g * per_group_out + o, oy: oy + (height - 1) * stride[0] + 1: stride[0],
                         ox: ox + (width - 1) * stride[1] + 1: stride[1]] += weight[i, o, ky, kx] * x[:, i]
    (top, bottom), (left, right) = cropping
    out = full[:, :, top: full_h - bottom, left: full_w - right]
    return out + (0 if bias is None else bias.reshape(1, -1, 1, 1))


CASES = [
    # (id, NHWC input, filters, kernel, strides, groups, dilation, cropping, use_bias)
    ("group2", (2, 4, 5, 4), 6, (4, 4), (2, 2), 2, (1, 1), ((1, 1), (1, 1)), True),
    ("group2_rect_stride", (1, 5, 4, 6), 4, (3, 2), (1, 3), 2, (1, 1), ((0, 1), (2, 0)), False),
    ("group3_dilated_strided", (1, 4, 5, 6), 3, (3, 3), (2, 2), 3, (2, 2), ((2, 2), (1, 2)), True),
    ("depthwise", (2, 4, 5, 4), 4, (4, 4), (2, 2), 4, (1, 1), ((1, 1), (1, 1)), False),
    ("depthwise_multiplier2_dilated", (1, 5, 4, 3), 6, (3, 3), (2, 3), 3, (2, 1), ((2, 2), (1, 1)), True),
    # groups 1 with stride and dilation: the case Keras' Conv2DTranspose refuses.
    ("group1_strided_dilated", (2, 4, 5, 3), 2, (3, 3), (2, 2), 1, (2, 2), ((1, 1), (1, 1)), True),
    ("one_channel_strided_dilated", (1, 5, 4, 1), 2, (3, 3), (2, 2), 1, (3, 3), ((2, 2), (2, 2)), True),
    ("kernel_below_stride", (1, 3, 4, 2), 2, (2, 2), (3, 3), 2, (1, 1), ((0, 0), (0, 0)), True),
]


@pytest.mark.parametrize("name, shape, filters, kernel, strides, groups, dilation, cropping, use_bias", CASES,
                         ids=[c[0] for c in CASES])
def test_grouped_conv2d_transpose(name, shape, filters, kernel, strides, groups, dilation, cropping, use_bias,
                                  tmp_path):
    r = rng(11)
    x = r.standard_normal(shape).astype(np.float32)
    channels = shape[3]
    weight = r.standard_normal((channels, filters // groups) + kernel).astype(np.float32)
    bias = r.standard_normal(filters).astype(np.float32) if use_bias else None
    expected = nhwc(caffe_deconv(nchw(x).astype(np.float64), weight.astype(np.float64), bias, strides, dilation,
                                 groups, cropping))
    layer = GroupedConv2DTranspose(filters, kernel, strides, groups, dilation, cropping, use_bias=use_bias)
    weights = [weight.transpose(2, 3, 1, 0)] + ([bias] if use_bias else [])
    check_layer(layer, x, expected, tmp_path, weights=weights)


def test_filters_must_divide_into_groups():
    with pytest.raises(ValueError, match="multiple of groups"):
        GroupedConv2DTranspose(5, (3, 3), (1, 1), 2)
