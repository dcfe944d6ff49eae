"""Composite and subclassed layers convert by inlining; handlers are found by registered name; plug-ins.

A layer without a handler of its own is traced (keraffe.keras_graph) and its
inner layers and ops convert in its place, named under it; one that cannot be
traced is refused with the reason, listed with every other problem. A user's
class called like one of keraffe's layers never reaches keraffe's handler.
"""

from __future__ import annotations

import re

import keras
import pytest

import keraffe
from keraffe.convert.keras_to_caffe import HANDLERS, convert_model, load_handlers, operation_kind, register_keras_layer
from keraffe.errors import KeraffeError, UnsupportedLayerError

from ._harness import assert_verified, randomize

L = keras.layers


@keras.saving.register_keras_serializable(package="keraffe_tests")
class ConvBlock(L.Layer):
    """conv -> batch norm -> relu6, plus the input when the shapes allow: keras_hub's blocks look like this."""

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides = filters, strides
        self.conv = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{self.name}_conv")
        self.norm = L.BatchNormalization(name=f"{self.name}_bn")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.norm.build(self.conv.compute_output_shape(input_shape))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def call(self, x, training=None):
        y = keras.ops.relu6(self.norm(self.conv(x), training=training))
        if self.strides == 1 and x.shape[-1] == self.filters:
            y = y + x
        return y

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


