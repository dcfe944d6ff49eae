"""keraffe's shape rules against real Caffe, one edge case at a time.

Every case is a small piece of net (its own Input layers and the layer under
test) written as prototxt text. keraffe's shape inference runs on each case's
own net; real Caffe runs all cases of this module as one net, in one pycaffe
call (a call costs about half a second, a case a few milliseconds), and each
case then compares its blobs with Caffe's.

brocolli-caffe's schema spells pooling rounding as ``ceil_mode`` and has no
``round_mode``; the batch handed to Caffe is therefore keraffe's own rewrite of
the cases in the fork dialect (``format_prototxt(..., Dialect.FORK)``), while
keraffe reads the cases as written (BVLC ``round_mode``, fork ``ceil_mode``).
That also checks that the rewrite keeps the rounding.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap

import pytest

from keraffe.caffe.net import load_net
from keraffe.caffe.prototxt import Dialect, format_prototxt, parse_prototxt
from keraffe.caffe.shapes import infer_layer
from keraffe.errors import ShapeError


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    #: Input blob -> shape. Blob names are local to the case.
    inputs: dict
    #: Layer definitions; ``{p}`` is replaced by the case's prefix in names and blobs.
    layers: str
    #: Shapes worked out by hand from Caffe's source (case blob -> shape).
    expected: dict


def _inputs(**shapes):
    return shapes


CASES = [
    # ---------------------------------------------------------------- MVN: legacy 4-D top
    Case("mvn_rank2_padded_to_4d", _inputs(x=(2, 5)),
         'layer { name: "{p}m" type: "MVN" bottom: "{p}x" top: "{p}y" mvn_param { across_channels: true } }',
         {"y": (2, 5, 1, 1)}),
    Case("mvn_rank3_padded_to_4d", _inputs(x=(2, 3, 6)),
         'layer { name: "{p}m" type: "MVN" bottom: "{p}x" top: "{p}y" }', {"y": (2, 3, 6, 1)}),
    # ---------------------------------------------------------------- pooling
    Case("pool_ceil_default", _inputs(x=(1, 4, 112, 112)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: MAX kernel_size: 3 stride: 2 } }", {"y": (1, 4, 56, 56)}),
    Case("pool_floor_round_mode", _inputs(x=(1, 4, 112, 112)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR } }", {"y": (1, 4, 55, 55)}),
    Case("pool_ceil_mode_false", _inputs(x=(1, 4, 112, 112)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: AVE kernel_size: 3 stride: 2 ceil_mode: false } }", {"y": (1, 4, 55, 55)}),
    Case("pool_ceil_mode_true", _inputs(x=(1, 4, 13, 13)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: true } }", {"y": (1, 4, 6, 6)}),
    Case("pool_round_mode_ceil_explicit", _inputs(x=(1, 4, 14, 14)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: CEIL } }", {"y": (1, 4, 7, 7)}),
    # The clip rule: with padding, a last window starting at or after H + pad is dropped.
    Case("pool_ceil_clip_pad1", _inputs(x=(1, 2, 5, 5)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: MAX kernel_size: 2 stride: 3 pad: 1 } }", {"y": (1, 2, 2, 2)}),
    Case("pool_ceil_clip_pad2", _inputs(x=(1, 2, 6, 6)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: AVE kernel_size: 3 stride: 4 pad: 2 } }", {"y": (1, 2, 2, 2)}),
    Case("pool_ceil_no_clip_needed", _inputs(x=(1, 2, 7, 7)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }", {"y": (1, 2, 4, 4)}),
    Case("pool_clip_one_axis_only", _inputs(x=(1, 2, 5, 8)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: MAX kernel_size: 2 stride: 3 pad: 1 } }", {"y": (1, 2, 2, 3)}),
    Case("pool_floor_with_pad", _inputs(x=(1, 2, 6, 6)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: MAX kernel_size: 3 stride: 4 pad: 2 round_mode: FLOOR } }", {"y": (1, 2, 2, 2)}),
    Case("pool_rect_kernel_stride_pad", _inputs(x=(2, 3, 17, 11)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 1 } }",
         {"y": (2, 3, 9, 4)}),  # width: ceil(11/3) + 1 = 5, clipped to 4
    Case("pool_global_max", _inputs(x=(2, 8, 7, 9)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: MAX global_pooling: true } }", {"y": (2, 8, 1, 1)}),
    Case("pool_global_ave", _inputs(x=(1, 16, 1, 13)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: AVE global_pooling: true } }", {"y": (1, 16, 1, 1)}),
    Case("pool_kernel_larger_than_input_ceil", _inputs(x=(1, 1, 2, 2)),
         'layer { name: "{p}pool" type: "Pooling" bottom: "{p}x" top: "{p}y" '
         "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }", {"y": (1, 1, 2, 2)}),
    # ------------------------------------------------------------ convolution
    Case("conv_dilation_stride", _inputs(x=(1, 3, 23, 19)),
         'layer { name: "{p}conv" type: "Convolution" bottom: "{p}x" top: "{p}y" '
         "convolution_param { num_output: 5 kernel_size: 3 stride: 2 pad: 1 dilation: 3 } }",
         {"y": (1, 5, 10, 8)}),
    Case("conv_rect_group", _inputs(x=(2, 6, 10, 12)),
         'layer { name: "{p}conv" type: "Convolution" bottom: "{p}x" top: "{p}y" '
         "convolution_param { num_output: 4 kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_h: 0 pad_w: 2 group: 2 } }",
         {"y": (2, 4, 4, 16)}),
    # ---------------------------------------------------------- deconvolution
    Case("deconv_stride2_pad1_k4", _inputs(x=(1, 8, 7, 5)),
         'layer { name: "{p}deconv" type: "Deconvolution" bottom: "{p}x" top: "{p}y" '
         "convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1 } }", {"y": (1, 3, 14, 10)}),
    Case("deconv_dilation", _inputs(x=(1, 4, 6, 6)),
         'layer { name: "{p}deconv" type: "Deconvolution" bottom: "{p}x" top: "{p}y" '
         "convolution_param { num_output: 2 kernel_size: 3 stride: 3 pad: 2 dilation: 2 } }", {"y": (1, 2, 16, 16)}),
    Case("deconv_rect_group_nobias", _inputs(x=(2, 6, 5, 9)),
         'layer { name: "{p}deconv" type: "Deconvolution" bottom: "{p}x" top: "{p}y" '
         "convolution_param { num_output: 9 kernel_h: 2 kernel_w: 5 stride_h: 2 stride_w: 1 "
         "pad_h: 0 pad_w: 2 group: 3 bias_term: false } }", {"y": (2, 9, 10, 9)}),
    Case("deconv_fcn_upscore", _inputs(x=(1, 21, 16, 16)),
         'layer { name: "{p}deconv" type: "Deconvolution" bottom: "{p}x" top: "{p}y" '
         "convolution_param { num_output: 21 kernel_size: 64 stride: 32 bias_term: false } }",
         {"y": (1, 21, 544, 544)}),
    # ------------------------------------------------------------------- crop
    Case("crop_default_axis2_no_offset", _inputs(x=(1, 3, 20, 30), ref=(1, 1, 10, 12)),
         'layer { name: "{p}crop" type: "Crop" bottom: "{p}x" bottom: "{p}ref" top: "{p}y" }',
         {"y": (1, 3, 10, 12)}),
    Case("crop_axis2_one_offset", _inputs(x=(1, 3, 20, 30), ref=(5, 5, 10, 12)),
         'layer { name: "{p}crop" type: "Crop" bottom: "{p}x" bottom: "{p}ref" top: "{p}y" '
         "crop_param { axis: 2 offset: 5 } }", {"y": (1, 3, 10, 12)}),
    Case("crop_axis1_per_axis_offsets", _inputs(x=(2, 8, 20, 30), ref=(2, 4, 11, 7)),
         'layer { name: "{p}crop" type: "Crop" bottom: "{p}x" bottom: "{p}ref" top: "{p}y" '
         "crop_param { axis: 1 offset: 1 offset: 2 offset: 19 } }", {"y": (2, 4, 11, 7)}),
    Case("crop_negative_axis", _inputs(x=(2, 8, 20, 30), ref=(1, 1, 1, 7)),
         'layer { name: "{p}crop" type: "Crop" bottom: "{p}x" bottom: "{p}ref" top: "{p}y" '
         "crop_param { axis: -1 offset: 23 } }", {"y": (2, 8, 20, 7)}),
    # ------------------------------------------------------------------ slice
    Case("slice_points_axis1", _inputs(x=(2, 10, 3, 3)),
         'layer { name: "{p}slice" type: "Slice" bottom: "{p}x" top: "{p}a" top: "{p}b" top: "{p}c" '
         "slice_param { axis: 1 slice_point: 2 slice_point: 7 } }",
         {"a": (2, 2, 3, 3), "b": (2, 5, 3, 3), "c": (2, 3, 3, 3)}),
    Case("slice_even_no_points", _inputs(x=(2, 12, 3, 3)),
         'layer { name: "{p}slice" type: "Slice" bottom: "{p}x" top: "{p}a" top: "{p}b" top: "{p}c" }',
         {"a": (2, 4, 3, 3), "b": (2, 4, 3, 3), "c": (2, 4, 3, 3)}),
    Case("slice_negative_axis", _inputs(x=(2, 3, 4, 10)),
         'layer { name: "{p}slice" type: "Slice" bottom: "{p}x" top: "{p}a" top: "{p}b" '
         "slice_param { axis: -1 slice_point: 3 } }", {"a": (2, 3, 4, 3), "b": (2, 3, 4, 7)}),
    Case("slice_legacy_slice_dim", _inputs(x=(6, 3, 4, 4)),
         'layer { name: "{p}slice" type: "Slice" bottom: "{p}x" top: "{p}a" top: "{p}b" '
         "slice_param { slice_dim: 0 } }", {"a": (3, 3, 4, 4), "b": (3, 3, 4, 4)}),
    # ---------------------------------------------------------------- reshape
    Case("reshape_copy_and_infer", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}r" type: "Reshape" bottom: "{p}x" top: "{p}y" '
         "reshape_param { shape { dim: 0 dim: -1 } } }", {"y": (2, 60)}),
    Case("reshape_zero_in_middle", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}r" type: "Reshape" bottom: "{p}x" top: "{p}y" '
         "reshape_param { shape { dim: 0 dim: 0 dim: -1 dim: 2 dim: 1 } } }", {"y": (2, 3, 10, 2, 1)}),
    Case("reshape_axis_num_axes", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}r" type: "Reshape" bottom: "{p}x" top: "{p}y" '
         "reshape_param { shape { dim: 12 } axis: 1 num_axes: 2 } }", {"y": (2, 12, 5)}),
    Case("reshape_insert_axis_at_end", _inputs(x=(2, 3)),
         'layer { name: "{p}r" type: "Reshape" bottom: "{p}x" top: "{p}y" '
         "reshape_param { shape { dim: 1 } axis: -1 num_axes: 0 } }", {"y": (2, 3, 1)}),
    Case("reshape_insert_axis_at_start", _inputs(x=(2, 3)),
         'layer { name: "{p}r" type: "Reshape" bottom: "{p}x" top: "{p}y" '
         "reshape_param { shape { dim: 1 } axis: 0 num_axes: 0 } }", {"y": (1, 2, 3)}),
    # A negative axis counts from after the last axis: -1 is the end, -2 the last axis.
    Case("reshape_negative_axis_infer", _inputs(x=(2, 3, 4, 6)),
         'layer { name: "{p}r" type: "Reshape" bottom: "{p}x" top: "{p}y" '
         "reshape_param { shape { dim: -1 dim: 2 } axis: -2 } }", {"y": (2, 3, 4, 3, 2)}),
    Case("reshape_flatten_all", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}r" type: "Reshape" bottom: "{p}x" top: "{p}y" '
         "reshape_param { shape { dim: -1 } } }", {"y": (120,)}),
    # ---------------------------------------------------------------- flatten
    Case("flatten_default", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}f" type: "Flatten" bottom: "{p}x" top: "{p}y" }', {"y": (2, 60)}),
    Case("flatten_axis2", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}f" type: "Flatten" bottom: "{p}x" top: "{p}y" flatten_param { axis: 2 } }',
         {"y": (2, 3, 20)}),
    Case("flatten_end_axis", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}f" type: "Flatten" bottom: "{p}x" top: "{p}y" '
         "flatten_param { axis: 0 end_axis: -2 } }", {"y": (24, 5)}),
    Case("flatten_single_axis", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}f" type: "Flatten" bottom: "{p}x" top: "{p}y" '
         "flatten_param { axis: 1 end_axis: 1 } }", {"y": (2, 3, 4, 5)}),
    # --------------------------------------------------------- inner product
    Case("ip_default_axis", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}ip" type: "InnerProduct" bottom: "{p}x" top: "{p}y" '
         "inner_product_param { num_output: 7 } }", {"y": (2, 7)}),
    Case("ip_axis2", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}ip" type: "InnerProduct" bottom: "{p}x" top: "{p}y" '
         "inner_product_param { num_output: 7 axis: 2 } }", {"y": (2, 3, 7)}),
    Case("ip_axis_negative_transpose", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}ip" type: "InnerProduct" bottom: "{p}x" top: "{p}y" '
         "inner_product_param { num_output: 7 axis: -1 transpose: true } }", {"y": (2, 3, 4, 7)}),
    # ----------------------------------------------------------------- argmax
    Case("argmax_no_axis", _inputs(x=(3, 10)),
         'layer { name: "{p}am" type: "ArgMax" bottom: "{p}x" top: "{p}y" }', {"y": (3, 1, 1)}),
    Case("argmax_no_axis_topk_maxval", _inputs(x=(3, 10, 2, 2)),
         'layer { name: "{p}am" type: "ArgMax" bottom: "{p}x" top: "{p}y" '
         "argmax_param { top_k: 4 out_max_val: true } }", {"y": (3, 2, 4, 1)}),
    Case("argmax_axis1", _inputs(x=(3, 10, 4, 5)),
         'layer { name: "{p}am" type: "ArgMax" bottom: "{p}x" top: "{p}y" '
         "argmax_param { axis: 1 top_k: 2 } }", {"y": (3, 2, 4, 5)}),
    Case("argmax_axis_negative_maxval", _inputs(x=(3, 10, 4, 5)),
         'layer { name: "{p}am" type: "ArgMax" bottom: "{p}x" top: "{p}y" '
         "argmax_param { axis: -1 out_max_val: true } }", {"y": (3, 10, 4, 1)}),
    # ---------------------------------------------------------------- permute
    Case("permute_nhwc", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}perm" type: "Permute" bottom: "{p}x" top: "{p}y" '
         "permute_param { order: 0 order: 2 order: 3 order: 1 } }", {"y": (2, 4, 5, 3)}),
    Case("permute_partial_order", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}perm" type: "Permute" bottom: "{p}x" top: "{p}y" '
         "permute_param { order: 0 order: 3 } }", {"y": (2, 5, 3, 4)}),
    Case("permute_identity", _inputs(x=(2, 3, 4)),
         'layer { name: "{p}perm" type: "Permute" bottom: "{p}x" top: "{p}y" }', {"y": (2, 3, 4)}),
    # --------------------------------------------------------------- priorbox
    Case("priorbox_min_max_flip", _inputs(f=(1, 8, 19, 19), img=(1, 3, 300, 300)),
         'layer { name: "{p}pb" type: "PriorBox" bottom: "{p}f" bottom: "{p}img" top: "{p}y" '
         "prior_box_param { min_size: 60 max_size: 111 aspect_ratio: 2 aspect_ratio: 3 flip: true "
         "clip: false variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 step: 16 } }",
         {"y": (1, 2, 19 * 19 * 6 * 4)}),
    Case("priorbox_no_flip_no_max", _inputs(f=(1, 8, 10, 7), img=(1, 3, 300, 300)),
         'layer { name: "{p}pb" type: "PriorBox" bottom: "{p}f" bottom: "{p}img" top: "{p}y" '
         "prior_box_param { min_size: 30 aspect_ratio: 2 flip: false variance: 0.1 } }",
         {"y": (1, 2, 10 * 7 * 2 * 4)}),
    Case("priorbox_duplicate_ratios", _inputs(f=(1, 8, 5, 5), img=(1, 3, 100, 100)),
         'layer { name: "{p}pb" type: "PriorBox" bottom: "{p}f" bottom: "{p}img" top: "{p}y" '
         "prior_box_param { min_size: 10 aspect_ratio: 2 aspect_ratio: 0.5 aspect_ratio: 1 "
         "aspect_ratio: 2 flip: true } }", {"y": (1, 2, 5 * 5 * 3 * 4)}),
    Case("priorbox_several_min_sizes", _inputs(f=(1, 8, 4, 6), img=(1, 3, 128, 192)),
         'layer { name: "{p}pb" type: "PriorBox" bottom: "{p}f" bottom: "{p}img" top: "{p}y" '
         "prior_box_param { min_size: 10 min_size: 20 min_size: 40 max_size: 20 max_size: 40 max_size: 80 "
         "aspect_ratio: 3 flip: true clip: true img_h: 128 img_w: 192 step_h: 32 step_w: 32 offset: 0.5 } }",
         {"y": (1, 2, 4 * 6 * (3 * 3 + 3) * 4)}),
    # ------------------------------------------------------- detection output
    Case("detection_output_shared", _inputs(loc=(2, 40 * 4), conf=(2, 40 * 3), prior=(1, 2, 40 * 4)),
         'layer { name: "{p}det" type: "DetectionOutput" bottom: "{p}loc" bottom: "{p}conf" '
         'bottom: "{p}prior" top: "{p}y" detection_output_param { num_classes: 3 share_location: true '
         "background_label_id: 0 nms_param { nms_threshold: 0.45 top_k: 100 } code_type: CENTER_SIZE "
         "keep_top_k: 50 confidence_threshold: 0.01 } }", {"y": (1, 1, 1, 7)}),
    Case("detection_output_not_shared", _inputs(loc=(1, 12 * 4 * 4), conf=(1, 12 * 4), prior=(1, 2, 12 * 4)),
         'layer { name: "{p}det" type: "DetectionOutput" bottom: "{p}loc" bottom: "{p}conf" '
         'bottom: "{p}prior" top: "{p}y" detection_output_param { num_classes: 4 share_location: false '
         "background_label_id: 0 nms_param { nms_threshold: 0.3 } } }", {"y": (1, 1, 1, 7)}),
    # -------------------------------------------------------------- reduction
    Case("reduction_all", _inputs(x=(2, 3, 4)),
         'layer { name: "{p}red" type: "Reduction" bottom: "{p}x" top: "{p}y" '
         "reduction_param { operation: SUM axis: 0 } }", {"y": ()}),
    Case("reduction_axis1_mean", _inputs(x=(2, 3, 4)),
         'layer { name: "{p}red" type: "Reduction" bottom: "{p}x" top: "{p}y" '
         "reduction_param { operation: MEAN axis: 1 } }", {"y": (2,)}),
    Case("reduction_negative_axis", _inputs(x=(2, 3, 4, 5)),
         'layer { name: "{p}red" type: "Reduction" bottom: "{p}x" top: "{p}y" '
         "reduction_param { operation: ASUM axis: -1 } }", {"y": (2, 3, 4)}),
    Case("reduction_default", _inputs(x=(2, 3)),
         'layer { name: "{p}red" type: "Reduction" bottom: "{p}x" top: "{p}y" }', {"y": ()}),
    # ------------------------------------------------------------------- tile
    Case("tile_default_axis", _inputs(x=(2, 3, 4)),
         'layer { name: "{p}tile" type: "Tile" bottom: "{p}x" top: "{p}y" tile_param { tiles: 3 } }',
         {"y": (2, 9, 4)}),
    Case("tile_negative_axis", _inputs(x=(2, 3, 4)),
         'layer { name: "{p}tile" type: "Tile" bottom: "{p}x" top: "{p}y" tile_param { axis: -1 tiles: 2 } }',
         {"y": (2, 3, 8)}),
    # ----------------------------------------------------------------- concat
    Case("concat_legacy_concat_dim0", _inputs(a=(2, 3, 4, 4), b=(5, 3, 4, 4)),
         'layer { name: "{p}cat" type: "Concat" bottom: "{p}a" bottom: "{p}b" top: "{p}y" '
         "concat_param { concat_dim: 0 } }", {"y": (7, 3, 4, 4)}),
    Case("concat_legacy_concat_dim1", _inputs(a=(2, 3, 4, 4), b=(2, 5, 4, 4), c=(2, 1, 4, 4)),
         'layer { name: "{p}cat" type: "Concat" bottom: "{p}a" bottom: "{p}b" bottom: "{p}c" top: "{p}y" '
         "concat_param { concat_dim: 1 } }", {"y": (2, 9, 4, 4)}),
    Case("concat_axis_negative", _inputs(a=(2, 3, 4, 4), b=(2, 3, 4, 6)),
         'layer { name: "{p}cat" type: "Concat" bottom: "{p}a" bottom: "{p}b" top: "{p}y" '
         "concat_param { axis: -1 } }", {"y": (2, 3, 4, 10)}),
    Case("concat_default_axis", _inputs(a=(2, 3), b=(2, 4)),
         'layer { name: "{p}cat" type: "Concat" bottom: "{p}a" bottom: "{p}b" top: "{p}y" }', {"y": (2, 7)}),
    # --------------------------------------------------------- in-place chain
    Case("in_place_versions", _inputs(x=(1, 3, 8, 8)),
         'layer { name: "{p}conv" type: "Convolution" bottom: "{p}x" top: "{p}y" '
         "convolution_param { num_output: 2 kernel_size: 3 } } "
         'layer { name: "{p}relu" type: "ReLU" bottom: "{p}y" top: "{p}y" } '
         'layer { name: "{p}drop" type: "Dropout" bottom: "{p}y" top: "{p}y" }', {"y": (1, 2, 6, 6)}),
]

IDS = [case.id for case in CASES]
assert len(set(IDS)) == len(IDS)


def _prefix(index: int) -> str:
    return f"c{index}_"


def _case_text(case: Case, prefix: str) -> str:
    lines = []
    for blob, shape in case.inputs.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        lines.append(f'layer {{ name: "{prefix}in_{blob}" type: "Input" top: "{prefix}{blob}" '
                     f"input_param {{ shape {{ {dims} }} }} }}")
    lines.append(case.layers.replace("{p}", prefix))
    return "\n".join(lines) + "\n"


def _keraffe_shapes(case: Case, prefix: str, tmp_path) -> dict:
    path = tmp_path / f"{case.id}.prototxt"
    path.write_text(f'name: "{case.id}"\n' + _case_text(case, prefix))
    net = load_net(path)
    last = {}
    for tensor, shape in net.shapes.items():
        if tensor.blob not in last or tensor.version > last[tensor.blob][0]:
            last[tensor.blob] = (tensor.version, shape)
    return {blob: shape for blob, (_, shape) in last.items()}


@pytest.fixture(scope="module")
def caffe_shapes(tmp_path_factory):
    """Real Caffe's blob shapes for every case, from one net in one pycaffe call."""
    from keraffe.verify.caffe_runtime import pycaffe_blob_shapes

    text = 'name: "shape_rule_cases"\n' + "".join(_case_text(c, _prefix(i)) for i, c in enumerate(CASES))
    # brocolli cannot parse round_mode: hand it keraffe's rewrite in its own dialect.
    fork_text = format_prototxt(parse_prototxt(text), Dialect.FORK)
    assert "round_mode" not in fork_text and "ceil_mode: false" in fork_text
    path = tmp_path_factory.mktemp("shape_rules") / "cases_fork.prototxt"
    path.write_text(fork_text)
    return pycaffe_blob_shapes(path)


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_shape_rule_by_hand(index, tmp_path):
    """keraffe's shapes equal the ones worked out by hand from Caffe's Reshape code."""
    case = CASES[index]
    prefix = _prefix(index)
    ours = _keraffe_shapes(case, prefix, tmp_path)
    for blob, shape in case.expected.items():
        assert ours[prefix + blob] == tuple(shape), blob


