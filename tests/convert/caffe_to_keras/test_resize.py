"""Upsample (nearest, and SegNet's unpooling with the pooling mask) and Interp (align-corners bilinear).

brocolli-caffe's Upsample is the nearest-neighbour one; SegNet's (two bottoms)
and Interp (DeepLab/PSPNet) are not in it. OpenCV runs its own Interp (without
input cropping; OpenCV 4.14 computes an empty output from shrink_factor, so it
gets the output size written out); real Caffe runs keraffe's BVLC spelling of
Interp. Everything is also compared with numpy written from the defining
sources: SegNet's upsample_layer.cpp (top[mask[i]] = bottom[i] per channel
plane) and DeepLab's caffe_cpu_interp2 in float32, as Caffe computes it.

The Synopsys fork's ResizeBilinear (TF's resize_bilinear) is judged by
brocolli's own BilinearInterpolate where the two place their samples alike
(aligned corners; half-pixel centres), and by numpy written from the fork's
resize_bilinear_layer.cpp otherwise (TF's legacy sampling; NHWC blobs).
"""

from __future__ import annotations

import numpy as np
import pytest

import caffe_reference
from keraffe.errors import ConversionError

from ._harness import (Batch, Case, assert_case, assert_close, build_net, classes_of, convert, convert_case, inputs,
                       params)


def layer(type_name: str, param: str = "", bottoms=("x",), tops=("y",), name: str = "l") -> str:
    b = " ".join(f'bottom: "{{p}}{x}"' for x in bottoms)
    t = " ".join(f'top: "{{p}}{x}"' for x in tops)
    return f'layer {{ name: "{{p}}{name}" type: "{type_name}" {b} {t} {param} }}\n'


CASES = [
    Case("upsample_nearest_2", inputs(x=(2, 3, 5, 4)), layer("Upsample", "upsample_param { scale: 2 }"),
         check=lambda m, p: classes_of(m, p) == ["UpSampling2D"]),
    Case("upsample_nearest_3_after_conv", inputs(x=(2, 3, 3, 4)),
         layer("Convolution", "convolution_param { num_output: 2 kernel_size: 1 }", tops=("c",), name="conv")
         + layer("Upsample", "upsample_param { scale: 3 }", bottoms=("c",))),
    # The Synopsys fork's TF nearest resize, judged by real Caffe's Upsample.
    Case("resize_nearest_2", inputs(x=(2, 3, 5, 4)),
         layer("ResizeNearestNeighbor", 'resize_nearest_neighbor_param { data_format: "NCHW" scale_height: 2.0 '
               'scale_width: 2.0 }'), check=lambda m, p: classes_of(m, p) == ["UpSampling2D"]),
    # On an (N, H, W, C) blob (DAN's), handed to Caffe between two Permutes.
    Case("resize_nearest_nhwc", inputs(x=(2, 5, 4, 3)),
         layer("ResizeNearestNeighbor", 'resize_nearest_neighbor_param { data_format: "NHWC" scale_height: 2.0 '
               'scale_width: 2.0 }')),
    Case("resize_nearest_3_by_size", inputs(x=(2, 3, 3, 4)),
         layer("ResizeNearestNeighbor", 'resize_nearest_neighbor_param { data_format: "NCHW" output_height: 9 '
               'output_width: 12 }')),
    # ---------------------------------------------------------------- Interp in real Caffe (spelled as
    # InnerProducts, see keraffe.passes.bvlc_spelling) and in OpenCV, which has its own Interp
    Case("interp_size_up_caffe", inputs(x=(1, 3, 5, 4)), layer("Interp", "interp_param { height: 11 width: 9 }")),
    Case("interp_crop_zoom_caffe", inputs(x=(2, 2, 7, 6)),
         layer("Interp", "interp_param { zoom_factor: 2 pad_beg: -1 pad_end: -1 }")),
    # ---------------------------------------------------------------- ResizeBilinear, judged by brocolli's
    # BilinearInterpolate (keraffe.passes.bvlc_spelling)
    Case("resize_bilinear_align_corners", inputs(x=(2, 3, 5, 4)),
         layer("ResizeBilinear", 'resize_bilinear_param { data_format: "NCHW" align_corners: true '
               'output_height: 9 output_width: 7 }'), check=lambda m, p: classes_of(m, p) == ["ResizeBilinear"]),
    Case("resize_bilinear_align_corners_down", inputs(x=(2, 2, 9, 8)),
         layer("ResizeBilinear", 'resize_bilinear_param { data_format: "NCHW" align_corners: true '
               'output_height: 4 output_width: 5 }')),
    Case("resize_bilinear_half_pixel", inputs(x=(2, 3, 5, 4)),
         layer("ResizeBilinear", 'resize_bilinear_param { data_format: "NCHW" half_pixel_centers: true '
               'scale_height: 2.5 scale_width: 1.5 }')),
    # ---------------------------------------------------------------- Interp on OpenCV
    Case("interp_size_up", inputs(x=(1, 3, 5, 4)), layer("Interp", "interp_param { height: 11 width: 9 }"),
         runtime="opencv"),
    Case("interp_zoom2", inputs(x=(1, 2, 5, 4)), layer("Interp", "interp_param { zoom_factor: 2 }"),
         runtime="opencv"),
    Case("interp_size_down_odd", inputs(x=(1, 2, 9, 8)), layer("Interp", "interp_param { height: 4 width: 7 }"),
         runtime="opencv"),
    Case("interp_shrink_zoom", inputs(x=(1, 2, 9, 8)), layer("Interp", "interp_param { shrink_factor: 2 zoom_factor: 3 }"),
         runtime="opencv"),
    # PSPNet's: the size from a second bottom.
    Case("interp_size_of_second_bottom", inputs(x=(1, 2, 5, 4), s=(1, 1, 9, 7)), layer("Interp", "", ("x", "s")),
         runtime="opencv"),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory.mktemp("resize"))


