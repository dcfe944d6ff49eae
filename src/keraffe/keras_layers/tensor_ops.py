"""Caffe's blob operations without a Keras layer: Slice, Tile, Reduction, ArgMax, strided subsampling."""

from __future__ import annotations

import keras
from keras import ops


def _slice_along(x, axis, begin, end):
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(begin, end)
    return x[tuple(index)]


@keras.saving.register_keras_serializable(package="keraffe")
class AxisSlice(keras.layers.Layer):
    """One piece of Caffe's Slice: elements [begin, end) along ``axis``."""

    def __init__(self, axis, begin, end, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.begin = int(begin)
        self.end = int(end)

    def call(self, inputs):
        return _slice_along(inputs, self.axis, self.begin, self.end)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        shape[self.axis] = self.end - self.begin
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, begin=self.begin, end=self.end)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class Tile(keras.layers.Layer):
    """Caffe's Tile: repeat the whole trailing block from ``axis`` on, ``tiles`` times along ``axis``."""

    def __init__(self, axis, tiles, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.tiles = int(tiles)

    def call(self, inputs):
        reps = [1] * len(inputs.shape)
        reps[self.axis] = self.tiles
        return ops.tile(inputs, reps)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if shape[self.axis] is not None:
            shape[self.axis] *= self.tiles
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, tiles=self.tiles)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class Reduction(keras.layers.Layer):
    """Caffe's Reduction: SUM, ASUM, SUMSQ or MEAN over every axis from ``axis`` on, times ``coeff``."""

    def __init__(self, operation, axis, coeff=1.0, **kwargs):
        super().__init__(**kwargs)
        if operation not in ("sum", "asum", "sumsq", "mean"):
            raise ValueError(f"operation must be sum, asum, sumsq or mean, received {operation!r}")
        self.operation = operation
        self.axis = int(axis)
        self.coeff = float(coeff)

    def call(self, inputs):
        axes = tuple(range(self.axis, len(inputs.shape)))
        values = {"sum": inputs, "mean": inputs, "asum": ops.absolute(inputs), "sumsq": ops.square(inputs)}[self.operation]
        reduced = ops.mean(values, axis=axes) if self.operation == "mean" else ops.sum(values, axis=axes)
        return reduced * self.coeff if self.coeff != 1.0 else reduced

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[: self.axis])

    def get_config(self):
        config = super().get_config()
        config.update(operation=self.operation, axis=self.axis, coeff=self.coeff)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class ArgMax(keras.layers.Layer):
    """Caffe's ArgMax, in Caffe's axis order: indices (as floats) of the top_k values.

    With ``axis`` set, works along that axis and returns indices, or the values
    when ``out_max_val``. Without it, ranks each item's flattened values and
    returns (N, 1, top_k) indices, or (N, 2, top_k) indices then values.
    """

    def __init__(self, top_k=1, axis=None, out_max_val=False, **kwargs):
        super().__init__(**kwargs)
        self.top_k = int(top_k)
        self.axis = None if axis is None else int(axis)
        self.out_max_val = bool(out_max_val)

    def call(self, inputs):
        if self.axis is None:
            flat = ops.reshape(inputs, (ops.shape(inputs)[0], -1))
            values, indices = ops.top_k(flat, self.top_k)
            indices = ops.cast(indices, inputs.dtype)
            trailing = (1,) * (max(3, len(inputs.shape)) - 3)
            if self.out_max_val:
                return ops.reshape(ops.stack([indices, values], axis=1), (-1, 2, self.top_k) + trailing)
            return ops.reshape(indices, (-1, 1, self.top_k) + trailing)
        rank = len(inputs.shape)
        moved = ops.moveaxis(inputs, self.axis, -1)
        values, indices = ops.top_k(moved, self.top_k)
        result = values if self.out_max_val else ops.cast(indices, inputs.dtype)
        return ops.moveaxis(result, -1, self.axis % rank)

    def get_config(self):
        config = super().get_config()
        config.update(top_k=self.top_k, axis=self.axis, out_max_val=self.out_max_val)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class Subsample2D(keras.layers.Layer):
    """Keep every ``strides``-th row and column of an NHWC tensor.

    Keras convolutions cannot combine a stride with a dilation; a stride-1
    convolution followed by this subsampling computes exactly the strided one.
    """

    def __init__(self, strides, **kwargs):
        super().__init__(**kwargs)
        self.strides = tuple(int(s) for s in strides)

    def call(self, inputs):
        return inputs[:, :: self.strides[0], :: self.strides[1], :]

    def compute_output_shape(self, input_shape):
        def out(size, stride):
            return None if size is None else (size + stride - 1) // stride

        return (input_shape[0], out(input_shape[1], self.strides[0]), out(input_shape[2], self.strides[1]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(strides=self.strides)
        return config
