"""Caffe's LSTM, RNN and Embed against real Caffe (brocolli-caffe has all three).

Every sequence restarts in the middle: ``cont`` is 0 at each stream's first
step and again at a later step of one stream, and holds a fraction elsewhere
(Caffe multiplies by it, it is not a flag). Keras tensors are batch-first
(keraffe.layout.time_major): Caffe's (T, N, ...) is Keras' (N, T, ...).
The CRNN case is a text recogniser's shape: convolutions, a Permute and
Reshape to (T, N, C), an LSTM, and an InnerProduct over axis 2.
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.errors import ConversionError

from ._harness import Batch, Case, assert_case, build_net, classes_of, convert, inputs, params

pytestmark = pytest.mark.pycaffe


def layer(type_name: str, param: str, bottoms, tops, name: str) -> str:
    b = " ".join(f'bottom: "{{p}}{x}"' for x in bottoms)
    t = " ".join(f'top: "{{p}}{x}"' for x in tops)
    return f'layer {{ name: "{{p}}{name}" type: "{type_name}" {b} {t} {param} }}\n'


def restarts(values, p):
    """cont: 0 where each stream starts, 0 again in the middle of stream 0, a fraction in stream 1."""
    cont = np.ones(values[p + "cont"].shape, np.float32)
    cont[0] = 0
    cont[3, 0] = 0
    cont[2, -1] = 0.5
    values[p + "cont"] = cont


def indices(values, p):
    """Word indices for Embed: integers, and fractions that Caffe's (int) cast truncates."""
    rng = np.random.default_rng(3)
    words = rng.integers(0, 7, values[p + "words"].shape).astype(np.float32)
    words.flat[::3] += np.float32(0.7)
    values[p + "words"] = words
    if p + "cont" in values:
        restarts(values, p)


def recurrent(type_name: str, bottoms=("x", "cont"), tops=("h",), extra: str = "") -> str:
    return layer(type_name, f"recurrent_param {{ num_output: 4 {extra} }}", bottoms, tops, type_name.lower())


SEQ = inputs(x=(6, 2, 3), cont=(6, 2))

CASES = [
    Case("lstm", SEQ, recurrent("LSTM"), adjust=restarts,
         check=lambda m, p: "RNN" in classes_of(m, p)),
    Case("lstm_image_steps", inputs(x=(5, 3, 2, 3), cont=(5, 3)), recurrent("LSTM"), adjust=restarts),
    Case("lstm_static", inputs(x=(6, 2, 3), cont=(6, 2), s=(2, 5)), recurrent("LSTM", ("x", "cont", "s")),
         adjust=restarts),
    Case("lstm_expose_hidden", inputs(x=(6, 2, 3), cont=(6, 2), h0=(1, 2, 4), c0=(1, 2, 4)),
         recurrent("LSTM", ("x", "cont", "h0", "c0"), ("h", "hT", "cT"), "expose_hidden: true"), adjust=restarts),
    Case("lstm_static_expose_hidden", inputs(x=(4, 3, 2), cont=(4, 3), s=(3, 2, 2), h0=(1, 3, 4), c0=(1, 3, 4)),
         recurrent("LSTM", ("x", "cont", "s", "h0", "c0"), ("h", "hT", "cT"), "expose_hidden: true"),
         adjust=restarts),
    Case("rnn", SEQ, recurrent("RNN"), adjust=restarts),
    Case("rnn_static_expose_hidden", inputs(x=(6, 2, 3), cont=(6, 2), s=(2, 3), h0=(1, 2, 4)),
         recurrent("RNN", ("x", "cont", "s", "h0"), ("o", "hT"), "expose_hidden: true"), adjust=restarts),
    # ---------------------------------------------------------------- Embed, and a word-level language model
    Case("embed", inputs(words=(3, 4)), layer("Embed", "embed_param { num_output: 5 input_dim: 7 }", ("words",),
                                              ("e",), "embed"), adjust=indices),
    Case("embed_no_bias_rank3", inputs(words=(2, 3, 2)), layer(
        "Embed", "embed_param { num_output: 3 input_dim: 7 bias_term: false }", ("words",), ("e",), "embed"),
         adjust=indices),
    Case("word_lstm", inputs(words=(5, 2), cont=(5, 2)),
         layer("Embed", "embed_param { num_output: 6 input_dim: 7 }", ("words",), ("e",), "embed")
         + recurrent("LSTM", ("e", "cont"))
         + layer("InnerProduct", "inner_product_param { num_output: 7 axis: 2 }", ("h",), ("logits",), "ip")
         + layer("Softmax", "softmax_param { axis: 2 }", ("logits",), ("prob",), "softmax"), adjust=indices),
    # ---------------------------------------------------------------- CRNN: conv -> (T, N, C) -> LSTM -> IP axis 2
    Case("crnn", inputs(image=(2, 1, 8, 12), cont=(12, 2)),
         layer("Convolution", "convolution_param { num_output: 4 kernel_size: 3 pad: 1 }", ("image",), ("c",),
               "conv")
         + layer("ReLU", "", ("c",), ("c",), "relu")
         + layer("Pooling", "pooling_param { pool: MAX kernel_h: 8 kernel_w: 1 stride_h: 8 stride_w: 1 }", ("c",),
                 ("p",), "pool")
         + layer("Permute", "permute_param { order: 3 order: 0 order: 1 order: 2 }", ("p",), ("seq4",), "perm")
         + layer("Reshape", "reshape_param { shape { dim: 0 dim: 0 dim: -1 } }", ("seq4",), ("seq",), "reshape")
         + recurrent("LSTM", ("seq", "cont"))
         + layer("InnerProduct", "inner_product_param { num_output: 5 axis: 2 }", ("h",), ("logits",), "ip")
         + layer("Softmax", "softmax_param { axis: 2 }", ("logits",), ("prob",), "softmax"), adjust=restarts),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory.mktemp("recurrent"))


@pytest.mark.parametrize("case", params(CASES))
def test_recurrent_matches_caffe(batch, case):
    assert_case(batch, case)


def test_cases_run_as_one_net(batch):
    batch.check_all_batches()


def test_keras_sequences_are_batch_first(tmp_path):
    """The converted model takes (N, T, ...) sequences and (N, T) cont, as Keras' own recurrent layers."""
    case = CASES[0]
    model = convert(build_net([case], tmp_path / "net.prototxt"))
    shapes = {tensor.name.split(":")[0]: tuple(tensor.shape) for tensor in model.inputs}
    assert shapes == {"lstm__x": (None, 6, 3), "lstm__cont": (None, 6)}
    assert tuple(model.outputs[0].shape) == (None, 6, 4)


def test_inner_product_mixing_streams_is_refused(tmp_path):
    case = Case("mixing", SEQ, recurrent("LSTM") + layer(
        "InnerProduct", "inner_product_param { num_output: 3 axis: 1 }", ("h",), ("y",), "ip"))
    with pytest.raises(ConversionError, match="mixes batches"):
        convert(build_net([case], tmp_path / "net.prototxt"))
