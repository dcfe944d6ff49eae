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
