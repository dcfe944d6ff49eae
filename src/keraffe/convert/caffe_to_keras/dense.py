"""InnerProduct: a Dense layer, with its weight rows put in the order Keras flattens in."""

from __future__ import annotations

import keras
import numpy as np

from keraffe.caffe.shapes import canonical_axis, count
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.layout import identity


def kernel_rows_to_keras(kernel: np.ndarray, layout, caffe_tail: tuple[int, ...]) -> np.ndarray:
    """Reorder (K, N) kernel rows from Caffe's flatten order to the Keras tensor's flatten order."""
    outputs = kernel.shape[1]
    # Reshaped output-major, the kernel is a free view of Caffe's (N, K) array, and the reorder
    # makes the only copy; VGG-16's fc6 is 411 MB, so a second one shows in peak memory.
    if layout.flattened_from is not None:
        c, h, w = layout.flattened_from
        blocks, keras_order = kernel.T.reshape(outputs, c, h, w), [2, 3, 1, 0]
    else:
        blocks = kernel.T.reshape((outputs,) + tuple(caffe_tail))
        keras_order = list(layout.perm[1:]) + [0]
    return np.ascontiguousarray(blocks.transpose(keras_order).reshape(-1, outputs))


@caffe_layer("InnerProduct")
def inner_product(ctx, node):
    param = node.param.inner_product_param
    in_shape = ctx.in_shape(node)
    axis = canonical_axis(param.axis, len(in_shape))
    name = ctx.blob_name(node)
    value = ctx.value(node)
    weights = ctx.weights(node)
    kernel = bias = None
    if weights is not None:
        kernel = weights[0] if param.transpose else weights[0].T
        bias = weights[1] if param.bias_term else None
    weights = None  # a released Caffe array can go once reordered (VGG's fc6 is 411 MB)
    if axis == 1:
        x = value.tensor
        if value.layout.rank > 2:
            x = keras.layers.Flatten(name=ctx.helper_name(node, "flatten"))(x)
        if kernel is not None and not value.layout.is_identity:
            kernel = kernel_rows_to_keras(kernel, value.layout, in_shape[1:])
    else:
        x = ctx.input(node, 0, identity(len(in_shape)))
        if axis != len(in_shape) - 1:
            x = keras.layers.Reshape(in_shape[1:axis] + (count(in_shape, axis),),
                                     name=ctx.helper_name(node, "flatten"))(x)
    layer = keras.layers.Dense(param.num_output, use_bias=param.bias_term, name=name)
    arrays = None if kernel is None else [kernel] + ([bias] if param.bias_term else [])
    kernel = None
    y = ctx.call_with_weights(node, layer, x, arrays)
    ctx.emit(node, 0, y, identity(axis + 1))
