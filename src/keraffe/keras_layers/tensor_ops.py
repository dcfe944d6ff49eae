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


def _product(values) -> int:
    result = 1
    for value in values:
        result *= int(value)
    return result


@keras.saving.register_keras_serializable(package="keraffe")
class SpaceToBatchND(keras.layers.Layer):
    """TensorFlow's space_to_batch_nd on axes 1..M of a tensor in Caffe's axis order (the Synopsys fork's layer).

    Pads axis i by ``paddings[i]`` zeros, cuts it into blocks of ``block_shape[i]``,
    and moves the offsets within a block to the batch axis, offset-major:
    output item ((b_1 * B_2 + b_2) ... ) * N + n. The batch axis grows by prod(B).
    """

    def __init__(self, block_shape, paddings, **kwargs):
        super().__init__(**kwargs)
        self.block_shape = tuple(int(b) for b in block_shape)
        self.paddings = tuple(tuple(int(v) for v in pair) for pair in paddings)

    def call(self, inputs):
        m = len(self.block_shape)
        rank = len(inputs.shape)
        x = ops.pad(inputs, [(0, 0), *self.paddings] + [(0, 0)] * (rank - 1 - m))
        spatial = [x.shape[1 + i] // b for i, b in enumerate(self.block_shape)]
        rest = tuple(x.shape[1 + m:])
        split = [-1]
        for size, block in zip(spatial, self.block_shape):
            split += [size, block]
        x = ops.reshape(x, tuple(split) + rest)
        offsets = [2 + 2 * i for i in range(m)]
        order = offsets + [0] + [1 + 2 * i for i in range(m)] + list(range(1 + 2 * m, 1 + 2 * m + len(rest)))
        x = ops.transpose(x, order)
        return ops.reshape(x, (-1, *spatial) + rest)

    def compute_output_shape(self, input_shape):
        m = len(self.block_shape)
        batch = None if input_shape[0] is None else input_shape[0] * _product(self.block_shape)
        spatial = tuple((input_shape[1 + i] + sum(self.paddings[i])) // b for i, b in enumerate(self.block_shape))
        return (batch,) + spatial + tuple(input_shape[1 + m:])

    def get_config(self):
        config = super().get_config()
        config.update(block_shape=self.block_shape, paddings=self.paddings)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class BatchToSpaceND(keras.layers.Layer):
    """TensorFlow's batch_to_space_nd on axes 1..M (Caffe's axis order): SpaceToBatchND's inverse, then crops."""

    def __init__(self, block_shape, crops, **kwargs):
        super().__init__(**kwargs)
        self.block_shape = tuple(int(b) for b in block_shape)
        self.crops = tuple(tuple(int(v) for v in pair) for pair in crops)

    def call(self, inputs):
        m = len(self.block_shape)
        spatial = tuple(inputs.shape[1:1 + m])
        rest = tuple(inputs.shape[1 + m:])
        x = ops.reshape(inputs, self.block_shape + (-1,) + spatial + rest)
        order = [m]
        for i in range(m):
            order += [m + 1 + i, i]
        order += list(range(1 + 2 * m, 1 + 2 * m + len(rest)))
        x = ops.transpose(x, order)
        x = ops.reshape(x, (-1,) + tuple(s * b for s, b in zip(spatial, self.block_shape)) + rest)
        index = [slice(None)]
        for size, block, (begin, end) in zip(spatial, self.block_shape, self.crops):
            index.append(slice(begin, size * block - end))
        return x[tuple(index)]

    def compute_output_shape(self, input_shape):
        m = len(self.block_shape)
        batch = None if input_shape[0] is None else input_shape[0] // _product(self.block_shape)
        spatial = tuple(input_shape[1 + i] * b - sum(self.crops[i]) for i, b in enumerate(self.block_shape))
        return (batch,) + spatial + tuple(input_shape[1 + m:])

    def get_config(self):
        config = super().get_config()
        config.update(block_shape=self.block_shape, crops=self.crops)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class ConstantBlob(keras.layers.Layer):
    """Caffe's Parameter layer: a learned blob, output as it is (batch axis included), whatever the input.

    Keras graphs start at inputs, so the layer is called on one of the model's
    inputs, which it ignores but for tying itself to the graph.
    """

    def __init__(self, shape, **kwargs):
        super().__init__(**kwargs)
        self.shape = tuple(int(d) for d in shape)

    def build(self, input_shape):
        self.value = self.add_weight(name="value", shape=self.shape, initializer="zeros")

    def call(self, inputs):
        zero = ops.sum(ops.zeros_like(ops.reshape(inputs, (-1,))[:1]))
        return ops.cast(self.value, inputs.dtype) + ops.cast(zero, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return self.shape

    def get_config(self):
        config = super().get_config()
        config.update(shape=self.shape)
        return config
