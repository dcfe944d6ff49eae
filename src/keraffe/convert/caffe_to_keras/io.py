"""Input, Parameter, Split, Silence and Dropout: where values enter, fork, stop, or pass unchanged."""

from __future__ import annotations

import keras
import numpy as np

from keraffe import keras_layers
from keraffe.caffe.python_layers import python_layer_params
from keraffe.caffe.shapes import python_layer_kind
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.errors import ConversionError, KeraffeError
from keraffe.layout import default_layout, time_major


#: Layers through which a blob's first two axes stay what they were (time and stream for a sequence).
_KEEP_LEADING_AXES = frozenset({"Embed", "Split", "Dropout", "ReLU", "TanH", "Sigmoid", "Power", "AbsVal", "ELU",
                                "Eltwise", "Scale", "Bias", "InnerProduct", "Reshape", "Softmax", "Concat", "Slice"})


def _input_layout(ctx, tensor):
    """How a net input is laid out in Keras: batch-first, so a time-major sequence (T, N, ...) becomes (N, T, ...).

    An input is a sequence when it reaches an LSTM's or RNN's time-major bottoms
    (x, cont, an initial state) through layers that keep its first two axes.
    """
    rank = len(ctx.net.shapes[tensor])
    consumers = ctx.net.consumers()
    frontier, seen = [tensor], set()
    while rank >= 2 and frontier:
        current = frontier.pop()
        if current in seen:
            continue
        seen.add(current)
        for node, index in consumers.get(current, []):
            if node.type in ("LSTM", "RNN"):
                states = (2 if node.type == "LSTM" else 1) * node.param.recurrent_param.expose_hidden
                if index != 2 or len(node.inputs) == 2 + states:  # all but a static input (N, ...) are time-major
                    return time_major(rank)
            elif node.type in _KEEP_LEADING_AXES:
                frontier.extend(node.outputs)
    return default_layout(rank)


@caffe_layer("Input")
def input_layer(ctx, node):
    for index in range(len(node.outputs)):
        shape = ctx.out_shape(node, index)
        layout = _input_layout(ctx, node.outputs[index])
        tensor = keras.Input(shape=layout.keras_shape(shape)[1:], name=ctx.blob_name(node, index))
        ctx.emit(node, index, tensor, layout)


@caffe_layer("Parameter")
def parameter(ctx, node):
    """A blob of the weights, output as it is; or, where the weights hold none, a model input.

    A Parameter layer with no blob in the weights computes zeros in Caffe: such
    nets (DAN's, converted from TensorFlow placeholders) are fed from outside,
    so keraffe makes it an input of the model (keraffe.caffe.net marks it one).
    """
    shape = ctx.out_shape(node)
    layout = default_layout(len(shape))
    name = ctx.blob_name(node)
    if node.outputs[0] in ctx.net.inputs:
        layout = _input_layout(ctx, node.outputs[0])
        ctx.emit(node, 0, keras.Input(shape=layout.keras_shape(shape)[1:], name=name), layout)
        return
    weights = ctx.weights(node)
    arrays = None if weights is None else [layout.to_keras(np.asarray(weights[0], np.float32))]
    layer = keras_layers.ConstantBlob(layout.keras_shape(shape), name=name)
    ctx.emit(node, 0, ctx.call_with_weights(node, layer, _anchor(ctx, node), arrays), layout)


def _anchor(ctx, node):
    """A model input a constant layer can hang from: Keras graphs start at inputs."""
    anchors = [ctx.values[t].tensor for t in ctx.net.inputs if t in ctx.values]
    if not anchors:
        raise ConversionError(f"layer '{node.name}' ({node.type}) comes before every input of the net; a Keras "
                              "model computes from its inputs, so keraffe needs one before it")
    return anchors[0]


@caffe_layer("DummyData")
def dummy_data(ctx, node):
    """BVLC's DummyData with constant fillers (0 by default): blobs of one value.

    Any other filler draws new random numbers at every forward pass, which no
    converted model can match; such layers are refused.
    """
    fillers = list(node.param.dummy_data_param.data_filler)
    anchor = _anchor(ctx, node)
    for index in range(len(node.outputs)):
        filler = fillers[0] if len(fillers) == 1 else (fillers[index] if fillers else None)
        if filler is not None and filler.type != "constant":
            raise ConversionError(f"layer '{node.name}' (DummyData) fills top {index} with '{filler.type}' random "
                                  "numbers, drawn anew at every forward pass; no converted model can match them")
        shape = ctx.out_shape(node, index)
        layout = default_layout(len(shape))
        value = np.full(layout.keras_shape(shape), filler.value if filler is not None else 0.0, np.float32)
        layer = keras_layers.ConstantBlob(value.shape, name=ctx.blob_name(node, index))
        ctx.emit(node, index, ctx.call_with_weights(node, layer, anchor, [value]), layout)


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


@caffe_layer(python_layer_kind("spatial_dropout", "SpatialDropoutLayer"))
def spatial_dropout(ctx, node):
    """ENet's SpatialDropoutLayer (caffe-enet's python/spatial_dropout.py).

    Unless its param_str says phase 'TRAIN' (the net's phase plays no part), it
    computes bottom * (1 / (1 - p)): not the identity. ENet's BN-absorber folds
    the same factor into the convolution before when it deletes these layers.
    """
    try:
        params = python_layer_params(node.param)
        phase, p = str(params.get("phase", "")), float(params["p"])
    except (KeraffeError, KeyError, TypeError, ValueError) as error:
        raise ConversionError(f"layer '{node.name}' (spatial_dropout.SpatialDropoutLayer): param_str "
                              f"{node.param.python_param.param_str!r} does not give 'p' as the layer reads it "
                              f"({error})") from None
    if not 0.0 < p < 1.0:
        raise ConversionError(f"layer '{node.name}' (spatial_dropout.SpatialDropoutLayer): p = {p} must lie in "
                              "(0, 1), or the layer refuses to set up")
    if phase == "TRAIN":
        raise ConversionError(f"layer '{node.name}' (spatial_dropout.SpatialDropoutLayer) has phase 'TRAIN' in its "
                              "param_str: it drops random channels at every forward pass, so no converted model can "
                              "match it exactly")
    value = ctx.value(node)
    layer = keras.layers.Rescaling(1.0 / (1.0 - p), name=ctx.blob_name(node))
    ctx.emit(node, 0, layer(value.tensor), value.layout)
