"""LSTM, GRU, SimpleRNN, Bidirectional, TimeDistributed and Embedding against real Caffe.

LSTM with Keras' default activations is Caffe's own LSTM (gates reordered,
sequence-continuation and initial states made inside the net); SimpleRNN
returning its last state is Caffe's RNN; GRU, other activations and whole
SimpleRNN sequences are unrolled with Caffe 1.0 layers. Every variant of
return_sequences, return_state and go_backwards, both GRU reset_after
settings, a text model (Embedding -> LSTM -> GRU -> Dense) and a batch of
two (a time-major LSTM input without Permute) are compared blob by blob.
"""

from __future__ import annotations

import keras
import pytest

from keraffe.convert.keras_to_caffe import convert_model
from keraffe.errors import ConversionError, UnsupportedLayerError

from ._harness import Batch, Case, assert_case, assert_verified, caffe_types, params, randomize

pytestmark = pytest.mark.pycaffe

L = keras.layers
SEQUENCE = ((6, 3),)


def layer(factory):
    def build(x, p):
        return factory(p)(x[0])
    return build


def lstm(**kwargs):
    return layer(lambda p: L.LSTM(4, name=p + "rnn", **kwargs))


def gru(**kwargs):
    return layer(lambda p: L.GRU(4, name=p + "rnn", **kwargs))


def simple(**kwargs):
    return layer(lambda p: L.SimpleRNN(4, name=p + "rnn", **kwargs))


def uses(*types, absent=()):
    def check(export, p):
        used = set(caffe_types(export, p))
        assert set(types) <= used and not used & set(absent), sorted(used)
    return check


def reported(kind, how):
    def check(export, p):
        notes = [item.note for item in export.report if item.keras_layer.startswith(p)]
        assert any(note.startswith(kind) and how in note for note in notes), notes
    return check


NATIVE_LSTM = uses("LSTM", "DummyData")
UNROLLED = uses("InnerProduct", "Eltwise", absent=("LSTM", "RNN"))

