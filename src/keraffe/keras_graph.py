"""Reading a Keras 3 model's graph: the one module of keraffe that touches Keras' private attributes.

Keras 3 exposes layers, inputs and outputs publicly, but not the graph that
connects them: the nodes of a functional model (``_nodes_by_depth``), which
call of a layer a node is (``_inbound_nodes``), which layer produced a tensor
(``_keras_history``), the arguments each call received, the graph inside a
Sequential (``_functional``). The converter, verify and structured pruning all
need that graph, and Keras may rename any of it in a release. So everything
that reads it lives here, behind a small public API, and a test
(tests/test_architecture.py) holds every other module to it.

The graph is read as a stream of :class:`GraphEvent` (see :func:`walk`):
``"call"`` for one call of one operation (a layer, or a raw ``keras.ops`` call
recorded in a functional model), and ``"enter"``/``"leave"`` around the calls
of an inlined graph: a nested Functional or Sequential model, or a composite
layer whose own ``call`` was traced into a graph (:func:`trace`). A
:class:`LayerCall` carries the call's operation, its tensor inputs and outputs
and which call of the operation it is; its Keras node stays private.

Composite layers (keras_hub's blocks, a user's subclassed layer, a Functional
subclass that overrides ``call``) are inlined by tracing: their ``call`` runs
once on symbolic inputs, every inner layer and op records a node, and the
result is walked like a nested model. Which layers to trace is the caller's
choice (``expand``); a layer that cannot be traced stays a single "call"
event carrying the reason (:attr:`GraphEvent.error`). Traces are cached per
call, so walking a model twice sees the same inner tensors and Keras counts
the inner layers' calls the same way each time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from typing import Callable, Iterator

from keraffe.errors import GraphError


@dataclasses.dataclass(frozen=True, eq=False)
class LayerCall:
    """One call of one Keras operation in a graph: what went in, what came out, which call it was."""

    operation: object
    #: The tensor inputs, flattened in call-argument order.
    inputs: tuple
    #: The outputs, flattened.
    outputs: tuple
    #: Which call of ``operation`` this is (0 for its first), as Keras counts them.
    index: int
    _node: object = dataclasses.field(repr=False)

    def arguments(self) -> tuple[tuple, dict]:
        """The call's positional and keyword arguments, tensors and constants as the layer received them."""
        if self._node is None:  # a detached call (see detached_call): its tensors are its only arguments
            return tuple(self.inputs), {}
        arguments = self._node.arguments
        return tuple(arguments.args), dict(arguments.kwargs)

    def mask(self):
        """The mask tensor Keras passed to this call (from Masking or Embedding(mask_zero=True)), or None."""
        return self.arguments()[1].get("mask")

    def replay(self, operation, tensors: dict) -> list:
        """Call ``operation`` with this call's arguments, each tensor replaced by ``tensors[id(tensor)]``.

        Returns the flattened outputs. This is how a graph is run again with
        other tensors (a rebuilt model, constants propagated through a layer).
        """
        import keras

        args, kwargs = self._node.arguments.fill_in(tensors)
        return keras.tree.flatten(operation(*args, **kwargs))


@dataclasses.dataclass(frozen=True, eq=False)
class GraphEvent:
    """A step of :func:`walk`: ``kind`` is "call", "enter" or "leave".

    For "enter" and "leave", ``graph`` is the inlined graph (a Functional
    model, or a composite layer's traced call) whose inputs receive
    ``call.inputs`` and whose outputs become ``call.outputs``.
    """

    kind: str
    call: LayerCall
    graph: object = None
    #: For "enter"/"leave": the graph is the layer's traced ``call``, not a nested model's own graph.
    traced: bool = False
    #: For "call": why the layer could not be traced although ``expand`` asked for it.
    error: GraphError | None = None

    @property
    def operation(self):
        return self.call.operation


def is_model(operation) -> bool:
    """A Functional or Sequential model (a graph of its own), not a plain layer."""
    import keras
    from keras.src.models.functional import Functional

    return isinstance(operation, (Functional, keras.Sequential))


