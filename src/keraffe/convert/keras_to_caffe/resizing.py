"""Resizing (and keras.ops.image.resize): bilinear and nearest, to any size, as Caffe 1.0 matrix products.

Keras resizes each axis independently (TensorFlow's ``tf.image.resize``,
half-pixel centres, no antialiasing upward): every output row is a fixed
combination of at most two input rows, so a resize is ``A_h @ X @ A_w^T`` per
channel for two interpolation matrices. Caffe 1.0 computes both products
exactly: an InnerProduct over the last axis (``axis: 3``) for the width, and a
grouped Convolution whose (H x 1) kernels are the rows of ``A_h`` for the
height, its output channels then reshaped back into rows. The matrices hold
Keras' own weights, computed with its float32 index arithmetic, including the
clamping at the edges; cropping or zero-padding to the aspect ratio only moves
their columns.

Other interpolations (bicubic, lanczos, area), antialiased downscaling and
padding with a value other than zero are refused: no Caffe target computes them.
"""

from __future__ import annotations

import numpy as np

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.convert.keras_to_caffe.building import reshape
from keraffe.errors import ConversionError
from keraffe.layout import NHWC


def interpolation_matrix(source: int, target: int, method: str) -> np.ndarray:
    """(target, source) weights of Keras' (TensorFlow's) half-pixel resize of one axis, in float64."""
    matrix = np.zeros((target, source), np.float64)
    scale = np.float32(source) / np.float32(target)
    for i in range(target):
        if method == "nearest":
            # ResizeNearestNeighbor, half-pixel centres: floor((i + 0.5) * scale), clamped to the axis.
            position = np.float32(np.float32(i) + np.float32(0.5)) * scale
            matrix[i, min(max(int(np.floor(position)), 0), source - 1)] = 1.0
        else:
            # ResizeBilinear, half-pixel centres: (i + 0.5) * scale - 0.5, both neighbours clamped.
            position = np.float32(np.float32(np.float32(i) + np.float32(0.5)) * scale) - np.float32(0.5)
            low = np.floor(position)
            weight = float(position - low)
            lower, upper = min(max(int(low), 0), source - 1), min(max(int(np.ceil(position)), 0), source - 1)
            matrix[i, lower] += 1.0 - weight
            matrix[i, upper] += weight
    return matrix


def _aspect_box(height: int, width: int, size, crop: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras' crop (or padded canvas) for an aspect ratio: ((start, length) in H, (start, length) in W).

    For a crop, start >= 0 is where the kept window begins in the input; for a
    pad, start >= 0 is where the input begins on the zero canvas and length is
    the canvas.
    """
    target_h, target_w = size
    f32 = np.float32
    box_h = int(f32(f32(width * target_h) / f32(target_w)))
    box_w = int(f32(f32(height * target_w) / f32(target_h)))
    if crop:
        box_h, box_w = max(min(height, box_h), 1), max(min(width, box_w), 1)
        return (int(f32(height - box_h) / f32(2)), box_h), (int(f32(width - box_w) / f32(2)), box_w)
    box_h, box_w = max(height, box_h), max(width, box_w)
    start_h, start_w = int(f32(box_h - height) / f32(2)), int(f32(box_w - width) / f32(2))
    # Keras concatenates start_h rows of padding on both sides: the canvas is height + 2 * start_h.
    return (start_h, height + 2 * start_h), (start_w, width + 2 * start_w)


def _axis_matrix(source: int, target: int, method: str, box, crop: bool, pad: bool) -> np.ndarray:
    start, length = box
    if crop:
        matrix = np.zeros((target, source))
        matrix[:, start:start + length] = interpolation_matrix(length, target, method)
        return matrix
    if pad:
        return interpolation_matrix(length, target, method)[:, start:start + source]
    return interpolation_matrix(source, target, method)


def resize_value(ctx, operation, call, size, method, antialias=False, crop=False, pad=False, fill=0.0,
                 channels_last=True):
    """Resize the image ``call.inputs[0]`` to ``size`` (H, W) and record ``call.outputs[0]``."""
    if not channels_last:
        raise ConversionError("only channels_last resizing converts")
    if method not in ("bilinear", "nearest"):
        raise ConversionError(f"'{method}' interpolation has no exact Caffe form (bilinear and nearest convert)")
    if pad and float(fill) != 0.0:
        raise ConversionError(f"padding to the aspect ratio with {fill} has no exact Caffe form (zeros convert)")
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    blob = ctx.blob_nchw(value, name)
    n, channels, height, width = value.shape
    out_h, out_w = (int(s) for s in size)
    if antialias and method == "bilinear" and (out_h < height or out_w < width):
        raise ConversionError("antialiased bilinear downscaling has no exact Caffe form")
    boxes = _aspect_box(height, width, size, crop) if (crop or pad) else ((0, height), (0, width))
    rows = _axis_matrix(height, out_h, method, boxes[0], crop, pad)
    columns = _axis_matrix(width, out_w, method, boxes[1], crop, pad)
    start = len(ctx.net.layer)
    current = blob
    if not _is_identity(columns):
        current = ctx.unique(f"{name}/columns" if not _is_identity(rows) else name)
        layer = ctx.add("InnerProduct", current, [blob])
        param = layer.inner_product_param
        param.num_output, param.axis, param.bias_term = out_w, 3, False
        ctx.weights[current] = [columns.astype(np.float32)]
    if not _is_identity(rows):
        # Output channel c * out_h + i of the grouped convolution is row i of channel c.
        stacked = ctx.unique(f"{name}/rows")
        layer = ctx.add("Convolution", stacked, [current])
        param = layer.convolution_param
        param.num_output, param.group, param.bias_term = channels * out_h, channels, False
        param.kernel_h, param.kernel_w = height, 1
        kernel = np.broadcast_to(rows.astype(np.float32)[None, :, None, :, None], (channels, out_h, 1, height, 1))
        ctx.weights[stacked] = [np.ascontiguousarray(kernel.reshape(channels * out_h, 1, height, 1))]
        current = reshape(ctx, name, stacked, [0, channels, out_h, out_w])
    if current == blob:
        ctx.alias(call.outputs[0], value)
        return
    ctx.note(operation, ctx.caffe_types(start), f"{method} resize as interpolation matrices: InnerProduct over the "
             "width, a grouped convolution over the height")
    non_negative = value.non_negative
    ctx.emit(operation, call, 0, call.outputs[0], current, NHWC, non_negative=non_negative)


def _is_identity(matrix) -> bool:
    return matrix.shape[0] == matrix.shape[1] and np.array_equal(matrix, np.eye(matrix.shape[0]))


@keras_layer("Resizing")
def resizing(ctx, operation, call):
    resize_value(ctx, operation, call, (operation.height, operation.width), operation.interpolation,
                 operation.antialias, operation.crop_to_aspect_ratio, operation.pad_to_aspect_ratio,
                 operation.fill_value, operation.data_format == "channels_last")


@keras_layer("ops.Resize")
def resize_op(ctx, operation, call):
    if getattr(operation, "fill_mode", "constant") != "constant":
        raise ConversionError(f"fill_mode '{operation.fill_mode}' has no Caffe form")
    resize_value(ctx, operation, call, operation.size, operation.interpolation, operation.antialias,
                 operation.crop_to_aspect_ratio, operation.pad_to_aspect_ratio, operation.fill_value,
                 operation.data_format == "channels_last")
