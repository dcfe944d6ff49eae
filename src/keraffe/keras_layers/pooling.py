"""Caffe's pooling where Keras' differs: ceil rounding, clipped windows, AVE divisors, masks."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def caffe_pool_windows(size: int, kernel: int, stride: int, pad: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each pooling window along one axis, as Caffe's PoolingLayer computes them.

    Ends are clipped at size + pad (Caffe counts padding up to the declared pad
    in an AVE divisor, never beyond).
    """
    starts = np.arange(out) * stride - pad
    ends = np.minimum(starts + kernel, size + pad)
    return starts, ends


@keras.saving.register_keras_serializable(package="keraffe")
class CaffePooling2D(keras.layers.Layer):
    """MAX or AVE pooling on NHWC with Caffe's exact window rules.

    Keras pooling only knows 'valid' and 'same'. Caffe rounds the output size
    up, clips the last window at the padded border, pads MAX pooling with -inf
    (padding never wins) and divides AVE pooling by the window's size counted
    up to the declared padding. ``output_size`` is Caffe's (H, W) output.
    """

    def __init__(self, method, pool_size, strides, padding, output_size, **kwargs):
        super().__init__(**kwargs)
        if method not in ("max", "ave"):
            raise ValueError(f"method must be 'max' or 'ave', received {method!r}")
        self.method = method
        self.pool_size = tuple(int(v) for v in pool_size)
        self.strides = tuple(int(v) for v in strides)
        self.padding = tuple(int(v) for v in padding)
        self.output_size = tuple(int(v) for v in output_size)

    def _end_padding(self, height, width):
        spans = [(o - 1) * s + k for o, s, k in zip(self.output_size, self.strides, self.pool_size)]
        return [max(0, span - size - p) for span, size, p in zip(spans, (height, width), self.padding)]

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        end_h, end_w = self._end_padding(height, width)
        pads = [[0, 0], [self.padding[0], end_h], [self.padding[1], end_w], [0, 0]]
        if self.method == "max":
            padded = ops.pad(inputs, pads, constant_values=-np.inf)
            out = ops.max_pool(padded, self.pool_size, self.strides, padding="valid")
            return out[:, : self.output_size[0], : self.output_size[1], :]
        padded = ops.pad(inputs, pads, constant_values=0.0)
        mean = ops.average_pool(padded, self.pool_size, self.strides, padding="valid")
        mean = mean[:, : self.output_size[0], : self.output_size[1], :]
        factors = []
        for size, k, s, p, o in zip((height, width), self.pool_size, self.strides, self.padding, self.output_size):
            starts, ends = caffe_pool_windows(size, k, s, p, o)
            factors.append(k / (ends - starts))
        rescale = np.outer(factors[0], factors[1]).astype("float32")[None, :, :, None]
        if np.all(rescale == 1.0):
            return mean
        return mean * ops.convert_to_tensor(rescale, dtype=mean.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_size + (input_shape[3],)

    def get_config(self):
        config = super().get_config()
        config.update(method=self.method, pool_size=self.pool_size, strides=self.strides,
                      padding=self.padding, output_size=self.output_size)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class MaxPoolingWithMask(keras.layers.Layer):
    """Caffe MAX pooling with its second top: the argmax of each window as a float index.

    The index is h * W + w in the input plane, Caffe's mask that SegNet's
    Upsample layer reads. Ties go to the first element in scan order, as in Caffe.
    """

    def __init__(self, pool_size, strides, padding, output_size, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(int(v) for v in pool_size)
        self.strides = tuple(int(v) for v in strides)
        self.padding = tuple(int(v) for v in padding)
        self.output_size = tuple(int(v) for v in output_size)

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        kh, kw = self.pool_size
        oh, ow = self.output_size
        sh, sw = self.strides
        ph, pw = self.padding
        span_h, span_w = (oh - 1) * sh + kh, (ow - 1) * sw + kw
        pads = [[0, 0], [ph, max(0, span_h - height - ph)], [pw, max(0, span_w - width - pw)], [0, 0]]
        padded = ops.pad(inputs, pads, constant_values=-np.inf)
        plane = np.arange(height * width, dtype="float32").reshape(height, width)
        plane = np.pad(plane, [pads[1], pads[2]], constant_values=-1.0)
        best = None
        best_index = None
        for dy in range(kh):
            for dx in range(kw):
                window = padded[:, dy: dy + (oh - 1) * sh + 1: sh, dx: dx + (ow - 1) * sw + 1: sw, :]
                index = plane[dy: dy + (oh - 1) * sh + 1: sh, dx: dx + (ow - 1) * sw + 1: sw][None, :, :, None]
                index = ops.convert_to_tensor(index, dtype=inputs.dtype)
                if best is None:
                    best = window
                    best_index = ops.zeros_like(window) + index
                else:
                    better = ops.greater(window, best)
                    best = ops.where(better, window, best)
                    best_index = ops.where(better, index, best_index)
        return best, best_index

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0],) + self.output_size + (input_shape[3],)
        return shape, shape

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides, padding=self.padding,
                      output_size=self.output_size)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class MaxUnpooling2D(keras.layers.Layer):
    """SegNet's Upsample: put each value where its pooling mask says, zeros elsewhere.

    The mask holds, for each pooled value, its index h * W + w in the
    ``output_size`` plane. With non-overlapping windows (kernel = stride =
    ``scale``) each value lands in its own scale x scale block, so unpooling is
    a comparison per block offset and an interleave, with no scatter.
    """

    def __init__(self, scale, output_size, **kwargs):
        super().__init__(**kwargs)
        self.scale = tuple(int(v) for v in scale)
        self.output_size = tuple(int(v) for v in output_size)

    def call(self, inputs):
        values, mask = inputs
        sh, sw = self.scale
        height, width = self.output_size
        ih, iw = values.shape[1], values.shape[2]
        rows = np.arange(ih)[:, None] * sh
        cols = np.arange(iw)[None, :] * sw
        blocks = []
        for dy in range(sh):
            row_blocks = []
            for dx in range(sw):
                target = ((rows + dy) * width + cols + dx).astype("float32")[None, :, :, None]
                hit = ops.equal(mask, ops.convert_to_tensor(target, dtype=mask.dtype))
                row_blocks.append(ops.where(hit, values, ops.zeros_like(values)))
            blocks.append(ops.stack(row_blocks, axis=3))  # (N, ih, iw, sw, C)
        grid = ops.stack(blocks, axis=2)  # (N, ih, sh, iw, sw, C)
        channels = values.shape[-1]
        full = ops.reshape(grid, (-1, ih * sh, iw * sw, channels))
        return full[:, :height, :width, :]

    def compute_output_shape(self, input_shape):
        values_shape = input_shape[0]
        return (values_shape[0],) + self.output_size + (values_shape[3],)

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, output_size=self.output_size)
        return config


