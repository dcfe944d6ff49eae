"""keraffe.keras_graph: the one reader of Keras' functional graphs (nested models, shared layers, traced calls)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keraffe import keras_graph
from keraffe.errors import ConversionError, GraphError

L = keras.layers


def nested_model():
    inner_in = keras.Input((4,), name="inner_in")
    inner = keras.Model(inner_in, L.Dense(3, name="inner_dense")(inner_in), name="inner")
    shared = L.Dense(4, name="shared")
    x = keras.Input((4,), name="x")
    a = shared(x)
    b = shared(a)
    out = L.Add(name="sum")([inner(a), inner(b)])
    return keras.Model(x, out, name="outer")


def test_walk_inlines_nested_models_once_per_call():
    events = [(e.kind, e.operation.name) for e in keras_graph.walk(nested_model())]
    assert events == [
        ("call", "shared"), ("call", "shared"),
        ("enter", "inner"), ("call", "inner_dense"), ("leave", "inner"),
        ("enter", "inner"), ("call", "inner_dense"), ("leave", "inner"),
        ("call", "sum"),
    ]


def test_layer_calls_know_which_call_they_are():
    model = nested_model()
    shared_calls = [c for c in keras_graph.calls(model) if c.operation.name == "shared"]
    assert [c.index for c in shared_calls] == [0, 1]
    assert shared_calls[1].inputs[0] is shared_calls[0].outputs[0]
    operation, call_index, output_index = keras_graph.produced_by(shared_calls[1].outputs[0])
    assert (operation.name, call_index, output_index) == ("shared", 1, 0)
    assert keras_graph.output_of(operation, 1, 0) is shared_calls[1].outputs[0]


def test_enter_and_leave_carry_the_inlined_graph():
    model = nested_model()
    enter = next(e for e in keras_graph.walk(model) if e.kind == "enter")
    assert enter.graph.name == "inner" and len(enter.graph.inputs) == len(enter.call.inputs) == 1


def test_operations_by_name_reach_into_nested_models():
    names = set(keras_graph.operations_by_name(nested_model()))
    assert {"shared", "inner", "inner_dense", "sum"} <= names


def test_output_of_a_call_that_never_happened_is_an_error():
    model = nested_model()
    with pytest.raises(GraphError, match="called 2 time"):
        keras_graph.output_of(model.get_layer("shared"), 2, 0)


def test_replay_calls_another_layer_with_the_same_arguments():
    model = nested_model()
    call = next(c for c in keras_graph.calls(model) if c.operation.name == "sum")
    a, b = (np.full((1, 3), v, np.float32) for v in (1.0, 2.0))
    out = call.replay(L.Multiply(), {id(call.inputs[0]): a, id(call.inputs[1]): b})
    np.testing.assert_allclose(np.asarray(out[0]), 2.0)


def test_sequential_graphs_and_their_errors():
    built = keras.Sequential([keras.Input((3,)), L.Dense(2, name="d")], name="seq")
    assert [c.operation.name for c in keras_graph.calls(built)] == ["d"]
    with pytest.raises(GraphError, match="has not been built"):
        keras_graph.functional_of(keras.Sequential([L.Dense(2)], name="open"))

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ConversionError, match="subclassed Keras model"):
        keras_graph.functional_of(Subclassed(name="sub"))


@keras.saving.register_keras_serializable(package="keraffe_tests")
class ResidualBlock(L.Layer):
    """A composite layer: its call uses two inner layers and keras.ops, as keras_hub's blocks do."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = L.Dense(units, activation="relu", name="inner_dense")
        self.scale = L.Rescaling(0.5, name="inner_scale")

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.scale.build(input_shape)

    def call(self, x, training=None):
        return keras.ops.add(x, self.scale(self.dense(x)))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_trace_inlines_a_composite_layer_with_its_own_weights():
    x = keras.Input((4,), name="x")
    block = ResidualBlock(4, name="block")
    model = keras.Model(x, L.Dense(2, name="head")(block(x)), name="m")
    expand = lambda call: isinstance(call.operation, ResidualBlock)  # noqa: E731
    events = [(e.kind, type(e.operation).__name__) for e in keras_graph.walk(model, expand)]
    assert events == [("enter", "ResidualBlock"), ("call", "Dense"), ("call", "Rescaling"), ("call", "Add"),
                      ("leave", "ResidualBlock"), ("call", "Dense")]
    call = next(c for c in keras_graph.calls(model) if c.operation is block)
    traced = keras_graph.trace(call)
    assert traced.get_layer("inner_dense") is block.dense  # the same weights, not a copy
    sample = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(traced(sample)), np.asarray(block(sample)), rtol=1e-6)