def runs_its_graph(operation) -> bool:
    """A model whose call runs its functional graph: not a Functional subclass with a ``call`` of its own."""
    import keras
    from keras.src.models.functional import Functional

    if isinstance(operation, keras.Sequential):
        return True
    return is_model(operation) and type(operation).call is Functional.call


def functional_of(model):
    """The functional graph of a Functional or built Sequential model; an error for anything else."""
    import keras

    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise GraphError(
                f"the Sequential model '{model.name}' has not been built; give it an Input or call build() first"
            )
        return functional
    if not hasattr(model, "_nodes_by_depth"):
        raise GraphError(
            f"'{model.name}' is a subclassed Keras model; only functional and Sequential models have a graph "
            "keraffe can read"
        )
    return model


def _call_of(node) -> LayerCall:
    operation = node.operation
    inbound = operation._inbound_nodes
    index = inbound.index(node) if node in inbound else 0
    return LayerCall(operation, tuple(node.input_tensors), tuple(node.outputs), index, node)


def calls(model) -> Iterator[LayerCall]:
    """Every call of the model's own graph in execution order; nested models are single calls here."""
    graph = functional_of(model)
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.operation and not node.is_input:
                yield _call_of(node)


def walk(model, expand: Callable[[LayerCall], bool] | None = None) -> Iterator[GraphEvent]:
    """Every layer call in execution order, nested models inlined (a shared one once per call).

    ``expand(call)``, when given, picks the other layers whose own ``call`` is
    traced (:func:`trace`) and inlined too: composite layers built from other
    layers and ops, such as keras_hub's blocks. A Functional subclass that
    overrides ``call`` is a composite layer too (its graph may not be what it
    runs). A layer that cannot be traced is yielded as a "call" event whose
    ``error`` says why.
    """
    for call in calls(model):
        operation = call.operation
        traced = False
        if runs_its_graph(operation):
            graph = functional_of(operation)
        elif expand is not None and expand(call):
            try:
                graph = trace(call)
            except GraphError as error:
                yield GraphEvent("call", call, error=error)
                continue
            traced = True
        else:
            yield GraphEvent("call", call)
            continue
        yield GraphEvent("enter", call, graph, traced)
        yield from walk(graph, expand)
        yield GraphEvent("leave", call, graph, traced)


#: Traced graphs by the Keras node of the call they trace (a node lives as long as its model's graph).
_TRACES: "weakref.WeakKeyDictionary[object, object]" = weakref.WeakKeyDictionary()


def trace(call: LayerCall):
    """A composite layer's ``call`` as a graph of the layers and ops it uses: a Functional model.

    The layer's ``call`` runs on fresh symbolic inputs shaped like the call's
    own, so every inner layer and ``keras.ops`` call records a node; the inner
    layers keep their weights. A layer whose ``call`` cannot run symbolically
    (Python branching on values, say) cannot be traced: a :class:`GraphError`.
    The trace of one call is made once and reused.
    """
    if call._node is not None and call._node in _TRACES:
        return _TRACES[call._node]
    graph = _trace(call)
    if call._node is not None:
        _TRACES[call._node] = graph
    return graph


def _trace(call: LayerCall):
    import keras

    layer = call.operation
    fresh = {id(t): keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=f"{layer.name}_in{i}")
             for i, t in enumerate(call.inputs)}
    if call._node is None:
        args, kwargs = [fresh[id(t)] for t in call.inputs], {}
    else:
        args, kwargs = call._node.arguments.fill_in(fresh)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("training", "mask")}
    try:
        with _symbolic_variable_arithmetic():
            outputs = layer.call(*args, **kwargs)
        inputs = [fresh[id(t)] for t in call.inputs]
        flat = keras.tree.flatten(outputs)
        if not flat or not all(isinstance(t, keras.KerasTensor) for t in flat):
            raise TypeError("its outputs are not all symbolic tensors computed from its inputs")
        graph = keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs, name=layer.name)
    except Exception as error:  # noqa: BLE001 - any failure means the call is not a static graph
        raise GraphError(f"the call of layer '{layer.name}' ({type(layer).__name__}) cannot be traced into a "
                         f"graph of Keras layers and ops: {type(error).__name__}: {error}") from None
    return graph