CASES = [
    # ------------------------------------------------------------ LSTM: Caffe's own layer
    Case("lstm_sequences", SEQUENCE, lstm(return_sequences=True), compared=("rnn",), check=NATIVE_LSTM),
    Case("lstm_last", SEQUENCE, lstm(), compared=("rnn",), check=reported("LSTM", "(native)")),
    Case("lstm_backwards", SEQUENCE, lstm(return_sequences=True, go_backwards=True), compared=("rnn",),
         check=NATIVE_LSTM),
    Case("lstm_backwards_last", SEQUENCE, lstm(go_backwards=True), compared=("rnn",)),
    Case("lstm_state", SEQUENCE, lstm(return_state=True), compared=("rnn",)),
    Case("lstm_sequences_state", SEQUENCE, lstm(return_sequences=True, return_state=True), compared=("rnn",)),
    Case("lstm_no_bias", SEQUENCE, lstm(return_sequences=True, use_bias=False), compared=("rnn",)),
    Case("lstm_features_2d", ((5, 2, 3),),
         layer(lambda p: lambda x: L.LSTM(3, name=p + "rnn")(L.Reshape((5, 6), name=p + "flat")(x))),
         compared=("rnn",)),
    # ------------------------------------------------------------ LSTM: unrolled where Caffe's cannot be exact
    Case("lstm_hard_sigmoid", SEQUENCE, lstm(return_sequences=True, recurrent_activation="hard_sigmoid"),
         compared=("rnn",), check=reported("LSTM", "unrolled over its 6 steps")),
    Case("lstm_relu", SEQUENCE, lstm(activation="relu", go_backwards=True, return_state=True), compared=("rnn",),
         check=UNROLLED),
    # ------------------------------------------------------------ GRU: always unrolled
    Case("gru_reset_after", SEQUENCE, gru(return_sequences=True), compared=("rnn",),
         check=reported("GRU", "Caffe has no GRU layer")),
    Case("gru_reset_before", SEQUENCE, gru(return_sequences=True, reset_after=False), compared=("rnn",)),
    Case("gru_last_backwards", SEQUENCE, gru(go_backwards=True), compared=("rnn",)),
    Case("gru_state", SEQUENCE, gru(return_state=True, reset_after=False), compared=("rnn",)),
    Case("gru_no_bias", SEQUENCE, gru(return_sequences=True, use_bias=False), compared=("rnn",)),
    Case("gru_hard_sigmoid_relu", SEQUENCE,
         gru(return_sequences=True, recurrent_activation="hard_sigmoid", activation="relu"), compared=("rnn",)),
    # ------------------------------------------------------------ SimpleRNN
    Case("rnn_last", SEQUENCE, simple(), compared=("rnn",), check=uses("RNN", "DummyData")),
    Case("rnn_sequences", SEQUENCE, simple(return_sequences=True), compared=("rnn",),
         check=reported("SimpleRNN", "Caffe's RNN outputs tanh(W_ho h + b_o)")),
    Case("rnn_backwards_state", SEQUENCE, simple(go_backwards=True, return_state=True), compared=("rnn",)),
    Case("rnn_relu", SEQUENCE, simple(activation="relu", return_sequences=True), compared=("rnn",),
         check=UNROLLED),
    # ------------------------------------------------------------ Bidirectional
    Case("bi_lstm_concat", SEQUENCE,
         layer(lambda p: L.Bidirectional(L.LSTM(3, return_sequences=True), name=p + "bi")), compared=("bi",)),
    Case("bi_gru_sum_last", SEQUENCE,
         layer(lambda p: L.Bidirectional(L.GRU(3), merge_mode="sum", name=p + "bi")), compared=("bi",)),
    Case("bi_rnn_ave", SEQUENCE,
         layer(lambda p: L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode="ave", name=p + "bi")),
         compared=("bi",)),
    Case("bi_lstm_mul_state", SEQUENCE,
         layer(lambda p: L.Bidirectional(L.LSTM(3, return_state=True), merge_mode="mul", name=p + "bi")),
         compared=("bi",)),
    Case("bi_gru_no_merge", SEQUENCE,
         layer(lambda p: L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode=None, name=p + "bi")),
         compared=("bi",)),
    # ------------------------------------------------------------ TimeDistributed
    Case("td_dense", SEQUENCE, layer(lambda p: L.TimeDistributed(L.Dense(5, activation="tanh"), name=p + "td")),
         compared=("td",)),
    Case("td_conv", ((3, 7, 5, 2),),
         layer(lambda p: L.TimeDistributed(L.Conv2D(3, 3, strides=2, padding="same"), name=p + "td")),
         compared=("td",)),
    # A layer with no handler of its own (a Lambda of keras.ops) under TimeDistributed: traced and inlined.
    Case("td_composite", SEQUENCE,
         layer(lambda p: L.TimeDistributed(L.Lambda(lambda t: keras.ops.relu(t) * 2.0 - t), name=p + "td")),
         compared=("td",)),
    Case("td_pool_then_lstm", ((4, 6, 6, 2),),
         lambda x, p: L.LSTM(3, name=p + "rnn")(L.TimeDistributed(L.Flatten(), name=p + "flat")(
             L.TimeDistributed(L.MaxPooling2D(2), name=p + "td")(x[0]))), compared=("td", "rnn")),
    # ------------------------------------------------------------ Embedding and a text model
    Case("embedding", ((7,),), layer(lambda p: L.Embedding(20, 5, name=p + "embed")), compared=("embed",),
         vocabulary=20, check=uses("Embed")),
    Case("text_model", ((9,),),
         lambda x, p: L.Dense(3, activation="softmax", name=p + "dense")(
             L.GRU(4, name=p + "gru")(L.LSTM(5, return_sequences=True, name=p + "lstm")(
                 L.Embedding(30, 6, name=p + "embed")(x[0])))),
         compared=("embed", "lstm", "gru", "dense"), vocabulary=30),
    # An unused mask changes nothing: Embedding(mask_zero=True) into layers that ignore masks converts.
    Case("embedding_mask_unused", ((7,),),
         layer(lambda p: lambda x: L.Dense(2, name=p + "dense")(L.Embedding(20, 4, mask_zero=True,
                                                                           name=p + "embed")(x))),
         compared=("dense",), vocabulary=20),
    # ------------------------------------------------------------ target opencv: no LSTM there, unrolled
    Case("lstm_opencv", SEQUENCE, lstm(return_sequences=True), compared=("rnn",), target="opencv",
         check=reported("LSTM", "lacks Caffe's LSTM")),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory, "recurrent")


