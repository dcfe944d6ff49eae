"""Model graphs against real Caffe: nested models, shared layers, multiple inputs and outputs.

Nested models are inlined (their layers keep their names); a shared layer
becomes one Caffe layer per call, the later calls suffixed _1, _2, ... and
carrying the same weights. keraffe.verify reads Keras tensors from the outer
graph (a nested model's output blob is mapped to the nested model's call), so
models with nested models are judged by it and, independently, on their
outputs by position (``outer_rows``).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ._harness import assert_outer_rows_ok, assert_verified, convert_files, layer_named, randomize

pytestmark = pytest.mark.pycaffe

L = keras.layers


def inner_block(name="block", channels=3):
    x = keras.Input((7, 5, channels))
    y = L.Conv2D(4, 3, padding="same", activation="relu", name=f"{name}_conv")(x)
    y = L.BatchNormalization(name=f"{name}_bn")(y)
    return keras.Model(x, y, name=name)


def test_nested_functional_and_sequential(tmp_path):
    """A functional block and a Sequential head inside a functional model, the head's output the model's."""
    block = inner_block()
    head = keras.Sequential([keras.Input((7, 5, 4)), L.MaxPooling2D(2, name="head_pool"), L.Flatten(name="head_flat"),
                             L.Dense(3, name="head_dense")], name="head")
    x = keras.Input((7, 5, 3), name="image")
    y = L.Conv2D(3, 1, name="stem")(x)
    model = keras.Model(x, head(block(y)), name="nested")
    randomize(model)
    export, net = convert_files(model, tmp_path)
    names = [layer.name for layer in export.net.layer]
    for name in ("stem", "block_conv", "head_pool", "head_dense"):
        assert name in names, names
    assert_outer_rows_ok(model, export, net)
    _, report = assert_verified(model, tmp_path / "verify")
    assert {"stem", "head"} <= {r.keras_layer for r in report.layers}


def test_nested_model_called_twice(tmp_path):
    """One nested model applied to two inputs: two copies of its layers, the same weights, both outputs right."""
    block = inner_block()
    a = keras.Input((7, 5, 3), name="a")
    b = keras.Input((7, 5, 3), name="b")
    merged = L.Add(name="sum")([block(a), block(b)])
    model = keras.Model([a, b], [merged, L.GlobalAveragePooling2D(name="gap")(merged)], name="twice")
    randomize(model)
    export, net = convert_files(model, tmp_path)
    convs = [layer for layer in export.net.layer if layer.type == "Convolution"]
    assert len(convs) == 2, [layer.name for layer in convs]
    first, second = (export.weights[layer.name] for layer in convs)
    for u, v in zip(first, second):
        np.testing.assert_array_equal(u, v)
    assert_outer_rows_ok(model, export, net)
    _, report = assert_verified(model, tmp_path / "verify")
    assert {"sum", "gap", "block"} <= {r.keras_layer for r in report.layers}
    assert sorted(entry.keras_node for entry in export.tensor_map.entries.values() if entry.keras_layer == "block") \
        == [0, 1]


def test_doubly_nested(tmp_path):
    """A functional model inside a Sequential inside a functional model."""
    block = inner_block("deep")
    middle = keras.Sequential([keras.Input((7, 5, 3)), block, L.Conv2D(2, 1, name="mid_conv")], name="middle")
    x = keras.Input((7, 5, 3), name="image")
    model = keras.Model(x, L.Flatten(name="flat")(middle(x)), name="doubly")
    randomize(model)
    export, net = convert_files(model, tmp_path)
    assert {"deep_conv", "mid_conv", "flat"} <= {layer.name for layer in export.net.layer}
    assert_outer_rows_ok(model, export, net)
    _, report = assert_verified(model, tmp_path / "verify")
    assert {"middle", "flat"} <= {r.keras_layer for r in report.layers}


def test_verify_reads_nested_models(tmp_path):
    """A nested model's output as the model's output: its Caffe blob is mapped to the nested model's call."""
    block = inner_block()
    x = keras.Input((7, 5, 3), name="image")
    model = keras.Model(x, block(x), name="nested_output")
    randomize(model)
    export, report = assert_verified(model, tmp_path)
    output = export.tensor_map[export.tensor_map.outputs[0]]
    assert (output.keras_layer, output.keras_node, output.keras_output) == ("block", 0, 0)
    assert [r.keras_layer for r in report.outputs] == ["block"]


def test_verify_reads_sequential_models(tmp_path):
    from keraffe.verify import verify

    model = keras.Sequential([keras.Input((6, 5, 3)), L.Conv2D(2, 3, name="c"), L.Flatten(name="f"),
                              L.Dense(3, name="d")], name="plain_sequential")
    randomize(model)
    export, net = convert_files(model, tmp_path)
    report = verify(model, net, per_layer=True, tensor_map=export.tensor_map)
    assert report.ok and report.layers


@pytest.mark.backends
def test_sequential_model(tmp_path):
    """A Sequential model converts and matches per layer."""
    model = keras.Sequential([keras.Input((9, 11, 3)), L.Conv2D(4, 3, strides=2, padding="same", name="c"),
                              L.BatchNormalization(name="bn"), L.ReLU(name="r"), L.MaxPooling2D(2, name="p"),
                              L.Flatten(name="f"), L.Dense(3, activation="softmax", name="d")], name="sequential")
    randomize(model)
    _, report = assert_verified(model, tmp_path)
    assert {"c", "bn", "r", "p", "d"} <= {r.keras_layer for r in report.layers}


