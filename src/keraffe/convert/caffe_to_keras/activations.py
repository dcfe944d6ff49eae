"""Element-wise activations. They work in any layout; the output keeps the input's layout."""

from __future__ import annotations

import keras
import numpy as np

from keraffe import keras_layers
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.errors import ConversionError


def _unary(ctx, node, layer):
    value = ctx.value(node)
    ctx.emit(node, 0, layer(value.tensor), value.layout)


@caffe_layer("ReLU")
def relu(ctx, node):
    param = node.param.relu_param
    max_value = 6.0 if param.relu6 else None
    _unary(ctx, node, keras.layers.ReLU(max_value=max_value, negative_slope=param.negative_slope,
                                        name=ctx.blob_name(node)))


@caffe_layer("ReLU6")
def relu6(ctx, node):
    param = node.param.relu6_param
    _unary(ctx, node, keras.layers.ReLU(max_value=param.threshold, negative_slope=param.negative_slope,
                                        name=ctx.blob_name(node)))


@caffe_layer("Sigmoid")
def sigmoid(ctx, node):
    _unary(ctx, node, keras.layers.Activation("sigmoid", name=ctx.blob_name(node)))


@caffe_layer("TanH")
def tanh(ctx, node):
    _unary(ctx, node, keras.layers.Activation("tanh", name=ctx.blob_name(node)))


@caffe_layer("BNLL")
def bnll(ctx, node):
    """Caffe's BNLL is log(1 + exp(x)), softplus."""
    _unary(ctx, node, keras.layers.Activation("softplus", name=ctx.blob_name(node)))


@caffe_layer("HardSwish")
def hard_swish(ctx, node):
    """x * relu6(x + 3) / 6, which is Keras 3's hard_silu."""
    _unary(ctx, node, keras.layers.Activation("hard_silu", name=ctx.blob_name(node)))


@caffe_layer("HardSigmoid")
def hard_sigmoid(ctx, node):
    """brocolli's (and the Synopsys fork's) max(0, min(1, x * alpha + beta)): Rescaling, then ReLU capped at 1.

    Keras' own hard_sigmoid has alpha 1/6; Caffe's defaults are 0.2 and 0.5.
    """
    param = node.param.hard_sigmoid_param if node.param.HasField("hard_sigmoid_param") else node.param.hardsigmoid_param
    value = ctx.value(node)
    affine = keras.layers.Rescaling(param.alpha, param.beta, name=ctx.helper_name(node, "affine"))(value.tensor)
    ctx.emit(node, 0, keras.layers.ReLU(max_value=1.0, name=ctx.blob_name(node))(affine), value.layout)


@caffe_layer("ELU")
def elu(ctx, node):
    _unary(ctx, node, keras.layers.ELU(alpha=node.param.elu_param.alpha, name=ctx.blob_name(node)))


@caffe_layer("AbsVal")
def absval(ctx, node):
    _unary(ctx, node, keras_layers.AbsVal(name=ctx.blob_name(node)))


@caffe_layer("Power")
def power(ctx, node):
    p = node.param.power_param
    _unary(ctx, node, keras_layers.Power(power=p.power, scale=p.scale, shift=p.shift, name=ctx.blob_name(node)))


@caffe_layer("Exp")
def exp(ctx, node):
    p = node.param.exp_param
    _unary(ctx, node, keras_layers.Exp(base=p.base, scale=p.scale, shift=p.shift, name=ctx.blob_name(node)))


@caffe_layer("Log")
def log(ctx, node):
    p = node.param.log_param
    _unary(ctx, node, keras_layers.Log(base=p.base, scale=p.scale, shift=p.shift, name=ctx.blob_name(node)))


@caffe_layer("Threshold")
def threshold(ctx, node):
    _unary(ctx, node, keras_layers.Threshold(threshold=node.param.threshold_param.threshold, name=ctx.blob_name(node)))


@caffe_layer("Clip")
def clip(ctx, node):
    p = node.param.clip_param
    _unary(ctx, node, keras_layers.Clip(min=p.min, max=p.max, name=ctx.blob_name(node)))


@caffe_layer("Swish")
def swish(ctx, node):
    beta = node.param.swish_param.beta
    if beta == 1.0:
        layer = keras.layers.Activation("silu", name=ctx.blob_name(node))
    else:
        layer = keras_layers.Swish(beta=beta, name=ctx.blob_name(node))
    _unary(ctx, node, layer)


@caffe_layer("PReLU")
def prelu(ctx, node):
    value = ctx.value(node)
    rank = value.layout.rank
    shared = node.param.prelu_param.channel_shared
    if shared:
        shared_axes = list(range(1, rank))
    elif value.layout.flattened_from is not None:
        shared_axes = []
    else:
        channel = value.layout.keras_axis(1)
        shared_axes = [a for a in range(1, rank) if a != channel]
    layer = keras.layers.PReLU(shared_axes=shared_axes or None, name=ctx.blob_name(node))
    out = layer(value.tensor)
    weights = ctx.weights(node)
    if weights is not None:
        alpha = np.asarray(weights[0], np.float32)
        if value.layout.flattened_from is not None and not shared:
            alpha = value.layout.to_keras(alpha[None])[0]
        ctx.set_weights(node, layer, [alpha.reshape(tuple(layer.weights[0].shape))])
    ctx.emit(node, 0, out, value.layout)


@caffe_layer("Softmax")
def softmax(ctx, node):
    value = ctx.value(node)
    caffe_axis = node.param.softmax_param.axis % value.layout.rank
    if value.layout.flattened_from is not None:
        if caffe_axis != 1:
            raise ConversionError(f"layer '{node.name}' (Softmax): softmax over the batch axis is not supported")
        # Softmax over the one flattened axis does not care about the element order.
        axis = 1
    else:
        axis = value.layout.keras_axis(caffe_axis)
    ctx.emit(node, 0, keras.layers.Softmax(axis=axis, name=ctx.blob_name(node))(value.tensor), value.layout)