#: A Keras Variable's arithmetic operators and the keras.ops function each computes (False: operands swapped).
_VARIABLE_OPERATORS = {
    "__add__": ("add", False), "__radd__": ("add", True), "__sub__": ("subtract", False),
    "__rsub__": ("subtract", True), "__mul__": ("multiply", False), "__rmul__": ("multiply", True),
    "__truediv__": ("divide", False), "__rtruediv__": ("divide", True), "__pow__": ("power", False),
    "__rpow__": ("power", True), "__matmul__": ("matmul", False), "__rmatmul__": ("matmul", True),
}


@contextlib.contextmanager
def _symbolic_variable_arithmetic():
    """While tracing, ``weight * x`` on a symbolic ``x`` records a keras.ops node, as ``x * weight`` does.

    A Keras Variable's operators call the backend directly, which refuses a
    symbolic tensor (keras_hub's HGNetV2 writes ``self.scale * x``); the
    tensor's own operators record an op. For the trace only, a Variable
    meeting a symbolic tensor goes through keras.ops instead.
    """
    import keras
    from keras.src.backend.common.variables import Variable

    saved = {name: Variable.__dict__[name] for name in _VARIABLE_OPERATORS if name in Variable.__dict__}

    def symbolic(name, original):
        function, swapped = _VARIABLE_OPERATORS[name]

        def operator(self, other):
            if isinstance(other, keras.KerasTensor):
                op = getattr(keras.ops, function)
                return op(other, self) if swapped else op(self, other)
            return original(self, other)
        return operator

    try:
        for name, original in saved.items():
            setattr(Variable, name, symbolic(name, original))
        yield
    finally:
        for name, original in saved.items():
            setattr(Variable, name, original)


def detached_call(operation, input_shapes, dtype: str = "float32") -> LayerCall:
    """A call of ``operation`` on symbolic inputs of the given shapes that no graph holds.

    For a layer applied in a way its own graph does not record (the layer
    inside TimeDistributed, over time steps folded into the batch): its
    outputs come from the layer's ``compute_output_spec``, and the layer
    records no node.
    """
    import keras

    inputs = tuple(keras.KerasTensor(tuple(shape), dtype=dtype) for shape in input_shapes)
    outputs = operation.compute_output_spec(*inputs)
    return LayerCall(operation, inputs, tuple(keras.tree.flatten(outputs)), 0, None)


def produced_by(tensor) -> tuple[object, int, int]:
    """(operation, call index, output index) of the call that produced a Keras tensor."""
    history = tensor._keras_history
    return history.operation, history.node_index, history.tensor_index


def first_call(operation) -> LayerCall:
    """The first call of an operation (an InputLayer's only one)."""
    return _call_of(operation._inbound_nodes[0])


def operations_by_name(model) -> dict:
    """Every operation of a functional model by name, raw keras.ops calls and nested models' layers included."""
    found = {}
    for operation in getattr(model, "operations", model.layers):
        found.setdefault(operation.name, operation)
        if hasattr(operation, "operations") and operation is not model:
            for name, inner in operations_by_name(operation).items():
                found.setdefault(name, inner)
    return found


def output_of(operation, call_index: int, output_index: int):
    """The Keras tensor that call ``call_index`` of ``operation`` produced as output ``output_index``."""
    nodes = operation._inbound_nodes
    if call_index >= len(nodes):
        raise GraphError(f"layer '{operation.name}' was called {len(nodes)} time(s), not {call_index + 1}")
    outputs = nodes[call_index].output_tensors
    if output_index >= len(outputs):
        raise GraphError(f"layer '{operation.name}' has {len(outputs)} output(s), not {output_index + 1}")
    return outputs[output_index]


def input_structure(model):
    """The model's inputs in the structure it was built with (a list, a dict, one tensor)."""
    return functional_of(model)._inputs_struct


def output_structure(model):
    """The model's outputs in the structure it was built with."""
    return functional_of(model)._outputs_struct


__all__ = ["GraphEvent", "LayerCall", "calls", "detached_call", "first_call", "functional_of", "input_structure",
           "is_model", "operations_by_name", "output_of", "output_structure", "produced_by", "runs_its_graph", "trace",
           "walk"]