@pytest.mark.parametrize("case", params(CASES))
def test_recurrent(batch, case):
    assert_case(batch, case)


def test_all_cases_convert_as_one_net(batch):
    batch.check_all_batches()


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_a_batch_of_two_goes_time_major_without_permute(tmp_path, cls):
    """Caffe's LSTM reads (T, N, C): with N = 2 the time axis is moved by Slice/Reshape/Concat, not Permute."""
    x = keras.Input((5, 3), batch_size=2, name="x")
    y = getattr(L, cls)(4, return_sequences=True, name="rnn")(x)
    model = keras.Model(x, L.Dense(2, name="dense")(y), name=f"batch2_{cls.lower()}")
    randomize(model)
    export, report = assert_verified(model, tmp_path)
    types = {layer.type for layer in export.net.layer}
    assert "Permute" not in types
    assert report.layers[0].shape[0] == 2


# ---------------------------------------------------------------- refused, with the reason


def test_a_mask_that_changes_results_is_refused():
    x = keras.Input((6,), name="ids", dtype="int32")
    embedded = L.Embedding(10, 4, mask_zero=True, name="embed")(x)
    model = keras.Model(x, [L.LSTM(3, name="lstm")(embedded), L.GlobalAveragePooling1D(name="mean")(embedded)],
                        name="masked")
    with pytest.raises(ConversionError) as caught:
        convert_model(model)
    reason = ("it receives a Keras mask (from Masking or Embedding(mask_zero=True)), which changes what it "
              "computes; Caffe has no masks, so the masked steps would count")
    assert str(caught.value) == (
        "2 Keras layer(s) cannot be expressed exactly for target 'caffe1':\n"
        f"  mean (GlobalAveragePooling1D): {reason}\n"
        f"  lstm (LSTM): {reason}")


def test_masking_is_refused():
    x = keras.Input((6, 3), name="x")
    model = keras.Model(x, L.LSTM(3, name="lstm")(L.Masking(name="masking")(x)), name="masking")
    with pytest.raises(UnsupportedLayerError, match="Masking \\(Caffe has no masks: the masked steps would be "
                                                   "computed\\): 1 layer\\(s\\): 'masking'"):
        convert_model(model)


def test_stateful_and_initial_state_are_refused():
    x = keras.Input((6, 3), batch_size=1, name="x")
    h = keras.Input((3,), batch_size=1, name="h")
    stateful = L.SimpleRNN(3, stateful=True, name="stateful")(x)
    seeded = L.GRU(3, name="seeded")(x, initial_state=h)
    with pytest.raises(ConversionError) as caught:
        convert_model(keras.Model([x, h], [stateful, seeded], name="states"))
    message = str(caught.value)
    assert "stateful (SimpleRNN): a stateful RNN carries its state from one batch to the next" in message
    assert "seeded (GRU): an RNN given initial_state is not converted" in message


def test_the_cli_report_says_which_recurrent_form_was_chosen(tmp_path, capsys):
    from keraffe.cli.main import main

    x = keras.Input((6, 3), name="x")
    y = L.LSTM(4, return_sequences=True, name="lstm")(x)
    y = L.GRU(3, name="gru")(y)
    model = keras.Model(x, y, name="report")
    model.save(tmp_path / "model.keras")
    assert main(["keras2caffe", str(tmp_path / "model.keras"), "-o", str(tmp_path / "net.prototxt")]) == 0
    lines = capsys.readouterr().out.split("layers that did not map one to one:")[1].strip().splitlines()
    lstm = next(line.strip() for line in lines if line.strip().startswith("lstm (LSTM)"))
    gru = next(line.strip() for line in lines if line.strip().startswith("gru (GRU)"))
    assert "Caffe's LSTM (native): gates reordered" in lstm and "DummyData" in lstm
    assert "unrolled over its 6 steps with Caffe 1.0 layers (Caffe has no GRU layer)" in gru
