"""Shape rules of Caffe's LSTM and RNN against real Caffe: tops, and the learned blobs Caffe accepts.

Tops come from Caffe's own shape inference (one pycaffe call for all cases);
the learned blobs keraffe infers are written into a caffemodel that Caffe
loads, and Caffe refuses any blob whose shape is not the one it made.
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.caffe.net import load_net

pytestmark = pytest.mark.pycaffe

CASES = {
    # name: (layer type, hidden size, expose_hidden, static input)
    "lstm": ("LSTM", 4, False, False),
    "lstm_exposed": ("LSTM", 3, True, False),
    "lstm_static": ("LSTM", 2, False, True),
    "rnn": ("RNN", 4, False, False),
    "rnn_exposed_static": ("RNN", 3, True, True),
}
STEPS, STREAMS = 5, 2


def prototxt(name, kind, hidden, exposed, static) -> str:
    def feed(blob, *dims):
        shape = " ".join(f"dim: {d}" for d in dims)
        return f'layer {{ name: "{name}_{blob}" type: "Input" top: "{name}_{blob}" input_param {{ shape {{ {shape} }} }} }}\n'

    text = feed("x", STEPS, STREAMS, 3, 2) + feed("cont", STEPS, STREAMS)
    bottoms = [f"{name}_x", f"{name}_cont"]
    if static:
        text += feed("static", STREAMS, 6)
        bottoms.append(f"{name}_static")
    states = ["h0", "c0"] if kind == "LSTM" else ["h0"]
    tops = [f"{name}_out"]
    if exposed:
        for state in states:
            text += feed(state, 1, STREAMS, hidden)
            bottoms.append(f"{name}_{state}")
        tops += [f"{name}_{state}_final" for state in states]
    text += (f'layer {{ name: "{name}" type: "{kind}" ' + " ".join(f'bottom: "{b}"' for b in bottoms) + " "
             + " ".join(f'top: "{t}"' for t in tops)
             + f" recurrent_param {{ num_output: {hidden} expose_hidden: {'true' if exposed else 'false'} }} }}\n")
    return text


def test_recurrent_shapes_match_real_caffe(tmp_path):
    from keraffe.caffe.caffemodel import write_caffemodel
    from keraffe.caffe.prototxt import read_prototxt
    from keraffe.verify.caffe_runtime import pycaffe_blob_shapes, pycaffe_params

    path = tmp_path / "recurrent.prototxt"
    path.write_text('name: "recurrent"\n' + "".join(prototxt(name, *case) for name, case in CASES.items()))
    net = load_net(path)
    ours = {str(tensor): tuple(shape) for tensor, shape in net.shapes.items()}
    theirs = pycaffe_blob_shapes(path)
    for name in CASES:
        for blob in theirs:
            if blob.startswith(f"{name}_") and not blob.startswith(f"{name}_x") and "_split_" not in blob:
                assert ours[blob] == tuple(theirs[blob]), blob
    weights = {node.name: [np.full(shape, 0.25, np.float32) for shape in node.shapes.params]
               for node in net.layers if node.shapes.params}
    assert len(weights) == len(CASES)
    write_caffemodel(tmp_path / "recurrent.caffemodel", read_prototxt(path), weights)
    loaded = pycaffe_params(path, tmp_path / "recurrent.caffemodel")
    for name, blobs in weights.items():
        assert [tuple(b.shape) for b in loaded[name]] == [b.shape for b in blobs], name
        assert all(np.all(np.asarray(b) == 0.25) for b in loaded[name]), name


def test_learned_blob_shapes_follow_caffes_order():
    path_text = prototxt("l", "LSTM", 4, False, True)
    from keraffe.caffe.prototxt import parse_prototxt
    from keraffe.caffe.shapes import infer_layer

    layer = parse_prototxt(path_text).layer[-1]
    shapes = infer_layer(layer, [(STEPS, STREAMS, 3, 2), (STEPS, STREAMS), (STREAMS, 6)])
    assert shapes.tops == ((STEPS, STREAMS, 4),)
    assert shapes.params == ((16, 6), (16,), (16, 6), (16, 4))  # W_xc, b_c, W_xc_static, W_hc
