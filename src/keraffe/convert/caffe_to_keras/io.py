"""Input, Split, Silence and Dropout: where values enter, fork, stop, or pass unchanged."""

from __future__ import annotations

import keras

from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.errors import ConversionError
from keraffe.layout import default_layout


@caffe_layer("Input")
def input_layer(ctx, node):
    for index in range(len(node.outputs)):
        shape = ctx.out_shape(node, index)
        layout = default_layout(len(shape))
        tensor = keras.Input(shape=layout.keras_shape(shape)[1:], name=ctx.blob_name(node, index))
        ctx.emit(node, index, tensor, layout)


@caffe_layer("Split")
def split(ctx, node):
    for index in range(len(node.outputs)):
        ctx.alias(node, index, ctx.value(node), note=f"Split: same tensor as {node.inputs[0]}")


@caffe_layer("Silence")
def silence(ctx, node):
    """Silence only consumes blobs; nothing to compute."""


@caffe_layer("Dropout")
def dropout(ctx, node):
    param = node.param.dropout_param
    value = ctx.value(node)
    if param.sample_weights_test:
        raise ConversionError(
            f"layer '{node.name}' (Dropout) samples at test time (sample_weights_test: Monte Carlo dropout); "
            "its output is random in Caffe, so no converted model can match it exactly"
        )
    if not param.scale_train:
        # py-faster-rcnn's variant scales at test time instead of training time.
        layer = keras.layers.Rescaling(1.0 - param.dropout_ratio, name=ctx.blob_name(node))
    else:
        layer = keras.layers.Dropout(param.dropout_ratio, name=ctx.blob_name(node))
    ctx.emit(node, 0, layer(value.tensor), value.layout)
