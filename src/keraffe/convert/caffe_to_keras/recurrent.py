"""Caffe's LSTM, RNN and Embed.

Caffe's recurrent blobs are time-major, (T, N, ...); their Keras tensors are
batch-first, (N, T, ...) (keraffe.layout.time_major), so a converted model takes
and gives sequences as Keras' own recurrent layers do. Each recurrent layer
becomes a Dense projecting x at every step (W_x x + b), a Dense projecting the
static input if any, and a keras.layers.RNN over keraffe's Caffe cell, which
applies ``cont`` at each step as Caffe does (keraffe.keras_layers.recurrent).

Caffe's recurrent layers keep their final state between forward passes when
they do not expose it: a Caffe net's first forward starts from zeros, as the
Keras model always does, and a later one continues wherever cont is 1 at its
first step. The converted model computes what a freshly loaded net computes,
and what any net computes for sequences whose cont starts at 0.
"""

from __future__ import annotations

import keras
import numpy as np

from keraffe import keras_layers
from keraffe.caffe.shapes import count
from keraffe.caffe.shapes.recurrent import recurrent_setting
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.keras_layers.recurrent import CaffeLSTMCell, CaffeRNNCell
from keraffe.layout import Layout, batch_first, time_major


def _time_major_input(ctx, node, index: int):
    """A (T, N, ...) bottom as a batch-first Keras (N, T, K) tensor, its trailing axes flattened in Caffe's order."""
    shape = ctx.in_shape(node, index)
    x = ctx.input(node, index, time_major(len(shape)))
    if len(shape) != 3:
        x = keras.layers.Reshape((shape[0], count(shape, 2)), name=ctx.helper_name(node, f"flatten{index}"))(x)
    return x


def _dense(ctx, node, name: str, x, units: int, use_bias: bool, weight=None, bias=None, activation=None):
    """A Dense with Caffe's (out, in) weight (and bias), or Keras' initialisers when the net has no weights."""
    layer = keras.layers.Dense(units, use_bias=use_bias, activation=activation, name=name)
    arrays = None if weight is None else [np.asarray(weight).T] + ([np.asarray(bias)] if use_bias else [])
    return ctx.call_with_weights(node, layer, x, arrays)


@caffe_layer("LSTM", "RNN")
def recurrent(ctx, node):
    states, static, expose = recurrent_setting(node.param, [ctx.in_shape(node, i) for i in range(len(node.inputs))])
    lstm = node.type == "LSTM"
    hidden = node.param.recurrent_param.num_output
    gates = 4 * hidden if lstm else hidden
    steps = ctx.in_shape(node, 0)[0]
    weights = ctx.weights(node)
    blobs = list(weights) if weights is not None else [None] * (4 + int(static) + (0 if lstm else 2))
    w_x, b_x = blobs[0], blobs[1]
    w_static = blobs[2] if static else None
    w_h = blobs[2 + int(static)]
    parts = [_dense(ctx, node, ctx.helper_name(node, "x_transform"), _time_major_input(ctx, node, 0), gates, True,
                    w_x, b_x)]
    if static:
        x_static = ctx.input(node, 2, batch_first(ctx.value(node, 2).layout))
        x_static = keras.layers.Flatten(name=ctx.helper_name(node, "static_flat"))(x_static)
        projected = _dense(ctx, node, ctx.helper_name(node, "static"), x_static, gates, False, w_static)
        parts.append(keras.layers.RepeatVector(steps, name=ctx.helper_name(node, "static_steps"))(projected))
    cont = ctx.input(node, 1, time_major(2))
    parts.append(keras.layers.Reshape((steps, 1), name=ctx.helper_name(node, "cont"))(cont))
    steps_in = keras.layers.Concatenate(axis=-1, name=ctx.helper_name(node, "step_inputs"))(parts)
    cell = (CaffeLSTMCell if lstm else CaffeRNNCell)(hidden, static_input=static, name=ctx.helper_name(node, "cell"))
    initial = None
    if expose:
        first = 2 + int(static)
        initial = [keras.layers.Reshape((hidden,), name=ctx.helper_name(node, f"state{i}_in"))(
            ctx.input(node, first + i, time_major(3))) for i in range(states)]
    name = ctx.blob_name(node) if lstm else ctx.helper_name(node, "h")
    layer = keras.layers.RNN(cell, return_sequences=True, return_state=expose, name=name)
    result = layer(steps_in, initial_state=initial) if initial else layer(steps_in)
    sequence, finals = (result[0], list(result[1:])) if expose else (result, [])
    if w_h is not None:
        ctx.set_weights(node, layer, [np.asarray(w_h).T])
    if not lstm:  # the RNN's output: o = tanh(W_ho h + b_o)
        sequence = _dense(ctx, node, ctx.blob_name(node), sequence, hidden, True, blobs[-2], blobs[-1], "tanh")
    ctx.emit(node, 0, sequence, time_major(3))
    for index, final in enumerate(finals, start=1):
        state = keras.layers.Reshape((1, hidden), name=ctx.blob_name(node, index))(final)
        ctx.emit(node, index, state, time_major(3))


@caffe_layer("Embed")
def embed(ctx, node):
    """A lookup of rows of the (input_dim, num_output) table, at indices truncated toward zero (C's cast).

    Keras' Embedding casts its float input to int32 the same way. The bias, if
    any, is added after (keraffe's AxisScale). Out-of-range indices, undefined
    behaviour in Caffe's release builds, are an error in Keras.
    """
    param = node.param.embed_param
    value = ctx.value(node)
    weights = ctx.weights(node)
    rank = value.layout.rank
    x = value.tensor if value.layout.flattened_from is None else ctx.input(node, 0, batch_first(value.layout))
    layout = value.layout if value.layout.flattened_from is None else batch_first(value.layout)
    name = ctx.blob_name(node)
    table = keras.layers.Embedding(param.input_dim, param.num_output,
                                   name=name if not param.bias_term else ctx.helper_name(node, "table"))
    y = ctx.call_with_weights(node, table, x, None if weights is None else [weights[0]])
    if param.bias_term:
        shape = (1,) * (rank - 1) + (param.num_output,)  # AxisScale's shape leaves the batch axis out
        shift = keras_layers.AxisScale(shape, use_scale=False, use_bias=True, name=name)
        bias = None if weights is None else [np.asarray(weights[1]).reshape(shape)]
        y = ctx.call_with_weights(node, shift, y, bias)
    ctx.emit(node, 0, y, Layout(layout.perm + (rank,)))
