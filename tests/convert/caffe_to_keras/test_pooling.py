"""Pooling against real Caffe: MAX and AVE, Caffe's ceil rounding and its clip rule, round_mode FLOOR,
global pooling, padding (AVE divides by the window counted up to the declared pad), and the MAX mask top.

brocolli-caffe only understands ``ceil_mode``; keraffe reads both spellings and
writes the fork's for the runtime, so FLOOR cases are spelled both ways here.

py-faster-rcnn's ROIPooling (not in brocolli) and R-FCN's PSROIPooling
(brocolli's has no CPU forward) are judged by OpenCV, whose importer has both.
Their rois cover the corner cases: corners at .5 after scaling, rois past the
image, one-pixel and inverted rois, a second image.
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.errors import ConversionError, ShapeError

from ._harness import Batch, Case, build_net, classes_of, convert, inputs, params, assert_case

pytestmark = pytest.mark.pycaffe

ODD = inputs(x=(1, 3, 7, 9))
EVEN = inputs(x=(1, 4, 8, 6))


def pool(param: str, tops: str = 'top: "{p}y"') -> str:
    return f'layer {{ name: "{{p}}pool" type: "Pooling" bottom: "{{p}}x" {tops} pooling_param {{ {param} }} }}'


def keras_pool(cls: str, padding: str | None = None, zero_padding: bool = False):
    def check(model, p):
        assert classes_of(model, p) == (["ZeroPadding2D"] if zero_padding else []) + [cls], classes_of(model, p)
        if padding is not None:
            assert model.get_layer(p + "y").padding == padding
    return check


ROI_CONV = ('layer { name: "{p}conv" type: "Convolution" bottom: "{p}x" top: "{p}c" '
            "convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }\n")
#: [image, x1, y1, x2, y2] in input pixels (twice the feature map's size at spatial_scale 0.5).
ROIS = np.array([[0, 2, 4, 20, 30], [1, 0, 0, 23, 19], [0, 10, 10, 10, 10], [1, 3.3, 7.7, 12.5, 9.49],
                 [0, 5, 3, 40, 50], [1, 9, 9, 3, 2], [0, 1.5, 2.5, 7.5, 6.5]], np.float32)


def scaled(factor: float) -> np.ndarray:
    """ROIS for another spatial_scale: the corners divided by ``factor``, the image index kept."""
    rois = ROIS.copy()
    rois[:, 1:] /= factor
    return rois


def roi_layer(type_name: str, param: str, features: str = "c") -> str:
    return (f'layer {{ name: "{{p}}pool" type: "{type_name}" bottom: "{{p}}{features}" bottom: "{{p}}rois" '
            f'top: "{{p}}y" {param} }}\n')


def spp(param: str) -> str:
    return f'layer {{ name: "{{p}}spp" type: "SPP" bottom: "{{p}}x" top: "{{p}}y" spp_param {{ {param} }} }}\n'


def caffe_pool(model, p):
    assert classes_of(model, p) == ["CaffePooling2D"], classes_of(model, p)


CASES = [
    # ---------------------------------------------------------------- exact windows: Keras' own pooling
    Case("max_k3_s2_exact_odd", ODD, pool("pool: MAX kernel_size: 3 stride: 2"),
         check=keras_pool("MaxPooling2D", "valid")),
    Case("ave_k3_s2_exact_odd", ODD, pool("pool: AVE kernel_size: 3 stride: 2"),
         check=keras_pool("AveragePooling2D", "valid")),
    Case("max_k2_s2_even", EVEN, pool("pool: MAX kernel_size: 2 stride: 2"), check=keras_pool("MaxPooling2D", "valid")),
    # ---------------------------------------------------------------- ceil: the last window hangs over
    Case("max_k2_s2_ceil_odd", ODD, pool("pool: MAX kernel_size: 2 stride: 2")),
    Case("max_k3_s2_ceil_even", EVEN, pool("pool: MAX kernel_size: 3 stride: 2")),
    Case("max_k3_s3_ceil", inputs(x=(1, 2, 8, 10)), pool("pool: MAX kernel_size: 3 stride: 3")),
    # AVE over a clipped window divides by the part inside the image only.
    Case("ave_k2_s2_ceil_odd", ODD, pool("pool: AVE kernel_size: 2 stride: 2"), check=caffe_pool),
    Case("ave_k3_s2_ceil_even", EVEN, pool("pool: AVE kernel_size: 3 stride: 2"), check=caffe_pool),
    Case("ave_k3_s3_ceil_both_axes", inputs(x=(1, 2, 8, 10)), pool("pool: AVE kernel_size: 3 stride: 3")),
    # ---------------------------------------------------------------- padding
    # AVE with pad: the divisor counts the padding (Keras' 'same' would not): zero padding + valid pooling.
    Case("ave_k3_s1_p1", ODD, pool("pool: AVE kernel_size: 3 stride: 1 pad: 1"),
         check=keras_pool("AveragePooling2D", "valid", zero_padding=True)),
    Case("ave_k3_s2_p1_odd", ODD, pool("pool: AVE kernel_size: 3 stride: 2 pad: 1")),
    Case("ave_k3_s2_p1_even_clipped", EVEN, pool("pool: AVE kernel_size: 3 stride: 2 pad: 1")),
    Case("ave_k3_s2_p2", ODD, pool("pool: AVE kernel_size: 3 stride: 2 pad: 2")),
    Case("max_k3_s1_p1_same", ODD, pool("pool: MAX kernel_size: 3 stride: 1 pad: 1"),
         check=keras_pool("MaxPooling2D", "same")),
    Case("max_k3_s2_p1_odd", ODD, pool("pool: MAX kernel_size: 3 stride: 2 pad: 1")),
    Case("max_k3_s2_p1_even", EVEN, pool("pool: MAX kernel_size: 3 stride: 2 pad: 1")),
    Case("max_k3_s1_p2", EVEN, pool("pool: MAX kernel_size: 3 stride: 1 pad: 2")),
    # The clip rule: a last window that would start in the padding after the image is dropped.
    Case("clip_max_k2_s3_p1", inputs(x=(1, 2, 5, 5)), pool("pool: MAX kernel_size: 2 stride: 3 pad: 1")),
    Case("clip_ave_k3_s4_p2", inputs(x=(1, 2, 6, 6)), pool("pool: AVE kernel_size: 3 stride: 4 pad: 2")),
    Case("clip_one_axis_only", inputs(x=(1, 2, 5, 8)), pool("pool: AVE kernel_size: 2 stride: 3 pad: 1")),
    # ---------------------------------------------------------------- round_mode FLOOR (both spellings)
    Case("floor_round_mode_max", EVEN, pool("pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR"),
         check=keras_pool("MaxPooling2D", "valid")),
    Case("floor_ceil_mode_false_ave", EVEN, pool("pool: AVE kernel_size: 3 stride: 2 ceil_mode: false"),
         check=keras_pool("AveragePooling2D", "valid")),
    Case("floor_ave_with_pad", ODD, pool("pool: AVE kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR")),
    Case("floor_max_k3_s4_p2", inputs(x=(1, 2, 6, 6)), pool("pool: MAX kernel_size: 3 stride: 4 pad: 2 "
                                                              "round_mode: FLOOR")),
    Case("ceil_mode_true", inputs(x=(1, 2, 13, 13)), pool("pool: MAX kernel_size: 3 stride: 2 ceil_mode: true")),
    # ---------------------------------------------------------------- rectangular
    Case("rect_ave", inputs(x=(2, 3, 17, 11)), pool("pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 "
                                                    "pad_h: 1 pad_w: 1")),
    Case("rect_max", inputs(x=(2, 3, 17, 11)), pool("pool: MAX kernel_h: 2 kernel_w: 4 stride_h: 3 stride_w: 2 "
                                                    "pad_h: 1 pad_w: 2")),
    # ---------------------------------------------------------------- global
    Case("global_max", ODD, pool("pool: MAX global_pooling: true"), check=keras_pool("GlobalMaxPooling2D")),
    Case("global_ave", EVEN, pool("pool: AVE global_pooling: true"), check=keras_pool("GlobalAveragePooling2D")),
    Case("kernel_equals_input_ave", ODD, pool("pool: AVE kernel_h: 7 kernel_w: 9")),
    # ---------------------------------------------------------------- MAX with the argmax mask top
    Case("max_mask_k2_s2", EVEN, pool("pool: MAX kernel_size: 2 stride: 2", 'top: "{p}y" top: "{p}mask"')),
    Case("max_mask_k3_s2_ceil_pad", ODD, pool("pool: MAX kernel_size: 3 stride: 2 pad: 1",
                                              'top: "{p}y" top: "{p}mask"')),
    # ---------------------------------------------------------------- SPP: a Caffe Pooling per pyramid level
    Case("spp_max_height3", inputs(x=(2, 3, 14, 11)), spp("pyramid_height: 3 pool: MAX")),
    Case("spp_ave_height4", inputs(x=(2, 2, 14, 15)), spp("pyramid_height: 4 pool: AVE")),
    Case("spp_one_level", inputs(x=(2, 3, 5, 7)), spp("pyramid_height: 1")),
    Case("spp_ave_height2_odd", ODD, spp("pyramid_height: 2 pool: AVE")),
    # ---------------------------------------------------------------- OpenCV: ROIPooling, PSROIPooling
    Case("roi_pooling", inputs(x=(2, 3, 10, 12), rois=(7, 5)), ROI_CONV + roi_layer(
        "ROIPooling", "roi_pooling_param { pooled_h: 3 pooled_w: 2 spatial_scale: 0.5 }"),
         runtime="opencv", adjust=lambda values, p: values.__setitem__(p + "rois", ROIS)),
    Case("roi_pooling_scale_1_rois_4d", inputs(x=(2, 2, 9, 7), rois=(7, 5, 1, 1)), roi_layer(
        "ROIPooling", "roi_pooling_param { pooled_h: 4 pooled_w: 5 }", "x"),
         runtime="opencv", adjust=lambda values, p: values.__setitem__(p + "rois", scaled(2)[:, :, None, None])),
    Case("psroi_pooling", inputs(x=(2, 18, 10, 12), rois=(7, 5)), roi_layer(
        "PSROIPooling", "psroi_pooling_param { spatial_scale: 0.5 output_dim: 2 group_size: 3 }", "x"),
         runtime="opencv", adjust=lambda values, p: values.__setitem__(p + "rois", ROIS)),
    Case("psroi_pooling_group_1", inputs(x=(2, 4, 10, 12), rois=(7, 5)), roi_layer(
        "PSROIPooling", "psroi_pooling_param { spatial_scale: 0.25 output_dim: 4 group_size: 1 }", "x"),
         runtime="opencv", adjust=lambda values, p: values.__setitem__(p + "rois", scaled(0.5))),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory.mktemp("pooling"))


@pytest.mark.parametrize("case", params(CASES))
def test_pooling_matches_caffe(batch, case):
    assert_case(batch, case)


def test_cases_run_as_one_net(batch):
    batch.check_all_batches()


def test_stochastic_pooling_is_refused(tmp_path):
    case = Case("stochastic", ODD, pool("pool: STOCHASTIC kernel_size: 2 stride: 2"))
    with pytest.raises(ConversionError, match="STOCHASTIC"):
        convert(build_net([case], tmp_path / "net.prototxt"))


def test_spp_level_that_cannot_pool_the_input_is_a_shape_error(tmp_path):
    """Caffe's Pooling CHECKs pad < kernel: a 13-pixel input has no level 3 (kernel 2, pad 2)."""
    case = Case("spp_too_small", inputs(x=(1, 2, 13, 13)), spp("pyramid_height: 4"))
    with pytest.raises(ShapeError, match="pyramid level 3 cannot pool a 13x13 input"):
        build_net([case], tmp_path / "net.prototxt")