@pytest.mark.pycaffe
@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_shape_rule_matches_caffe(index, caffe_shapes, tmp_path):
    case = CASES[index]
    prefix = _prefix(index)
    ours = _keraffe_shapes(case, prefix, tmp_path)
    theirs = {b: tuple(s) for b, s in caffe_shapes.items() if b.startswith(prefix) and "_split_" not in b}
    assert ours == theirs


def test_round_mode_and_ceil_mode_spellings_round_trip():
    """BVLC's round_mode and the forks' ceil_mode mean the same after keraffe reads and rewrites them."""
    text = textwrap.dedent("""
        layer { name: "a" type: "Pooling" bottom: "x" top: "a" pooling_param { kernel_size: 2 round_mode: FLOOR } }
        layer { name: "b" type: "Pooling" bottom: "x" top: "b" pooling_param { kernel_size: 2 ceil_mode: false } }
        layer { name: "c" type: "Pooling" bottom: "x" top: "c" pooling_param { kernel_size: 2 ceil_mode: true } }
        layer { name: "d" type: "Pooling" bottom: "x" top: "d" pooling_param { kernel_size: 2 } }
    """)
    net = parse_prototxt(text)
    fork = format_prototxt(net, Dialect.FORK)
    bvlc = format_prototxt(net, Dialect.BVLC)
    assert fork.count("ceil_mode: false") == 2 and "round_mode" not in fork and "ceil_mode: true" not in fork
    assert bvlc.count("round_mode: FLOOR") == 2 and "ceil_mode" not in bvlc
    assert format_prototxt(parse_prototxt(fork), Dialect.BVLC) == bvlc
    assert format_prototxt(parse_prototxt(bvlc), Dialect.FORK) == fork