@keras.saving.register_keras_serializable(package="keraffe_tests")
class Stage(L.Layer):
    """A composite of composites: two blocks and a squeeze-excite gate written with keras.ops."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.first = ConvBlock(filters, strides=2, name="first")
        self.second = ConvBlock(filters, name="second")
        self.gate = L.Dense(filters, activation="sigmoid", name="gate")

    def build(self, input_shape):
        self.first.build(input_shape)
        shape = self.first.compute_output_shape(input_shape)
        self.second.build(shape)
        self.gate.build((None, self.filters))

    def compute_output_shape(self, input_shape):
        return self.first.compute_output_shape(input_shape)

    def call(self, x):
        y = self.second(self.first(x))
        weights = self.gate(keras.ops.mean(y, axis=(1, 2)))
        return y * keras.ops.expand_dims(keras.ops.expand_dims(weights, 1), 1)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def staged_model():
    x = keras.Input((11, 9, 3), name="image")
    y = ConvBlock(6, name="stem")(x)
    y = Stage(8, name="stage1")(y)
    return keras.Model(x, L.GlobalAveragePooling2D(name="pool")(y), name="staged")


@pytest.mark.pycaffe
def test_composite_layers_are_inlined_and_match_real_caffe(tmp_path):
    model = staged_model()
    randomize(model)
    export, report = assert_verified(model, tmp_path)
    names = [layer.name for layer in export.net.layer]
    assert "stem_conv" in names  # already named under its block: not prefixed twice
    assert "stage1/first_conv" in names and "stage1/gate" in names
    compared = {r.keras_layer for r in report.layers}
    assert {"stem", "stage1", "pool"} <= compared
    # Inner tensors are no tensors of the model: the map names the composite's call for its output only.
    assert {e.keras_layer for e in export.tensor_map.entries.values()} <= {"image", "stem", "stage1", "pool", None}


@pytest.mark.pycaffe
def test_verify_reads_the_recorded_map_of_an_inlined_model(tmp_path):
    """The map written beside the prototxt names only the model's own layers, so verify of the saved model
    accepts it without converting again."""
    from keraffe.caffe.net import load_net
    from keraffe.verify import tensor_map_for, verify

    model = staged_model()
    randomize(model)
    model.save(tmp_path / "staged.keras")
    export = keraffe.keras_to_caffe(tmp_path / "staged.keras", tmp_path / "net.prototxt")
    reloaded = keras.saving.load_model(tmp_path / "staged.keras")
    net = load_net(export.prototxt, export.caffemodel)
    assert tensor_map_for(reloaded, net).to_json() == export.tensor_map.to_json()
    assert verify(reloaded, net, per_layer=True).ok


@pytest.mark.pycaffe
def test_a_shared_composite_is_inlined_once_per_call(tmp_path):
    block = ConvBlock(3, name="shared")
    x = keras.Input((7, 5, 3), name="x")
    model = keras.Model(x, block(block(x)), name="shared_twice")
    randomize(model)
    export, _ = assert_verified(model, tmp_path)
    convolutions = [layer.name for layer in export.net.layer if layer.type == "Convolution"]
    assert len(convolutions) == 2 and len(set(convolutions)) == 2


class TwiceThrough(keras.Model):
    """A Functional subclass whose call runs its graph twice: walking the graph would convert half of it."""

    def __init__(self):
        x = keras.Input((4,))
        super().__init__(x, L.Dense(4, activation="tanh", name="inner")(x), name="twice_through")

    def call(self, x):
        return super().call(super().call(x))


@pytest.mark.pycaffe
def test_a_functional_subclass_that_overrides_call_is_traced(tmp_path):
    inner = TwiceThrough()
    x = keras.Input((4,), name="x")
    model = keras.Model(x, L.Dense(2, name="head")(inner(x)), name="outer")
    randomize(model)
    export, report = assert_verified(model, tmp_path)
    assert [layer.type for layer in export.net.layer] == ["Input"] + ["InnerProduct", "TanH"] * 2 + ["InnerProduct"]


class ValueBranch(L.Layer):
    def call(self, x):
        return x if float(keras.ops.convert_to_numpy(keras.ops.sum(x))) > 0 else -x

    def compute_output_shape(self, input_shape):
        return input_shape


def test_a_layer_that_cannot_be_traced_is_refused_with_the_others():
    x = keras.Input((4,), name="x")
    model = keras.Model(x, [ValueBranch(name="branch")(x), L.Lambda(keras.ops.erf, name="lam")(x)], name="untraced")
    with pytest.raises(UnsupportedLayerError) as caught:
        convert_model(model)
    message = str(caught.value)
    assert message.startswith("cannot convert 2 Keras layer class(es) to Caffe:\n")
    assert (f"  {__name__}.ValueBranch (no handler, and the call of layer 'branch' (ValueBranch) cannot be traced "
            "into a graph of Keras layers and ops: ") in message
    assert re.search(r"  ops.Erf \(Caffe has no erf\): 1 layer\(s\): 'lam/erf(_\d+)?'", message)


# ---------------------------------------------------------------- handlers by registered name


class LRN(L.Layer):
    """A user's own LRN (unregistered): it doubles its input. keraffe's LRN handler must never take it."""

    def call(self, x):
        return x * 2.0


@keras.saving.register_keras_serializable(package="my_layers")
class Tile(L.Layer):
    def call(self, x):
        return keras.ops.concatenate([x, x], axis=-1)


def test_handlers_are_found_by_registered_name():
    from keraffe.keras_layers import LRN as KeraffeLRN

    handlers = load_handlers()  # the family modules, imported on first use: not yet, when this test runs first
    assert operation_kind(KeraffeLRN(name="k")) == "keraffe>LRN" and "keraffe>LRN" in handlers
    assert operation_kind(LRN(name="u")) == f"{__name__}.LRN" and f"{__name__}.LRN" not in handlers
    assert operation_kind(Tile(name="t")) == "my_layers>Tile" and "my_layers>Tile" not in handlers
    assert operation_kind(L.Dense(2)) == "Dense"


@pytest.mark.pycaffe
def test_a_users_layer_named_like_keraffes_converts_as_itself(tmp_path):
    x = keras.Input((5, 7, 3), name="x")
    model = keras.Model(x, [LRN(name="lrn")(x), Tile(name="tile")(x)], name="lookalikes")
    export, report = assert_verified(model, tmp_path)
    types = [layer.type for layer in export.net.layer]
    assert "LRN" not in types and "Tile" not in types
    assert types.count("Power") == 1 and "Concat" in types


@keras.saving.register_keras_serializable(package="keraffe_tests")
class Rectifier(L.Layer):
    """max(x, 0) written with a TensorFlow function, which the tracer cannot follow: it needs a handler."""

    def call(self, x):
        import tensorflow as tf

        return tf.nn.relu(x)

    def compute_output_shape(self, input_shape):
        return input_shape


@pytest.mark.pycaffe
@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the untraceable layer is written with a TensorFlow function, which only TensorFlow runs")
def test_a_registered_handler_converts_a_layer_that_cannot_be_traced(tmp_path):
    x = keras.Input((6,), name="x")
    model = keras.Model(x, Rectifier(name="rect")(L.Dense(4, name="dense")(x)), name="plugin")
    with pytest.raises(UnsupportedLayerError, match="keraffe_tests>Rectifier \\(no handler, and the call"):
        convert_model(model)

    def rectifier(ctx, layer, call):
        value = ctx.value(call.inputs[0])
        name = ctx.layer_name(layer, call)
        ctx.add("ReLU", name, [value.blob])
        ctx.emit(layer, call, 0, call.outputs[0], name, value.layout, non_negative=True)

    register_keras_layer(Rectifier, rectifier)
    try:
        randomize(model)
        export, _ = assert_verified(model, tmp_path)
        assert [layer.type for layer in export.net.layer] == ["Input", "InnerProduct", "ReLU"]
        with pytest.raises(KeraffeError, match="already registered"):
            keraffe.register_keras_layer("keraffe_tests>Rectifier", rectifier)
        with pytest.raises(KeraffeError, match="already registered"):
            keraffe.register_keras_layer(L.Dense, rectifier)
    finally:
        HANDLERS._handlers.pop("keraffe_tests>Rectifier")
        HANDLERS._families.pop("keraffe_tests>Rectifier")