@pytest.mark.pycaffe
@pytest.mark.parametrize("case", params(CASES))
def test_resize_matches_caffe(batch, case):
    assert_case(batch, case)


@pytest.mark.pycaffe
def test_cases_run_as_one_net(batch):
    batch.check_all_batches()


# ---------------------------------------------------------------- Interp against numpy


def interp2(x: np.ndarray, crop_begin: int, size_in: tuple[int, int], size_out: tuple[int, int]) -> np.ndarray:
    """DeepLab's Interp: crop (its pad_beg, as a negative pad) to size_in, then caffe_cpu_interp2."""
    return caffe_reference.interp2(x[:, :, crop_begin:crop_begin + size_in[0], crop_begin:crop_begin + size_in[1]],
                                   size_out)


INTERP = [
    # (id, input shape, interp_param, (cropped input size), output size)
    ("size_up", (2, 3, 5, 4), "height: 11 width: 9", 0, (5, 4), (11, 9)),
    ("size_down", (2, 3, 9, 8), "height: 4 width: 7", 0, (9, 8), (4, 7)),
    ("same_size", (1, 2, 5, 6), "height: 5 width: 6", 0, (5, 6), (5, 6)),
    ("zoom3", (1, 2, 4, 5), "zoom_factor: 3", 0, (4, 5), (10, 13)),
    ("shrink3", (1, 2, 10, 7), "shrink_factor: 3", 0, (10, 7), (4, 3)),
    ("shrink2_zoom3", (1, 2, 9, 8), "shrink_factor: 2 zoom_factor: 3", 0, (9, 8), (13, 10)),
    # Negative padding crops the input first (DeepLab's pad_beg/pad_end).
    ("crop_then_zoom", (1, 2, 9, 8), "zoom_factor: 2 pad_beg: -1 pad_end: -2", 1, (6, 5), (11, 9)),
    ("crop_then_size", (2, 2, 7, 7), "height: 8 width: 3 pad_beg: -2 pad_end: 0", 2, (5, 5), (8, 3)),
    ("to_one_row", (1, 2, 6, 5), "height: 1 width: 4", 0, (6, 5), (1, 4)),
]


