"""DeepLab/PSPNet's Interp: bilinear resizing with aligned corners, optionally cropping first."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def interp_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source index, its neighbour and the neighbour's weight for each output position.

    Follows Caffe's caffe_cpu_interp2 in float32: ratio = (in - 1) / (out - 1),
    src = ratio * i, neighbour = src + 1 unless src is the last row.
    """
    ratio = np.float32((in_size - 1) / (out_size - 1)) if out_size > 1 else np.float32(0.0)
    position = ratio * np.arange(out_size, dtype=np.float32)
    base = position.astype(np.int64)
    step = (base < in_size - 1).astype(np.int64)
    weight = (position - base.astype(np.float32)).astype(np.float32)
    return base, base + step, weight


@keras.saving.register_keras_serializable(package="keraffe")
class Interp(keras.layers.Layer):
    """Caffe's Interp on NHWC: crop ``pad_beg``/``pad_end`` (both <= 0), then align-corners bilinear."""

    def __init__(self, output_size, pad_beg=0, pad_end=0, **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(int(v) for v in output_size)
        self.pad_beg = int(pad_beg)
        self.pad_end = int(pad_end)
        if self.pad_beg > 0 or self.pad_end > 0:
            raise ValueError("Interp supports only non-positive padding (cropping), as Caffe does")

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        begin = -self.pad_beg
        x = inputs[:, begin: height + self.pad_end, begin: width + self.pad_end, :]
        in_h, in_w = x.shape[1], x.shape[2]
        rows0, rows1, row_weight = interp_taps(in_h, self.output_size[0])
        cols0, cols1, col_weight = interp_taps(in_w, self.output_size[1])
        dtype = x.dtype
        wy1 = ops.convert_to_tensor(row_weight[None, :, None, None], dtype=dtype)
        wx1 = ops.convert_to_tensor(col_weight[None, None, :, None], dtype=dtype)
        wy0 = 1.0 - wy1
        wx0 = 1.0 - wx1
        top = ops.take(x, rows0, axis=1)
        bottom = ops.take(x, rows1, axis=1)
        top = wx0 * ops.take(top, cols0, axis=2) + wx1 * ops.take(top, cols1, axis=2)
        bottom = wx0 * ops.take(bottom, cols0, axis=2) + wx1 * ops.take(bottom, cols1, axis=2)
        return wy0 * top + wy1 * bottom

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_size + (input_shape[3],)

    def get_config(self):
        config = super().get_config()
        config.update(output_size=self.output_size, pad_beg=self.pad_beg, pad_end=self.pad_end)
        return config