def test_shared_layers(tmp_path):
    """A Conv2D called on two inputs, and a Dense applied to its own output: one Caffe layer per call."""
    conv = L.Conv2D(3, 3, padding="same", name="shared_conv")
    dense = L.Dense(4, activation="tanh", name="shared_dense")
    a = keras.Input((6, 5, 3), name="a")
    b = keras.Input((6, 5, 3), name="b")
    v = keras.Input((4,), name="v")
    merged = L.Concatenate(name="cat")([conv(a), conv(b)])
    model = keras.Model([a, b, v], [merged, dense(dense(v))], name="shared")
    randomize(model)
    export, report = assert_verified(model, tmp_path)
    names = [layer.name for layer in export.net.layer]
    assert {"shared_conv", "shared_conv_1", "shared_dense", "shared_dense_1"} <= set(names), names
    for u, v in zip(export.weights["shared_conv"], export.weights["shared_conv_1"]):
        np.testing.assert_array_equal(u, v)
    compared = {r.caffe_tensor for r in report.layers}
    assert {"shared_conv", "shared_conv_1", "cat"} <= compared, compared
    assert any(t.startswith("shared_dense_1") for t in compared), compared


def test_multiple_inputs_and_outputs(tmp_path):
    """Three inputs of different ranks, three outputs (one of them also read inside the graph), in model order."""
    image = keras.Input((9, 11, 3), name="image")
    vector = keras.Input((5,), name="vector")
    sequence = keras.Input((4, 6), name="sequence")
    features = L.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="features")(image)
    pooled = L.GlobalMaxPooling2D(name="pooled")(features)
    joined = L.Concatenate(name="joined")([pooled, L.Dense(3, name="vec_dense")(vector)])
    seq_out = L.Dense(2, name="seq_dense")(sequence)
    model = keras.Model([image, vector, sequence], [L.Dense(2, name="logits")(joined), features, seq_out],
                        name="multi")
    randomize(model)
    export, report = assert_verified(model, tmp_path)
    assert export.tensor_map.inputs == ["image", "vector", "sequence"]
    assert [export.tensor_map[o].keras_layer for o in export.tensor_map.outputs] == [
        "logits", "features", "seq_dense"]
    assert {r.keras_layer for r in report.outputs} == {"logits", "features", "seq_dense"}
    assert len([layer for layer in export.net.layer if layer.type == "Input"]) == 3


def test_output_that_is_also_an_input_of_another_output(tmp_path):
    x = keras.Input((6,), name="x")
    hidden = L.Dense(4, activation="relu", name="hidden")(x)
    model = keras.Model(x, [hidden, L.Dense(2, name="out")(hidden)], name="two_outputs")
    randomize(model)
    export, report = assert_verified(model, tmp_path)
    assert {r.keras_layer for r in report.outputs} == {"hidden", "out"}
    assert [export.tensor_map[o].keras_layer for o in export.tensor_map.outputs] == ["hidden", "out"]
    # 'out' reads 'hidden'; the output is a copy of it, so that it is a Caffe output (a blob no layer reads).
    assert layer_named(export, "out").bottom[0] == "hidden"
    copy = next(layer for layer in export.net.layer if export.tensor_map.outputs[0] in layer.top)
    assert (copy.type, list(copy.bottom)) == ("Split", ["hidden"])
    assert sorted(_net_outputs(export)) == sorted(export.tensor_map.outputs)


def _net_outputs(export) -> list[str]:
    """The blobs of the net that no layer reads (what Caffe calls its outputs), in the order they are made."""
    read = {bottom for layer in export.net.layer for bottom in layer.bottom}
    tops = [top for layer in export.net.layer for top in layer.top if layer.type != "Input"]
    return [top for top in dict.fromkeys(tops) if top not in read]


@pytest.mark.parametrize("identity", ["linear_activation", "identity_layer", "same_tensor_twice"])
def test_every_keras_output_is_a_caffe_output_of_its_own(tmp_path, identity):
    """An output that is the model's input (an identity layer) or that another output already holds gets a
    blob of its own: the Caffe net has as many outputs as the model."""
    x = keras.Input((6,), name="x")
    dense = L.Dense(3, name="dense")(x)
    if identity == "linear_activation":
        outputs = [L.Activation("linear", name="same")(x), dense]
    elif identity == "identity_layer":
        outputs = [L.Identity(name="same")(x), dense]
    else:
        outputs = [dense, dense]
    model = keras.Model(x, outputs, name=identity)
    randomize(model)
    export, report = assert_verified(model, tmp_path)
    assert len(export.tensor_map.outputs) == len(set(export.tensor_map.outputs)) == 2
    assert sorted(_net_outputs(export)) == sorted(export.tensor_map.outputs)
    assert len(report.outputs) == 2


def test_input_shape_keeps_the_map_on_the_callers_model(tmp_path):
    """keras_to_caffe(input_shape=...) converts the model called on a new input; the tensor map still names the
    caller's layers (and its own nested model), so verify works with the model the caller has."""
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.verify import verify

    from ._harness import assert_report_ok

    block = inner_block()
    x = keras.Input((None, None, 3), name="image")
    model = keras.Model(x, L.Conv2D(2, 1, name="head")(block(x)), name="open_size_nested")
    randomize(model)
    export = keraffe.keras_to_caffe(model, tmp_path / "net.prototxt", input_shape=(2, 3, 7, 5))
    assert export.tensor_map[export.tensor_map.outputs[0]].keras_layer == "head"
    assert "block" in {entry.keras_layer for entry in export.tensor_map.entries.values()}
    report = verify(model, load_net(export.prototxt, export.caffemodel), per_layer=True,
                    tensor_map=export.tensor_map)
    assert_report_ok(report, "input_shape with a nested model")
    assert {"block", "head"} <= {r.keras_layer for r in report.layers}