# ------------------------------------------------------------- disagreements


@dataclasses.dataclass(frozen=True)
class BadCase:
    id: str
    inputs: dict
    layers: str
    #: A piece of keraffe's error message.
    message: str
    #: A piece of real Caffe's failed CHECK.
    caffe_log: str


BAD_CASES = [
    BadCase("slice_uneven", _inputs(x=(1, 10, 2, 2)),
            'layer { name: "{p}s" type: "Slice" bottom: "{p}x" top: "{p}a" top: "{p}b" top: "{p}c" }',
            "do not evenly divide", "should evenly divide"),
    BadCase("crop_too_large", _inputs(x=(1, 3, 10, 10), ref=(1, 3, 8, 8)),
            'layer { name: "{p}c" type: "Crop" bottom: "{p}x" bottom: "{p}ref" top: "{p}y" '
            "crop_param { offset: 3 } }", "crop of axis 2", "is out-of-bounds"),
    BadCase("reshape_count_mismatch", _inputs(x=(2, 3, 4)),
            'layer { name: "{p}r" type: "Reshape" bottom: "{p}x" top: "{p}y" '
            "reshape_param { shape { dim: 5 dim: -1 } } }", "cannot infer the -1", "must be divisible"),
    BadCase("pool_too_small_input", _inputs(x=(1, 1, 2, 2)),
            'layer { name: "{p}p" type: "Pooling" bottom: "{p}x" top: "{p}y" '
            "pooling_param { kernel_size: 3 stride: 1 round_mode: FLOOR } }", "too small", ""),
    BadCase("mvn_rank5", _inputs(x=(1, 2, 3, 4, 5)),
            'layer { name: "{p}m" type: "MVN" bottom: "{p}x" top: "{p}y" }', "cannot take 5 axes",
            "Cannot use legacy accessors"),
]


