"""Caffe's LSTM and RNN steps (keraffe.keras_layers.recurrent) against their formulas, in numpy.

BVLC's lstm_unit_layer.cpp and rnn_layer.cpp: the hidden state is multiplied
by cont before the recurrent product, the LSTM's forget gate is cont times
its sigmoid (0 where cont is 0), gates in the order i, f, o, g. Each step's
input is the projected x and cont, as the converter builds it.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keraffe.keras_layers.recurrent import CaffeLSTMCell, CaffeRNNCell

from ._common import check_layer, rng

pytestmark = pytest.mark.backends


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _steps(units, gates):
    values = rng(10).standard_normal((2, 5, gates + 1)).astype(np.float32)
    values[:, :, -1] = 1.0
    values[:, 0, -1] = 0.0
    values[0, 3, -1] = 0.0  # a restart in the middle of stream 0
    values[1, 2, -1] = 0.5
    return values


def test_lstm_cell(tmp_path):
    units = 3
    steps = _steps(units, 4 * units)
    kernel = rng(11).standard_normal((units, 4 * units)).astype(np.float32)
    h, c = np.zeros((2, units)), np.zeros((2, units))
    expected = []
    for t in range(steps.shape[1]):
        cont = steps[:, t, -1:].astype(np.float64)
        gates = (cont * h) @ kernel + steps[:, t, :-1]
        i, f, o, g = (gates[:, k * units:(k + 1) * units] for k in range(4))
        f = np.where(cont == 0, 0.0, cont * _sigmoid(f))
        c = f * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        expected.append(h)
    layer = keras.layers.RNN(CaffeLSTMCell(units, name="lstm_cell"), return_sequences=True, name="lstm")
    check_layer(layer, steps, np.stack(expected, axis=1), tmp_path, weights=[kernel])


def test_rnn_cell(tmp_path):
    units = 4
    steps = _steps(units, units)
    kernel = rng(12).standard_normal((units, units)).astype(np.float32) * 0.5
    h = np.zeros((2, units))
    expected = []
    for t in range(steps.shape[1]):
        cont = steps[:, t, -1:].astype(np.float64)
        h = np.tanh((cont * h) @ kernel + steps[:, t, :-1])
        expected.append(h)
    layer = keras.layers.RNN(CaffeRNNCell(units, name="rnn_cell"), return_sequences=True, name="rnn")
    check_layer(layer, steps, np.stack(expected, axis=1), tmp_path, weights=[kernel])
