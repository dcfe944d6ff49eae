"""InnerProduct: a Dense layer, with its weight rows put in the order Keras flattens in."""

from __future__ import annotations

import keras
import numpy as np

from keraffe.caffe.shapes import canonical_axis, count
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.errors import ConversionError
from keraffe.layout import Layout, batch_first, dense_rows_caffe_to_keras, identity


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
        if value.layout.perm[0] != 0:
            raise ConversionError(f"layer '{node.name}' (InnerProduct) flattens from axis 1 a blob whose batch is "
                                  f"Caffe's axis {value.layout.perm[0]} (a time-major sequence): that mixes batches")
        x = value.tensor
        if value.layout.rank > 2:
            x = keras.layers.Flatten(name=ctx.helper_name(node, "flatten"))(x)
        if kernel is not None and not value.layout.is_identity:
            kernel = dense_rows_caffe_to_keras(kernel, value.layout, in_shape[1:])
    else:
        # Caffe's order after the Keras batch axis (Caffe's axis 0, or 1 for a time-major sequence).
        layout = batch_first(value.layout) if value.layout.flattened_from is None else identity(len(in_shape))
        if layout.perm[0] >= axis:
            raise ConversionError(f"layer '{node.name}' (InnerProduct) flattens from axis {axis}, which would mix "
                                  f"in the batch (Caffe axis {layout.perm[0]} of {in_shape})")
        x = ctx.input(node, 0, layout)
        if axis != len(in_shape) - 1:
            leading = layout.keras_shape(in_shape)[1:axis]
            x = keras.layers.Reshape(leading + (count(in_shape, axis),), name=ctx.helper_name(node, "flatten"))(x)
        layout = Layout(layout.perm[:axis] + (axis,))
    layer = keras.layers.Dense(param.num_output, use_bias=param.bias_term, name=name)
    arrays = None if kernel is None else [kernel] + ([bias] if param.bias_term else [])
    kernel = None
    y = ctx.call_with_weights(node, layer, x, arrays)
    ctx.emit(node, 0, y, identity(axis + 1) if axis == 1 else layout)