def _round_half_away(values):
    """C's round(): halves away from zero, exact in float (floor(|x| + 0.5) is not, near 0.5 - ulp)."""
    magnitude = ops.abs(values)
    whole = ops.floor(magnitude)
    rounded = whole + ops.cast(magnitude - whole >= 0.5, values.dtype)
    return ops.where(values < 0, -rounded, rounded)


def _bin_masks(starts, ends, size):
    """(bins, size) booleans: position inside [start, end) of each bin, bounds clipped to [0, size]."""
    starts = ops.clip(starts, 0, size)
    ends = ops.clip(ends, 0, size)
    positions = ops.arange(size)[None, :]
    return ops.logical_and(positions >= starts[:, None], positions < ends[:, None]), ends <= starts


def _bin_counts(layer, counts):
    """The numbers of bins as a non-trainable weight, to divide by.

    TensorFlow's graph optimiser turns a division by a constant into a
    multiplication by its reciprocal (7 / 3 then gives 2.3333335, not
    2.3333333), and a bin edge is a floor or ceil of such a quotient: one
    ulp moves it by a pixel. A variable is never folded, so the division stays
    the float division Caffe does.
    """
    return layer.add_weight(name="bins", shape=(len(counts),), trainable=False,
                            initializer=keras.initializers.Constant([float(c) for c in counts]))


def _roi_image(features, batch_index):
    """The feature map an roi reads (NHWC), and whether its batch index names one (padding rows are -1)."""
    images = ops.shape(features)[0]
    index = ops.cast(batch_index, "int32")  # C's (int) cast truncates toward zero
    valid = ops.logical_and(index >= 0, index < images)
    return ops.take(features, ops.clip(index, 0, images - 1), axis=0), valid


