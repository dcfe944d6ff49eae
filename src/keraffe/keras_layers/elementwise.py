"""Caffe's element-wise functions that Keras has no layer for, each exactly Caffe's formula."""

from __future__ import annotations

import math

import keras
from keras import ops


class _Elementwise(keras.layers.Layer):
    """Shape-preserving layer with float-valued settings saved in its config."""

    _settings: tuple[str, ...] = ()

    def __init__(self, **kwargs):
        settings = {name: float(kwargs.pop(name)) for name in self._settings if name in kwargs}
        super().__init__(**kwargs)
        for name, value in settings.items():
            setattr(self, name, value)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in self._settings})
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class Power(_Elementwise):
    """y = (shift + scale * x) ^ power."""

    _settings = ("power", "scale", "shift")

    def __init__(self, power=1.0, scale=1.0, shift=0.0, **kwargs):
        super().__init__(power=power, scale=scale, shift=shift, **kwargs)

    def call(self, inputs):
        base = inputs
        if self.scale != 1.0:
            base = base * self.scale
        if self.shift != 0.0:
            base = base + self.shift
        if self.power == 1.0:
            return base
        if self.power == 2.0:
            return ops.square(base)
        return ops.power(base, self.power)


@keras.saving.register_keras_serializable(package="keraffe")
class Exp(_Elementwise):
    """y = base ^ (shift + scale * x), with base e when ``base`` is -1 (Caffe's convention)."""

    _settings = ("base", "scale", "shift")

    def __init__(self, base=-1.0, scale=1.0, shift=0.0, **kwargs):
        super().__init__(base=base, scale=scale, shift=shift, **kwargs)

    def call(self, inputs):
        log_base = 1.0 if self.base == -1.0 else math.log(self.base)
        return ops.exp(inputs * (self.scale * log_base) + self.shift * log_base)


@keras.saving.register_keras_serializable(package="keraffe")
class Log(_Elementwise):
    """y = log_base(shift + scale * x), natural log when ``base`` is -1."""

    _settings = ("base", "scale", "shift")

    def __init__(self, base=-1.0, scale=1.0, shift=0.0, **kwargs):
        super().__init__(base=base, scale=scale, shift=shift, **kwargs)

    def call(self, inputs):
        value = ops.log(inputs * self.scale + self.shift)
        if self.base == -1.0:
            return value
        return value * (1.0 / math.log(self.base))


@keras.saving.register_keras_serializable(package="keraffe")
class Threshold(_Elementwise):
    """y = 1 where x > threshold, else 0."""

    _settings = ("threshold",)

    def __init__(self, threshold=0.0, **kwargs):
        super().__init__(threshold=threshold, **kwargs)

    def call(self, inputs):
        return ops.cast(ops.greater(inputs, self.threshold), inputs.dtype)


@keras.saving.register_keras_serializable(package="keraffe")
class AbsVal(_Elementwise):
    """y = |x|."""

    def call(self, inputs):
        return ops.absolute(inputs)


@keras.saving.register_keras_serializable(package="keraffe")
class Clip(_Elementwise):
    """y = max(min, min(x, max)), Caffe's order: with min > max every output is min."""

    _settings = ("min", "max")

    def __init__(self, min=0.0, max=1.0, **kwargs):
        super().__init__(min=min, max=max, **kwargs)

    def call(self, inputs):
        return ops.maximum(ops.minimum(inputs, self.max), self.min)


@keras.saving.register_keras_serializable(package="keraffe")
class Swish(_Elementwise):
    """y = x * sigmoid(beta * x)."""

    _settings = ("beta",)

    def __init__(self, beta=1.0, **kwargs):
        super().__init__(beta=beta, **kwargs)

    def call(self, inputs):
        return inputs * ops.sigmoid(inputs * self.beta)


@keras.saving.register_keras_serializable(package="keraffe")
class WeightedSum(keras.layers.Layer):
    """Caffe's Eltwise SUM with coefficients: y = sum_i coeff_i * x_i."""

    def __init__(self, coefficients, **kwargs):
        super().__init__(**kwargs)
        self.coefficients = tuple(float(c) for c in coefficients)

    def call(self, inputs):
        total = None
        for coefficient, value in zip(self.coefficients, inputs):
            term = value if coefficient == 1.0 else value * coefficient
            total = term if total is None else total + term
        return total

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(coefficients=self.coefficients)
        return config
