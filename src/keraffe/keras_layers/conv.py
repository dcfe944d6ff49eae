"""Grouped transposed convolution, which Keras' Conv2DTranspose does not offer."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keraffe")
class GroupedConv2DTranspose(keras.layers.Layer):
    """Caffe's Deconvolution with group > 1, on NHWC, cropped to Caffe's output size.

    The kernel is stored as (kH, kW, out/groups, in): Keras' Conv2DTranspose
    convention per group, groups concatenated on the last axis. Depthwise
    deconvolution (groups = input channels, common for bilinear upsampling) runs
    as one depthwise convolution over the zero-inserted input with the kernel
    flipped; other group counts run one transposed convolution per group.
    ``cropping`` removes ((top, bottom), (left, right)) from the full output.
    """

    def __init__(self, filters, kernel_size, strides, groups, dilation_rate=(1, 1), cropping=((0, 0), (0, 0)),
                 use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(v) for v in kernel_size)
        self.strides = tuple(int(v) for v in strides)
        self.groups = int(groups)
        self.dilation_rate = tuple(int(v) for v in dilation_rate)
        self.cropping = tuple(tuple(int(v) for v in pair) for pair in cropping)
        self.use_bias = bool(use_bias)
        if self.filters % self.groups:
            raise ValueError(f"filters ({filters}) must be a multiple of groups ({groups})")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(f"input channels ({channels}) must be a multiple of groups ({self.groups})")
        self.kernel = self.add_weight(
            name="kernel", shape=self.kernel_size + (self.filters // self.groups, channels),
            initializer="glorot_uniform")
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def _full(self, inputs):
        channels = inputs.shape[-1]
        if self.groups == channels:
            return self._depthwise(inputs)
        per_in = channels // self.groups
        outputs = []
        for g in range(self.groups):
            part = inputs[..., g * per_in: (g + 1) * per_in]
            kernel = self.kernel[:, :, :, g * per_in: (g + 1) * per_in]
            outputs.append(ops.conv_transpose(part, kernel, self.strides, padding="valid",
                                              dilation_rate=self.dilation_rate))
        return ops.concatenate(outputs, axis=-1)

    def _depthwise(self, inputs):
        sh, sw = self.strides
        kh, kw = self.kernel_size
        dh, dw = self.dilation_rate
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        x = ops.reshape(inputs, (-1, height, 1, width, 1, channels))
        x = ops.pad(x, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]])
        x = ops.reshape(x, (-1, height * sh, width * sw, channels))
        x = x[:, : (height - 1) * sh + 1, : (width - 1) * sw + 1, :]
        eh, ew = dh * (kh - 1), dw * (kw - 1)
        x = ops.pad(x, [[0, 0], [eh, eh], [ew, ew], [0, 0]])
        # kernel (kh, kw, m, C) -> depthwise (kh, kw, C, m), flipped: a transposed conv correlates backwards.
        kernel = ops.flip(ops.flip(ops.transpose(self.kernel, (0, 1, 3, 2)), axis=0), axis=1)
        return ops.depthwise_conv(x, kernel, strides=1, padding="valid", dilation_rate=self.dilation_rate)

    def call(self, inputs):
        out = self._full(inputs)
        _, height, width, _ = self.compute_output_shape(inputs.shape)
        (top, _), (left, _) = self.cropping
        out = out[:, top: top + height, left: left + width, :]
        if self.use_bias:
            out = out + self.bias
        return out

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.cropping

        def full(size, k, s, d):
            return None if size is None else (size - 1) * s + d * (k - 1) + 1

        h = full(input_shape[1], self.kernel_size[0], self.strides[0], self.dilation_rate[0])
        w = full(input_shape[2], self.kernel_size[1], self.strides[1], self.dilation_rate[1])
        return (input_shape[0], None if h is None else h - top - bottom, None if w is None else w - left - right,
                self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides, groups=self.groups,
                      dilation_rate=self.dilation_rate, cropping=self.cropping, use_bias=self.use_bias)
        return config
