"""BVLC's recurrent layers, LSTM and RNN (RecurrentLayer), as recurrent_layer.cpp shapes them.

Bottoms: x (T, N, ...), cont (T, N), then an optional static input (N, ...),
then, with expose_hidden, the initial states (1, N, num_output) each (LSTM: h
then c; RNN: h). Tops: the output (T, N, num_output), then with expose_hidden
the final states in the same order. Learned blobs, with K the size of x after
its first two axes and S the static input's after its first:

* LSTM: W_xc (4H, K), b_c (4H), [W_xc_static (4H, S)], W_hc (4H, H); gates i, f, o, g.
* RNN: W_xh (H, K), b_h (H), [W_xh_static (H, S)], W_hh (H, H), W_ho (H, H), b_o (H).
"""

from __future__ import annotations

from keraffe.caffe.shapes import LayerShapes, count, expect_bottoms, shape_rule
from keraffe.errors import ShapeError


def recurrent_setting(layer, bottoms) -> tuple[int, bool, bool]:
    """(number of states, static input given, expose_hidden) of an LSTM or RNN layer and its bottoms."""
    states = 2 if layer.type == "LSTM" else 1
    expose = layer.recurrent_param.expose_hidden
    least = 2 + states * int(expose)
    expect_bottoms(layer, bottoms, least, least + 1)
    return states, len(bottoms) > least, expose


@shape_rule("LSTM", "RNN")
def recurrent(layer, bottoms):
    states, static, expose = recurrent_setting(layer, bottoms)
    x, cont = bottoms[0], bottoms[1]
    hidden = layer.recurrent_param.num_output
    if hidden <= 0:
        raise ShapeError("recurrent_param needs num_output > 0 (Caffe CHECKs it)")
    if len(x) < 2:
        raise ShapeError(f"x must be (T, N, ...), got {x}")
    steps, streams = x[:2]
    if tuple(cont) != (steps, streams):
        raise ShapeError(f"cont must be (T, N) = {(steps, streams)}, got {cont}")
    gates = 4 * hidden if layer.type == "LSTM" else hidden
    inputs = count(x, 2)
    params = [(gates, inputs), (gates,)]
    if static:
        x_static = bottoms[2]
        if not x_static or x_static[0] != streams:
            raise ShapeError(f"the static input must be (N, ...) with N = {streams}, got {x_static}")
        params.append((gates, count(x_static, 1)))
    params.append((gates, hidden))
    if layer.type == "RNN":
        params += [(hidden, hidden), (hidden,)]
    state = (1, streams, hidden)
    if expose:
        for index in range(2 + int(static), 2 + int(static) + states):
            if tuple(bottoms[index]) != state:
                raise ShapeError(f"the initial state (bottom {index}) must be {state}, got {bottoms[index]}")
    tops = [(steps, streams, hidden)] + [state] * (states if expose else 0)
    macs = steps * streams * gates * (inputs + hidden) + (steps * streams * hidden * hidden if layer.type == "RNN"
                                                        else 0)
    if static:
        macs += streams * gates * count(bottoms[2], 1)  # the static input's product, once per stream
    return LayerShapes(tuple(tops), tuple(params), macs)