@pytest.mark.parametrize("name, shape, param, crop, size_in, size_out", INTERP, ids=[i[0] for i in INTERP])
def test_interp_matches_numpy_reference(name, shape, param, crop, size_in, size_out, tmp_path):
    case = Case(f"interp_{name}", inputs(x=shape), layer("Interp", f"interp_param {{ {param} }}"))
    _, _, values, outputs = convert_case(case, tmp_path)
    p = case.id + "__"
    reference = interp2(values[p + "x"], crop, size_in, size_out)
    assert_close(case.id, reference, outputs[p + "y"], tolerance=1e-6)


def test_interp_size_from_second_bottom_matches_numpy_reference(tmp_path):
    """PSPNet: with a second bottom, Interp resizes to that bottom's height and width."""
    case = Case("interp_like", inputs(x=(2, 3, 4, 5), ref=(2, 1, 9, 7)), layer("Interp", "", ("x", "ref")))
    _, _, values, outputs = convert_case(case, tmp_path)
    reference = interp2(values["interp_like__x"], 0, (4, 5), (9, 7))
    assert_close(case.id, reference, outputs["interp_like__y"], tolerance=1e-6)


# ---------------------------------------------------------------- SegNet's Upsample against numpy


def caffe_max_pool_with_mask(x, kernel, stride):
    """Caffe's MAX pooling (no padding, ceil rounding) and its mask h * W + w, first maximum wins."""
    n, c, height, width = x.shape
    out_h = -(-(height - kernel[0]) // stride[0]) + 1
    out_w = -(-(width - kernel[1]) // stride[1]) + 1
    values = np.full((n, c, out_h, out_w), -np.inf, np.float32)
    mask = np.zeros((n, c, out_h, out_w), np.float32)
    for ph in range(out_h):
        for pw in range(out_w):
            h0, w0 = ph * stride[0], pw * stride[1]
            for h in range(h0, min(h0 + kernel[0], height)):
                for w in range(w0, min(w0 + kernel[1], width)):
                    better = x[:, :, h, w] > values[:, :, ph, pw]
                    values[:, :, ph, pw] = np.where(better, x[:, :, h, w], values[:, :, ph, pw])
                    mask[:, :, ph, pw] = np.where(better, h * width + w, mask[:, :, ph, pw])
    return values, mask


def segnet_upsample(values, mask, out_hw):
    n, c = values.shape[:2]
    top = np.zeros((n, c) + tuple(out_hw), np.float32)
    flat = top.reshape(n, c, -1)
    for i in range(n):
        for j in range(c):
            for v, m in zip(values[i, j].reshape(-1), mask[i, j].reshape(-1)):
                flat[i, j, int(m)] = v
    return top


UNPOOL = [
    # (id, input shape, kernel, stride, upsample_param)
    ("even_scale2", (2, 3, 6, 8), (2, 2), (2, 2), "scale: 2"),
    ("odd_upsample_hw", (2, 3, 7, 5), (2, 2), (2, 2), "upsample_h: 7 upsample_w: 5"),
    ("odd_pad_out", (1, 2, 7, 9), (2, 2), (2, 2), "scale: 2 pad_out_h: true pad_out_w: true"),
    ("rect_scales", (1, 2, 6, 9), (2, 3), (2, 3), "scale_h: 2 scale_w: 3"),
]


@pytest.mark.parametrize("name, shape, kernel, stride, param", UNPOOL, ids=[u[0] for u in UNPOOL])
def test_segnet_upsample_matches_numpy_reference(name, shape, kernel, stride, param, tmp_path):
    pool = (f"pooling_param {{ pool: MAX kernel_h: {kernel[0]} kernel_w: {kernel[1]} "
            f"stride_h: {stride[0]} stride_w: {stride[1]} }}")
    case = Case(f"unpool_{name}", inputs(x=shape),
                layer("Pooling", pool, tops=("pool", "mask"), name="pool")
                + layer("Upsample", f"upsample_param {{ {param} }}", ("pool", "mask"), ("y",), "unpool"))
    model, _, values, outputs = convert_case(case, tmp_path)
    p = case.id + "__"
    pooled, mask = caffe_max_pool_with_mask(values[p + "x"], kernel, stride)
    assert_close("pool", pooled, outputs[p + "pool"])
    np.testing.assert_array_equal(outputs[p + "mask"], mask)
    assert_close(case.id, segnet_upsample(pooled, mask, shape[2:]), outputs[p + "y"])
    assert classes_of(model, p) == ["MaxPoolingWithMask", "MaxUnpooling2D"]


@pytest.mark.parametrize("pool", [
    "kernel_size: 3 stride: 2",  # overlapping windows: a value can land outside its block
    "kernel_size: 2 stride: 1",
    "kernel_size: 2 stride: 2 pad: 1",  # padded windows straddle two blocks
], ids=["k3_s2", "k2_s1", "k2_s2_pad1"])
def test_unpooling_masks_that_do_not_tile_are_refused(pool, tmp_path):
    """keraffe's MaxUnpooling2D places each value in its own block; other masks would convert wrongly."""
    case = Case("unpool_overlap", inputs(x=(1, 2, 7, 7)),
                layer("Pooling", f"pooling_param {{ pool: MAX {pool} }}", tops=("pool", "mask"), name="pool")
                + layer("Upsample", "upsample_param { upsample_h: 7 upsample_w: 7 }", ("pool", "mask"), ("y",),
                        "unpool"))
    with pytest.raises(ConversionError, match="only masks of unpadded pooling"):
        convert(build_net([case], tmp_path / "net.prototxt"))


def test_resize_nearest_with_half_pixel_centres_is_refused(tmp_path):
    case = Case("half_pixel", inputs(x=(1, 2, 3, 3)),
                layer("ResizeNearestNeighbor", 'resize_nearest_neighbor_param { data_format: "NCHW" '
                      "scale_height: 2.0 scale_width: 2.0 half_pixel_centers: true }"))
    with pytest.raises(ConversionError, match="half_pixel_centers"):
        convert_case(case, tmp_path)


@pytest.mark.parametrize("name, shape, param, nhwc, size, flags", [
    ("legacy_up", (2, 3, 5, 4), 'data_format: "NCHW" output_height: 11 output_width: 6', False, (11, 6), {}),
    ("legacy_down", (2, 3, 9, 8), 'data_format: "NCHW" scale_height: 0.5 scale_width: 0.75', False, (4, 6), {}),
    ("nhwc_align", (2, 5, 4, 3), 'align_corners: true output_height: 8 output_width: 9', True, (8, 9),
     {"align_corners": True}),
    ("nhwc_half_pixel", (2, 5, 4, 3), 'half_pixel_centers: true output_height: 7 output_width: 3', True, (7, 3),
     {"half_pixel_centers": True}),
])
def test_resize_bilinear_matches_numpy_reference(name, shape, param, nhwc, size, flags, tmp_path):
    case = Case(f"resize_bilinear_{name}", inputs(x=shape), layer("ResizeBilinear", f"resize_bilinear_param {{ {param} }}"))
    _, _, values, outputs = convert_case(case, tmp_path)
    p = case.id + "__"
    expected = caffe_reference.tf_resize_bilinear(values[p + "x"], *size, nhwc=nhwc, **flags)
    assert_close(case.id, expected, outputs[p + "y"], tolerance=1e-6)


def test_resize_bilinear_with_two_sampling_rules_is_refused(tmp_path):
    case = Case("resize_bilinear_two_rules", inputs(x=(1, 2, 4, 4)), layer(
        "ResizeBilinear", 'resize_bilinear_param { data_format: "NCHW" align_corners: true half_pixel_centers: true '
        'output_height: 8 output_width: 8 }'))
    with pytest.raises(ConversionError, match="align_corners and half_pixel_centers"):
        convert(build_net([case], tmp_path / "net.prototxt"))