@keras.saving.register_keras_serializable(package="keraffe")
class ROIPooling(keras.layers.Layer):
    """py-faster-rcnn's ROIPooling: max over each of pooled_h x pooled_w bins of each roi.

    Inputs: features (B, H, W, C) and rois (R, 5) = [image, x1, y1, x2, y2] in
    input pixels. As caffe-fast-rcnn's roi_pooling_layer: corners are
    round(coordinate * spatial_scale) (halves away from zero), the roi is at
    least 1 x 1, bin p spans floor(p * size / pooled) to ceil((p + 1) * size /
    pooled) from the roi's start (in float), clipped to the map; an empty bin is
    0. Output (R, pooled_h, pooled_w, C). Rows whose image index is not an
    image (the -1 padding of keraffe's proposals) give 0.
    """

    def __init__(self, pooled_size, spatial_scale, **kwargs):
        super().__init__(**kwargs)
        self.pooled_size = tuple(int(v) for v in pooled_size)
        self.spatial_scale = float(spatial_scale)

    def build(self, input_shape):
        self.bins = _bin_counts(self, self.pooled_size)

    def _bins(self, start, end, axis):
        pooled = self.pooled_size[axis]
        size = ops.maximum(end - start + 1, 1)
        step = ops.cast(size, "float32") / ops.cast(self.bins[axis], "float32")
        index = ops.arange(pooled, dtype="float32")
        begins = ops.cast(ops.floor(index * step), "int32") + start
        ends = ops.cast(ops.ceil((index + 1.0) * step), "int32") + start
        return begins, ends

    def call(self, inputs):
        features, rois = inputs
        height, width = features.shape[1], features.shape[2]

        def pool(roi):
            image, valid = _roi_image(features, roi[0])
            corners = ops.cast(_round_half_away(roi[1:5] * self.spatial_scale), "int32")
            rows, empty_rows = _bin_masks(*self._bins(corners[1], corners[3], 0), height)
            cols, empty_cols = _bin_masks(*self._bins(corners[0], corners[2], 1), width)
            low = ops.convert_to_tensor(-np.inf, image.dtype)
            across = ops.max(ops.where(cols[:, None, :, None], image[None], low), axis=2)      # (pw, H, C)
            pooled = ops.max(ops.where(rows[:, None, :, None], across[None], low), axis=2)     # (ph, pw, C)
            empty = ops.logical_or(ops.logical_or(empty_rows[:, None], empty_cols[None, :]), ops.logical_not(valid))
            return ops.where(empty[..., None], 0.0, pooled)

        return ops.map(pool, rois)

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0],) + self.pooled_size + (input_shape[0][3],)

    def get_config(self):
        config = super().get_config()
        config.update(pooled_size=self.pooled_size, spatial_scale=self.spatial_scale)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class PSROIPooling(keras.layers.Layer):
    """R-FCN's position-sensitive ROI pooling: bin (i, j) of output channel c averages input channel (c*k + i)*k + j.

    Inputs: features (B, H, W, output_dim * k * k) and rois (R, 5). As
    caffe-rfcn's psroi_pooling kernel, in float: the roi runs from round(x1) *
    scale to (round(x2) + 1) * scale (rounded in input pixels, then scaled), at
    least 0.1 wide; bin p spans floor(p * size / k + start) to ceil((p + 1) *
    size / k + start), clipped; the average is the bin's sum over its area, 0
    when empty. (The fork's header calls it max pooling; the kernel averages.)
    Output (R, k, k, output_dim). Padding rows (image -1) give 0.
    """

    def __init__(self, output_dim, group_size, spatial_scale, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.group_size = int(group_size)
        self.spatial_scale = float(spatial_scale)

    def build(self, input_shape):
        self.bins = _bin_counts(self, [self.group_size])

    def _bins(self, start, end):
        size = ops.maximum(end - start, 0.1)
        step = size / ops.cast(self.bins[0], "float32")
        index = ops.arange(self.group_size, dtype="float32")
        begins = ops.cast(ops.floor(index * step + start), "int32")
        ends = ops.cast(ops.ceil((index + 1.0) * step + start), "int32")
        return begins, ends

    def call(self, inputs):
        features, rois = inputs
        height, width = features.shape[1], features.shape[2]
        k, dim = self.group_size, self.output_dim
        # channel (c * k + i) * k + j for bin (i, j): index i * k + j of the last axis after the reshape below
        diagonal = np.arange(k * k).reshape(k, k, 1, 1)

        def pool(roi):
            image, valid = _roi_image(features, roi[0])
            rounded = _round_half_away(roi[1:5])
            start_x, start_y = rounded[0] * self.spatial_scale, rounded[1] * self.spatial_scale
            end_x, end_y = (rounded[2] + 1.0) * self.spatial_scale, (rounded[3] + 1.0) * self.spatial_scale
            rows, empty_rows = _bin_masks(*self._bins(start_y, end_y), height)
            cols, empty_cols = _bin_masks(*self._bins(start_x, end_x), width)
            rows_f, cols_f = ops.cast(rows, image.dtype), ops.cast(cols, image.dtype)
            sums = ops.einsum("ph,hqc->pqc", rows_f, ops.einsum("qw,hwc->hqc", cols_f, image))  # (k, k, C)
            sums = ops.take_along_axis(ops.reshape(sums, (k, k, dim, k * k)), diagonal, axis=3)[..., 0]
            area = ops.sum(rows_f, axis=1)[:, None] * ops.sum(cols_f, axis=1)[None, :]
            empty = ops.logical_or(ops.logical_or(empty_rows[:, None], empty_cols[None, :]), ops.logical_not(valid))
            return ops.where(empty[..., None], 0.0, sums / ops.where(empty, 1.0, area)[..., None])

        return ops.map(pool, rois)

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], self.group_size, self.group_size, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(output_dim=self.output_dim, group_size=self.group_size, spatial_scale=self.spatial_scale)
        return config
