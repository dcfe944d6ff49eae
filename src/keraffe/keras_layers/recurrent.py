"""Caffe's LSTM and RNN steps as Keras RNN cells, for keras.layers.RNN.

Keras' own LSTM cannot restart a sequence in the middle: Caffe's recurrent
layers take a second input, ``cont``, and at each step multiply the previous
hidden state (and, in the LSTM, the forget gate) by it, so a 0 starts a new
sequence wherever it stands. These cells do that. Each step's input is the
already-projected x (W_x x + b, one Dense over all steps), the projected
static input if there is one, and cont, concatenated in that order.
"""

from __future__ import annotations

import keras
from keras import ops


class _CaffeCell(keras.layers.Layer):
    def __init__(self, units, static_input=False, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.static_input = bool(static_input)

    def _split(self, inputs, width):
        projected = inputs[:, :width]
        static = inputs[:, width:2 * width] if self.static_input else None
        cont = inputs[:, -1:]
        return projected, static, cont

    def _gate_input(self, recurrent, projected, static):
        # Caffe's Eltwise SUM adds its bottoms in order: W_h h + W_x x (+ W_static x_static).
        total = recurrent + projected
        return total + static if static is not None else total

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, static_input=self.static_input)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class CaffeLSTMCell(_CaffeCell):
    """One step of Caffe's LSTM (lstm_unit_layer.cpp), gates in Caffe's order i, f, o, g.

    h' = cont * h; G = h' W_hc + (W_xc x + b_c) [+ W_static x_static];
    f = 0 where cont is 0, else cont * sigmoid(G_f); c = f * c + sigmoid(G_i) * tanh(G_g);
    h = sigmoid(G_o) * tanh(c).
    """

    @property
    def state_size(self):
        return [self.units, self.units]

    @property
    def output_size(self):
        return self.units

    def build(self, input_shape):
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(self.units, 4 * self.units),
                                                initializer="orthogonal")

    def call(self, inputs, states):
        h, c = states[0], states[1]
        units = self.units
        projected, static, cont = self._split(inputs, 4 * units)
        gates = self._gate_input(ops.matmul(cont * h, self.recurrent_kernel), projected, static)
        i = ops.sigmoid(gates[:, :units])
        f = ops.where(cont == 0, 0.0, cont * ops.sigmoid(gates[:, units:2 * units]))
        o = ops.sigmoid(gates[:, 2 * units:3 * units])
        g = ops.tanh(gates[:, 3 * units:])
        c = f * c + i * g
        h = o * ops.tanh(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="keraffe")
class CaffeRNNCell(_CaffeCell):
    """One step of Caffe's RNN (rnn_layer.cpp) up to its hidden state: h = tanh((cont * h) W_hh + W_xh x + b_h).

    The RNN's output, o = tanh(W_ho h + b_o), is a Dense with tanh over all steps after.
    """

    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self):
        return self.units

    def build(self, input_shape):
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(self.units, self.units),
                                                initializer="orthogonal")

    def call(self, inputs, states):
        h = states[0] if isinstance(states, (list, tuple)) else states
        projected, static, cont = self._split(inputs, self.units)
        h = ops.tanh(self._gate_input(ops.matmul(cont * h, self.recurrent_kernel), projected, static))
        return h, [h]
