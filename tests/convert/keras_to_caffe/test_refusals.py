"""What keraffe refuses, and the exact words it uses: one error that lists every layer it cannot convert exactly.

Layer classes without a Caffe form (Lambda, LSTM) and layers whose settings
Caffe cannot compute exactly (erf GELU, a target without the layer type it
needs) are collected over the whole model, nested models included, and
reported together; nothing is approximated and no files are written. Layers are
listed in the order the converter visits them (deepest first; Keras keeps the
layers of one depth newest first).
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

import keraffe
from keraffe.convert.keras_to_caffe import convert_model
from keraffe.errors import ConversionError, KeraffeError, UnsupportedLayerError

L = keras.layers

NO_EXACT_FORM = ("has no exact Caffe form (Caffe has no erf, no arbitrary elementwise code); keraffe refuses to "
                 "approximate it")


def message_of(model, target="caffe1", error=KeraffeError) -> str:
    with pytest.raises(error) as caught:
        convert_model(model, target)
    return str(caught.value)


def numpy_code(name):
    """A Lambda running NumPy on its input: arbitrary Python, not a graph of keras.ops (it cannot be traced)."""
    return L.Lambda(lambda t: np.sin(t), output_shape=lambda shape: shape, name=name)


def test_layer_classes_without_caffe_form_are_listed_together():
    x = keras.Input((4, 6), name="x")
    a = numpy_code("lam_a")(x)
    b = numpy_code("lam_b")(x)
    c = L.Masking(name="masking")(x)
    d = L.Lambda(keras.ops.erf, name="lam_erf")(x)  # traced: its call is one op, which Caffe lacks
    model = keras.Model(x, [a, b, c, d], name="classes")
    # Keras numbers the ops it names itself (erf, erf_1, ...) across the process.
    message = re.sub(r"'lam_erf/erf_\d+'", "'lam_erf/erf'", message_of(model, error=UnsupportedLayerError))
    assert message == (
        "cannot convert 3 Keras layer class(es) to Caffe:\n"
        "  Lambda (arbitrary Python code, not a graph of keras.ops): 2 layer(s): 'lam_b', 'lam_a'\n"
        "  Masking (Caffe has no masks: the masked steps would be computed): 1 layer(s): 'masking'\n"
        "  ops.Erf (Caffe has no erf): 1 layer(s): 'lam_erf/erf'")


def test_a_lambda_of_keras_ops_converts_by_inlining():
    x = keras.Input((4, 6), name="x")
    model = keras.Model(x, L.Lambda(lambda t: keras.ops.relu(t * 2.0 + 1.0), name="lam")(x), name="lam_ok")
    export = convert_model(model)
    assert [layer.type for layer in export.net.layer] == ["Input", "Power", "Power", "ReLU"]


def test_many_layers_of_one_class_are_counted_and_the_first_five_named():
    x = keras.Input((4, 6), name="x")
    outs = [numpy_code(f"lam{i}")(x) for i in range(7)]
    model = keras.Model(x, outs, name="many")
    assert message_of(model, error=UnsupportedLayerError) == (
        "cannot convert 1 Keras layer class(es) to Caffe:\n"
        "  Lambda (arbitrary Python code, not a graph of keras.ops): 7 layer(s): 'lam6', 'lam5', 'lam4', 'lam3', "
        "'lam2' ...")


def test_inexact_activations_are_listed_together():
    x = keras.Input((5, 7, 3), name="x")
    gelu = L.Activation("gelu", name="act_gelu")(x)
    dense = L.Dense(4, activation="gelu", name="dense_gelu")(x)
    conv = L.Conv2D(2, 3, activation="celu", name="conv_celu")(x)
    fine = L.Activation("relu", name="fine")(x)
    after = L.ReLU(name="after_gelu")(gelu)  # fed by a refused layer: skipped, not reported again
    model = keras.Model(x, [after, dense, conv, fine], name="inexact")
    assert message_of(model, error=ConversionError) == (
        "3 Keras layer(s) cannot be expressed exactly for target 'caffe1':\n"
        f"  act_gelu (Activation): activation 'gelu' {NO_EXACT_FORM}\n"
        f"  conv_celu (Conv2D): activation 'celu' {NO_EXACT_FORM}\n"
        f"  dense_gelu (Dense): activation 'gelu' {NO_EXACT_FORM}")


@pytest.mark.parametrize("name", ["gelu", "celu", "glu", "log_softmax", "sparsemax", "squareplus", "soft_shrink"])
def test_each_inexact_activation_is_refused(name):
    x = keras.Input((6,), name="x")
    model = keras.Model(x, L.Activation(name, name="act")(x), name=name)
    assert message_of(model, error=ConversionError) == (
        "1 Keras layer(s) cannot be expressed exactly for target 'caffe1':\n"
        f"  act (Activation): activation '{name}' {NO_EXACT_FORM}")


@pytest.mark.backends
def test_unsupported_classes_and_inexact_layers_in_one_error():
    """A model with a Lambda and an erf GELU: one error names both, so nothing is found one fix at a time."""
    x = keras.Input((6,), name="x")
    lam = numpy_code("lam")(x)
    gelu = L.Dense(3, activation="gelu", name="dense_gelu")(x)
    model = keras.Model(x, [lam, gelu], name="both")
    message = message_of(model)
    assert message == (
        "cannot convert 1 Keras layer class(es) to Caffe:\n"
        "  Lambda (arbitrary Python code, not a graph of keras.ops): 1 layer(s): 'lam'\n"
        "1 Keras layer(s) cannot be expressed exactly for target 'caffe1':\n"
        f"  dense_gelu (Dense): activation 'gelu' {NO_EXACT_FORM}")


def test_inexact_layer_inside_a_nested_model_is_listed():
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, L.Dense(3, activation="gelu", name="inner_gelu")(inner_in), name="inner")
    x = keras.Input((6,), name="x")
    model = keras.Model(x, [L.Dense(2, name="head")(inner(x)), L.Activation("celu", name="outer_celu")(x)],
                        name="nested_inexact")
    assert message_of(model, error=ConversionError) == (
        "2 Keras layer(s) cannot be expressed exactly for target 'caffe1':\n"
        f"  inner_gelu (Dense): activation 'gelu' {NO_EXACT_FORM}\n"
        f"  outer_celu (Activation): activation 'celu' {NO_EXACT_FORM}")


def test_target_without_a_needed_layer_type():
    x = keras.Input((5, 7, 3), name="x")
    b = keras.Input((1, 1, 3), name="b")
    thresholded = L.ReLU(threshold=0.5, name="thresholded")(x)
    bias = L.Add(name="bias_add")([x, b])
    model = keras.Model([x, b], [thresholded, bias], name="needs_types")
    assert message_of(model, "opencv", ConversionError) == (
        "2 Keras layer(s) cannot be expressed exactly for target 'opencv':\n"
        "  bias_add (Add): a Bias layer is needed for 'bias_add', and target 'opencv' has no Bias (targets 'caffe1', "
        "'caffe', 'nnie', 'ascend' have it)\n"
        "  thresholded (ReLU): a Threshold layer is needed for 'thresholded/above', and target 'opencv' has no "
        "Threshold (targets 'caffe1', 'caffe', 'nnie', 'ascend' have it)")
    convert_model(model, "caffe1")  # Caffe 1.0 has both


def test_caffe1_transposes_without_permute(tmp_path):
    """Adding a channels-last Flatten to a Dense output needs Caffe's (C, H, W) order moved: Caffe 1.0 has no
    Permute, so the channel axis is cut into its slices, each reshaped, and concatenated at the end."""
    from ._harness import assert_verified, randomize

    x = keras.Input((2, 3, 2), name="x")
    v = keras.Input((6,), name="v")
    merged = L.Add(name="merge")([L.Flatten(name="flat")(x), L.Dense(12, name="dense")(v)])
    model = keras.Model([x, v], merged, name="transpose")
    randomize(model)
    export, _ = assert_verified(model, tmp_path)
    types = [layer.type for layer in export.net.layer]
    assert "Permute" not in types and {"Slice", "Concat"} <= set(types)
    assert any("a transpose without Permute" in item.note for item in export.report)


def test_caffe1_refuses_a_transpose_of_a_long_axis():
    x = keras.Input((2, 3, 300), name="x")
    v = keras.Input((6,), name="v")
    merged = L.Add(name="merge")([L.Flatten(name="flat")(x), L.Dense(1800, name="dense")(v)])
    model = keras.Model([x, v], merged, name="transpose")
    assert message_of(model, "caffe1", ConversionError) == (
        "1 Keras layer(s) cannot be expressed exactly for target 'caffe1':\n"
        "  merge (Add): 'merge' needs its values in Keras' memory order, which takes a transpose (a Permute layer); "
        "target 'caffe1' has none, and doing without it would cut an axis into more than 256 slices. Target "
        "'opencv' has Permute; or keep channels-last Flatten/Reshape directly before a Dense layer, which converts "
        "without a transpose")
    convert_model(model, "opencv")


def test_nothing_is_written_when_refused(tmp_path):
    x = keras.Input((6,), name="x")
    model = keras.Model(x, L.Activation("gelu", name="act")(x), name="refused")
    with pytest.raises(ConversionError):
        keraffe.keras_to_caffe(model, tmp_path / "net.prototxt")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- models keraffe cannot read as a graph


def test_open_input_size_needs_input_shape(tmp_path):
    x = keras.Input((None, None, 3), name="image")
    model = keras.Model(x, L.Conv2D(2, 3, name="conv")(x), name="open_size")
    with pytest.raises(ConversionError) as caught:
        convert_model(model)
    assert str(caught.value) == (
        "input 'image' has shape (None, None, None, 3) with unknown sizes; Caffe nets have fixed shapes: give the "
        "model a fixed input shape (or pass --input-shape)")
    export = keraffe.keras_to_caffe(model, tmp_path / "net.prototxt", input_shape=(2, 3, 9, 11))
    shape = [layer for layer in export.net.layer if layer.type == "Input"][0].input_param.shape[0]
    assert list(shape.dim) == [2, 3, 9, 11]


def test_subclassed_model_is_refused():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(keras.ops.zeros((1, 3)))
    with pytest.raises(ConversionError, match="'subclassed' is a subclassed Keras model; only functional and "
                                              "Sequential models have a graph keraffe can read"):
        convert_model(model)


def test_unbuilt_sequential_is_refused():
    model = keras.Sequential([L.Dense(2)], name="unbuilt")
    with pytest.raises(ConversionError, match="the Sequential model 'unbuilt' has not been built; give it an Input "
                                              "or call build\\(\\) first"):
        convert_model(model)
