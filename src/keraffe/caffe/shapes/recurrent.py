"""LSTM and RNN (BVLC's RecurrentLayer).

Bottoms: the time-major input x (T, N, ...), the sequence continuation cont
(T, N), an optional static input (N, ...), and with ``expose_hidden`` the
initial states (1, N, H) (LSTM: h then c). Tops: the output (T, N, H), and with
``expose_hidden`` the final states (1, N, H). Learned blobs, in Caffe's order:
LSTM W_xc (4H, K), b_c (4H), [W_xc_static (4H, Ks)], W_hc (4H, H); RNN W_xh
(H, K), b_h (H), [W_xh_static (H, Ks)], W_hh (H, H), W_ho (H, H), b_o (H), with
K the product of x's axes after the second.
"""

from __future__ import annotations

from keraffe.caffe.shapes import LayerShapes, count, expect_bottoms, shape_rule
from keraffe.errors import ShapeError


def _recurrent(layer, bottoms, states: int, gates: int, output_layer: bool) -> LayerShapes:
    param = layer.recurrent_param
    hidden = param.num_output
    if hidden <= 0:
        raise ShapeError("recurrent_param.num_output must be positive")
    exposed = states if param.expose_hidden else 0
    expect_bottoms(layer, bottoms, 2 + exposed, 3 + exposed)
    x, cont = bottoms[0], bottoms[1]
    if len(x) < 2 or tuple(cont) != tuple(x[:2]):
        raise ShapeError(f"cont must be (T, N) = {tuple(x[:2])} for an input of shape {tuple(x)}, got {tuple(cont)}")
    steps, streams = x[0], x[1]
    static = bottoms[2] if len(bottoms) > 2 + exposed else None
    for state in bottoms[len(bottoms) - exposed:]:
        if tuple(state) != (1, streams, hidden):
            raise ShapeError(f"an initial state must be (1, {streams}, {hidden}), got {tuple(state)}")
    inputs = count(x, 2)
    params = [(gates * hidden, inputs), (gates * hidden,)]
    macs = steps * streams * gates * hidden * (inputs + hidden)
    if static is not None:
        if static[0] != streams:
            raise ShapeError(f"the static input's first axis must be N = {streams}, got {tuple(static)}")
        params.append((gates * hidden, count(static, 1)))
        macs += streams * gates * hidden * count(static, 1)
    params.append((gates * hidden, hidden))
    if output_layer:
        params += [(hidden, hidden), (hidden,)]
        macs += steps * streams * hidden * hidden
    tops = ((steps, streams, hidden),) + ((1, streams, hidden),) * exposed
    return LayerShapes(tops, tuple(params), macs)


@shape_rule("LSTM")
def lstm(layer, bottoms):
    return _recurrent(layer, bottoms, states=2, gates=4, output_layer=False)


@shape_rule("RNN")
def rnn(layer, bottoms):
    return _recurrent(layer, bottoms, states=1, gates=1, output_layer=True)