@pytest.mark.pycaffe
@pytest.mark.parametrize("case", BAD_CASES, ids=[c.id for c in BAD_CASES])
def test_keraffe_and_caffe_refuse_the_same_nets(case, tmp_path):
    from keraffe.verify.caffe_runtime import CaffeRuntimeError, pycaffe_blob_shapes

    text = 'name: "bad"\n' + _case_text(case, "")
    path = tmp_path / "bad.prototxt"
    path.write_text(text)
    with pytest.raises(ShapeError, match=re.escape(case.message)):
        load_net(path)
    fork = tmp_path / "bad_fork.prototxt"
    fork.write_text(format_prototxt(parse_prototxt(text), Dialect.FORK))
    try:
        shapes = pycaffe_blob_shapes(fork)
    except CaffeRuntimeError as error:
        assert case.caffe_log.lower() in str(error).lower()
        return
    # Caffe may accept a net and produce an empty blob where keraffe refuses;
    # that is only acceptable for a blob with no values.
    assert any(0 in shape for shape in shapes.values()), shapes


def test_infer_layer_names_the_layer_in_errors():
    layer = parse_prototxt('layer { name: "bad_ip" type: "InnerProduct" bottom: "x" top: "y" '
                           "inner_product_param { num_output: 0 } }").layer[0]
    with pytest.raises(ShapeError, match="layer 'bad_ip' \\(InnerProduct\\)"):
        infer_layer(layer, [(1, 4)])
