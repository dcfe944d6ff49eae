"""Caffe's normalisations that no Keras layer computes: LRN, MVN, SSD's Normalize, and Scale over any axes."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keraffe")
class LRN(keras.layers.Layer):
    """Caffe's local response normalisation on NHWC input.

    ACROSS_CHANNELS: y = x / (k + alpha / n * sum of x^2 over n neighbouring
    channels)^beta. WITHIN_CHANNEL: y = x / (1 + alpha * mean of x^2 over an
    n x n window, zero-padded)^beta; Caffe ignores k there.
    """

    def __init__(self, local_size=5, alpha=1.0, beta=0.75, k=1.0, region="across_channels", **kwargs):
        super().__init__(**kwargs)
        if region not in ("across_channels", "within_channel"):
            raise ValueError(f"region must be 'across_channels' or 'within_channel', received {region!r}")
        self.local_size = int(local_size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)
        self.region = region

    def call(self, inputs):
        n = self.local_size
        squared = ops.square(inputs)
        pre = (n - 1) // 2
        if self.region == "across_channels":
            channels = inputs.shape[-1]
            padded = ops.pad(squared, [[0, 0]] * (len(inputs.shape) - 1) + [[pre, n - 1 - pre]])
            total = padded[..., 0:channels]
            for offset in range(1, n):
                total = total + padded[..., offset: offset + channels]
            scale = self.k + (self.alpha / n) * total
        else:
            padded = ops.pad(squared, [[0, 0], [pre, n - 1 - pre], [pre, n - 1 - pre], [0, 0]])
            mean = ops.average_pool(padded, (n, n), (1, 1), padding="valid")
            scale = 1.0 + self.alpha * mean
        return inputs * ops.power(scale, -self.beta)

    def get_config(self):
        config = super().get_config()
        config.update(local_size=self.local_size, alpha=self.alpha, beta=self.beta, k=self.k, region=self.region)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class MVN(keras.layers.Layer):
    """Caffe's mean-variance normalisation: subtract the mean, then divide by (std + eps).

    Statistics run over ``axes`` (the spatial axes, plus channels when
    across_channels). Caffe adds eps to the standard deviation, not to the
    variance, so LayerNormalization is not the same.
    """

    def __init__(self, axes, normalize_variance=True, eps=1e-9, **kwargs):
        super().__init__(**kwargs)
        self.axes = tuple(int(a) for a in axes)
        self.normalize_variance = bool(normalize_variance)
        self.eps = float(eps)

    def call(self, inputs):
        centred = inputs - ops.mean(inputs, axis=self.axes, keepdims=True)
        if not self.normalize_variance:
            return centred
        variance = ops.mean(ops.square(centred), axis=self.axes, keepdims=True)
        return centred / (ops.sqrt(variance) + self.eps)

    def get_config(self):
        config = super().get_config()
        config.update(axes=self.axes, normalize_variance=self.normalize_variance, eps=self.eps)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class L2Normalize(keras.layers.Layer):
    """SSD's Normalize: divide by the L2 norm (per position, or over the whole item), then scale.

    norm = sqrt(sum x^2 + eps) over the channel axis (or over every non-batch
    axis when ``across_spatial``); the learned scale is one value or one per channel.
    """

    def __init__(self, across_spatial=True, channel_shared=True, eps=1e-10, **kwargs):
        super().__init__(**kwargs)
        self.across_spatial = bool(across_spatial)
        self.channel_shared = bool(channel_shared)
        self.eps = float(eps)

    def build(self, input_shape):
        shape = (1,) if self.channel_shared else (input_shape[-1],)
        self.scale = self.add_weight(name="scale", shape=shape, initializer="ones")

    def call(self, inputs):
        axes = tuple(range(1, len(inputs.shape))) if self.across_spatial else (-1,)
        norm = ops.sqrt(ops.sum(ops.square(inputs), axis=axes, keepdims=True) + self.eps)
        return inputs / norm * self.scale

    def get_config(self):
        config = super().get_config()
        config.update(across_spatial=self.across_spatial, channel_shared=self.channel_shared, eps=self.eps)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class AxisScale(keras.layers.Layer):
    """Caffe's Scale/Bias with learned factors over arbitrary axes: y = x * scale (+ bias).

    ``param_shape`` is the factor's shape broadcast against the input (ones on
    the axes it does not cover). Per-channel scaling uses Keras'
    BatchNormalization instead; this layer covers Caffe's other axis/num_axes.
    """

    def __init__(self, param_shape, use_scale=True, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.param_shape = tuple(int(d) for d in param_shape)
        self.use_scale = bool(use_scale)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        if self.use_scale:
            self.scale = self.add_weight(name="scale", shape=self.param_shape, initializer="ones")
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=self.param_shape, initializer="zeros")

    def call(self, inputs):
        out = inputs * self.scale if self.use_scale else inputs
        return out + self.bias if self.use_bias else out

    def get_config(self):
        config = super().get_config()
        config.update(param_shape=self.param_shape, use_scale=self.use_scale, use_bias=self.use_bias)
        return config