class Branching(L.Layer):
    """A call that branches on values: a model holds it (its output shape is declared), no graph can."""

    def call(self, x):
        if float(keras.ops.convert_to_numpy(keras.ops.sum(x))) > 0:
            return x
        return -x

    def compute_output_shape(self, input_shape):
        return input_shape


def test_a_call_that_is_not_a_static_graph_cannot_be_traced():
    x = keras.Input((2,))
    model = keras.Model(x, Branching(name="branching")(x))
    call = next(c for c in keras_graph.calls(model) if c.operation.name == "branching")
    with pytest.raises(GraphError, match="'branching' .* cannot be traced"):
        keras_graph.trace(call)


def test_walk_reports_a_layer_it_cannot_trace_instead_of_failing():
    x = keras.Input((2,))
    model = keras.Model(x, L.Dense(1, name="head")(Branching(name="branching")(x)))
    events = list(keras_graph.walk(model, expand=lambda call: call.operation.name == "branching"))
    assert [(e.kind, e.operation.name) for e in events] == [("call", "branching"), ("call", "head")]
    assert isinstance(events[0].error, GraphError) and "'branching'" in str(events[0].error)
    assert events[1].error is None


def test_a_trace_is_made_once_per_call():
    """Walking twice sees the same inner tensors, and Keras counts the inner layers' calls the same way."""
    x = keras.Input((4,), name="x")
    block = ResidualBlock(4, name="block")
    model = keras.Model(x, block(x), name="m")
    expand = lambda call: isinstance(call.operation, ResidualBlock)  # noqa: E731
    first = [e.call for e in keras_graph.walk(model, expand) if e.kind == "call"]
    nodes = len(block.dense._inbound_nodes)
    second = [e.call for e in keras_graph.walk(model, expand) if e.kind == "call"]
    assert [c.outputs[0] for c in first] == [c.outputs[0] for c in second]
    assert len(block.dense._inbound_nodes) == nodes
    assert {e.traced for e in keras_graph.walk(model, expand) if e.kind != "call"} == {True}


class TwiceAndOne(keras.Model):
    """A Functional subclass whose call is not its graph."""

    def __init__(self):
        x = keras.Input((3,))
        super().__init__(x, L.Dense(3, name="inner")(x), name="twice_and_one")

    def call(self, x):
        return super().call(x) * 2.0 + 1.0


def test_a_functional_subclass_with_its_own_call_is_traced_not_walked_as_its_graph():
    inner = TwiceAndOne()
    x = keras.Input((3,), name="x")
    model = keras.Model(x, inner(x), name="outer")
    assert [e.kind for e in keras_graph.walk(model)] == ["call"]  # opaque unless expand asks for it
    expand_the_subclass = lambda call: call.operation is inner  # noqa: E731
    kinds = [type(e.operation).__name__ for e in keras_graph.walk(model, expand_the_subclass) if e.kind == "call"]
    assert "Dense" in kinds and "Multiply" in kinds and "Add" in kinds
    assert keras_graph.runs_its_graph(keras.Sequential([keras.Input((2,)), L.Dense(1)]))
    assert not keras_graph.runs_its_graph(inner)


class AffineWeights(L.Layer):
    """``weight * x``: a Keras Variable on the left of a symbolic tensor (keras_hub's HGNetV2 writes this)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(1,), initializer="ones", name="scale")
        self.shift = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="shift")

    def call(self, x):
        return self.scale * x + self.shift


def test_a_variable_times_a_symbolic_tensor_is_traced_as_keras_ops():
    x = keras.Input((3,), name="x")
    layer = AffineWeights(name="affine")
    model = keras.Model(x, layer(x))
    layer.scale.assign(np.array([2.0], np.float32))
    call = next(c for c in keras_graph.calls(model) if c.operation is layer)
    traced = keras_graph.trace(call)
    assert [type(op).__name__ for op in traced.operations[1:]] == ["Multiply", "Add"]
    sample = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(np.asarray(traced(sample)), 2.0)
    assert float(np.asarray(layer.scale * 3.0)[0]) == 6.0  # the Variable's own arithmetic is back after tracing


def test_a_detached_call_is_a_layer_applied_outside_any_graph():
    dense = L.Dense(5, name="d")
    dense.build((None, 3))
    call = keras_graph.detached_call(dense, [(12, 3)])
    assert tuple(call.inputs[0].shape) == (12, 3) and tuple(call.outputs[0].shape) == (12, 5)
    assert call.arguments() == ((call.inputs[0],), {}) and call.mask() is None
    assert dense._inbound_nodes == []
