"""DeepLab/PSPNet's Interp: bilinear resizing with aligned corners, optionally cropping first."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keraffe.caffe.interp import interp_matrix, interp_taps, resize_bilinear_taps


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
        if keras.backend.backend() == "torch":
            return self._by_matrices(inputs)
        return self._by_taps(inputs)

    def _by_taps(self, inputs):
        """Gather each output's two source rows, then columns, and blend them: Caffe's own arithmetic.

        The fastest form on TensorFlow and JAX (bench/backends.py, PSPNet).
        """
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

    def _by_matrices(self, inputs):
        """Two products with the (output, input) interpolation matrices, crop included (zero columns).

        Each output sums the same two weighted taps as Caffe (the other
        weights are exact zeros), so only float32 round-off differs. On
        PyTorch, gathering along inner axes (index_select) is tens of times
        slower than these products (bench/backends.py, PSPNet).
        """
        height, width = inputs.shape[1], inputs.shape[2]
        crop = (-self.pad_beg, -self.pad_end)
        rows = ops.convert_to_tensor(interp_matrix(height, self.output_size[0], *crop), dtype=inputs.dtype)
        cols = ops.convert_to_tensor(interp_matrix(width, self.output_size[1], *crop), dtype=inputs.dtype)
        along_rows = ops.einsum("oh,nhwc->nowc", rows, inputs)
        return ops.einsum("pw,nowc->nopc", cols, along_rows)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_size + (input_shape[3],)

    def get_config(self):
        config = super().get_config()
        config.update(output_size=self.output_size, pad_beg=self.pad_beg, pad_end=self.pad_end)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class ResizeBilinear(keras.layers.Layer):
    """TensorFlow's resize_bilinear (the Synopsys fork's ResizeBilinear) on NHWC, in its arithmetic.

    Each output mixes two rows, then two columns, as TF does:
    top = a + (b - a) * fx, then top + (bottom - top) * fy.
    """

    def __init__(self, output_size, align_corners=False, half_pixel_centers=False, pytorch_half_pixel=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(int(v) for v in output_size)
        self.align_corners = bool(align_corners)
        self.half_pixel_centers = bool(half_pixel_centers)
        self.pytorch_half_pixel = bool(pytorch_half_pixel)

    def _taps(self, in_size, out_size):
        return resize_bilinear_taps(in_size, out_size, self.align_corners, self.half_pixel_centers,
                                    self.pytorch_half_pixel)

    def call(self, inputs):
        rows0, rows1, fy = self._taps(inputs.shape[1], self.output_size[0])
        cols0, cols1, fx = self._taps(inputs.shape[2], self.output_size[1])
        fy = ops.convert_to_tensor(fy[None, :, None, None], dtype=inputs.dtype)
        fx = ops.convert_to_tensor(fx[None, None, :, None], dtype=inputs.dtype)
        upper = ops.take(inputs, rows0, axis=1)
        lower = ops.take(inputs, rows1, axis=1)

        def across(rows):
            left = ops.take(rows, cols0, axis=2)
            return left + (ops.take(rows, cols1, axis=2) - left) * fx

        top = across(upper)
        return top + (across(lower) - top) * fy

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_size + (input_shape[3],)

    def get_config(self):
        config = super().get_config()
        config.update(output_size=self.output_size, align_corners=self.align_corners,
                      half_pixel_centers=self.half_pixel_centers, pytorch_half_pixel=self.pytorch_half_pixel)
        return config
