"""Keras 3 -> Caffe: write a Caffe net that computes exactly what a Keras model computes.

Each Keras layer class has one handler, registered with :func:`keras_layer` in
the module of its family. :func:`convert_model` walks the model's graph (nested
models inlined, shared layers once per call), checks up front that every layer
has a handler and that each one can be expressed exactly for the target, and
lists everything that cannot in one error.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from keraffe.convert.registry import Registry
from keraffe.errors import ConversionError, UnsupportedLayerError

Handler = Callable[..., None]

FAMILIES = ("core", "activations", "conv", "pooling", "normalization", "merging", "reshaping", "keraffe_layers",
            "sequence", "detection")

HANDLERS: Registry[Handler] = Registry("Keras -> Caffe handler", __name__, FAMILIES)
keras_layer = HANDLERS.register


def load_handlers() -> Registry[Handler]:
    """Every handler of this direction, its family modules imported on first use."""
    return HANDLERS.load()


@dataclasses.dataclass
class CaffeExport:
    """The result of converting a Keras model: the net, its weights, the tensor map and what changed."""

    net: object
    weights: dict
    tensor_map: object
    report: list
    target: str


def walk(model):
    """Yield (operation, node) for every layer call in execution order, nested models inlined."""
    from keras.src.models.functional import Functional

    graph = _functional_of(model)
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            if isinstance(node.operation, Functional) or type(node.operation).__name__ == "Sequential":
                yield ("enter", node.operation, node)
                yield from walk(node.operation)
                yield ("leave", node.operation, node)
            else:
                yield ("call", node.operation, node)


def _functional_of(model):
    import keras

    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ConversionError(
                f"the Sequential model '{model.name}' has not been built; give it an Input or call build() first"
            )
        return functional
    if not hasattr(model, "_nodes_by_depth"):
        raise ConversionError(
            f"'{model.name}' is a subclassed Keras model; only functional and Sequential models have a graph "
            "keraffe can read"
        )
    return model


def operation_kind(operation) -> str:
    """The registry key of a Keras operation: a layer's class name, or "ops.<Class>" for a keras.ops call.

    Functional models hold raw ops where code writes ``x + 3.0`` on a Keras
    tensor (keras.applications' MobileNetV3 does); their classes share names
    with layers (Add, Multiply), hence the prefix.
    """
    import keras

    name = type(operation).__name__
    return name if isinstance(operation, keras.layers.Layer) else f"ops.{name}"


def check_supported(model, target) -> None:
    """One error listing every layer class without a handler, and every layer the target cannot express."""
    load_handlers()
    missing: dict[str, list[str]] = {}
    for event, operation, _node in walk(model):
        if event != "call":
            continue
        kind = operation_kind(operation)
        if kind not in HANDLERS:
            missing.setdefault(kind, []).append(operation.name)
    if missing:
        lines = [f"cannot convert {len(missing)} Keras layer class(es) to Caffe:"]
        for kind, names in sorted(missing.items()):
            hint = " (arbitrary Python code)" if kind == "Lambda" else ""
            shown = ", ".join(f"'{n}'" for n in names[:5]) + (" ..." if len(names) > 5 else "")
            lines.append(f"  {kind}{hint}: {len(names)} layer(s): {shown}")
        raise UnsupportedLayerError("\n".join(lines))


def convert_model(model, target: str = "caffe1", batch_size: int = 1) -> CaffeExport:
    """Convert an in-memory Keras model into a Caffe net for ``target`` (caffe1, caffe or opencv)."""
    from keraffe.convert.keras_to_caffe.context import KerasToCaffeContext
    from keraffe.convert.keras_to_caffe.targets import get_target

    load_handlers()
    chosen = get_target(target)
    try:
        check_supported(model, chosen)
        unsupported = None
    except UnsupportedLayerError as error:
        # Still convert the rest, so one error lists these classes and every layer that cannot be exact.
        unsupported = error
    ctx = KerasToCaffeContext(chosen, batch_size)
    ctx.net.name = model.name
    sequence_model = any(operation_kind(op) in ONE_D_LAYERS for event, op, _ in walk(model) if event == "call")
    for tensor in model.inputs:
        _add_input(ctx, tensor, sequence_model)
    input_blobs = {ctx.value(t).blob for t in model.inputs}
    problems: list[str] = []
    failed: set[int] = set()  # outputs of failed layers: their consumers are skipped, not reported again
    stack = []
    for event, operation, node in walk(model):
        if event == "enter":
            inner = _functional_of(operation)
            for outer, inner_input in zip(node.input_tensors, inner.inputs):
                if id(outer) in failed:  # a refused layer feeds the nested model: its layers are skipped too
                    failed.add(id(inner_input))
                else:
                    failed.discard(id(inner_input))
                    ctx.alias(inner_input, ctx.value(outer, allow_pending=True))
            stack.append((operation, node))
            continue
        if event == "leave":
            inner = _functional_of(operation)
            # The user's own model inside with_input_shape's wrapper keeps its layers' names in the map.
            unwrapped = len(stack) == 1 and operation.name == getattr(model, "_keraffe_wraps", None)
            for index, (outer, inner_output) in enumerate(zip(node.outputs, inner.outputs)):
                if id(inner_output) in failed:
                    failed.add(id(outer))
                else:
                    value = ctx.value(inner_output, allow_pending=True)
                    ctx.alias(outer, value)
                    if not unwrapped:
                        _record_nested_output(ctx, operation, node, index, value, input_blobs)
            stack.pop()
            continue
        if any(id(t) in failed for t in node.input_tensors) or operation_kind(operation) not in HANDLERS:
            failed.update(id(t) for t in node.outputs)
            continue
        try:
            HANDLERS.get(operation_kind(operation))(ctx, operation, node)
        except ConversionError as error:
            problem = f"  {operation.name} ({operation_kind(operation)}): {error}"
            if problem not in problems:  # a nested model called twice refuses its layer once
                problems.append(problem)
            failed.update(id(t) for t in node.outputs)
    if unsupported is not None or problems:
        parts = [str(unsupported)] if unsupported is not None else []
        if problems:
            parts.append(f"{len(problems)} Keras layer(s) cannot be expressed exactly for target '{target}':\n"
                         + "\n".join(problems))
        raise (UnsupportedLayerError if unsupported is not None else ConversionError)("\n".join(parts))
    ctx.map.inputs = [ctx.value(t).blob for t in model.inputs]
    ctx.map.outputs = [ctx.value(t).blob for t in model.outputs]
    return CaffeExport(ctx.net, ctx.weights, ctx.map, ctx.report, target)


#: Layers over (N, L, C) sequences; models with them keep rank-3 inputs as Caffe (N, C, L) blobs.
ONE_D_LAYERS = frozenset({"Conv1D", "MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D",
                          "GlobalMaxPooling1D"})


def _record_nested_output(ctx, operation, node, index, value, input_blobs) -> None:
    """Map the blob of a nested model's output to that call of the nested model, not to its inner layer.

    The inner layer's tensor is not in the outer model's graph; the nested
    model's call is, so a verifier can read the blob from the outer model (an
    outer nesting level, left later, overwrites an inner one).
    """
    import dataclasses

    entry = ctx.map.entries.get(value.blob)
    if entry is None or value.pending_padding or value.blob in input_blobs:
        return
    node_index = operation._inbound_nodes.index(node) if node in operation._inbound_nodes else 0
    ctx.map.add(dataclasses.replace(entry, keras_layer=operation.name, keras_output=index, keras_node=node_index))


def _add_input(ctx, tensor, sequence_model: bool = False) -> None:
    from keraffe.layout import NLC, default_layout

    operation = tensor._keras_history.operation
    layout = NLC if sequence_model and len(tensor.shape) == 3 else default_layout(len(tensor.shape))
    if any(d is None for d in tensor.shape[1:]):
        raise ConversionError(
            f"input '{operation.name}' has shape {tuple(tensor.shape)} with unknown sizes; Caffe nets have fixed "
            "shapes: give the model a fixed input shape (or pass --input-shape)"
        )
    name = ctx.unique(operation.name)
    shape = ctx.caffe_shape(tensor, layout)
    layer = ctx.add("Input", name, [], [name])
    layer.input_param.shape.add().dim.extend(shape)
    node = operation._inbound_nodes[0]
    ctx.emit(operation, node, 0, tensor, name, layout)


def with_input_shape(model, input_shape):
    """The model re-called on an input of Caffe shape (N, C, H, W) (or any rank); returns (model, N)."""
    import keras

    shape = tuple(int(d) for d in input_shape)
    if len(model.inputs) != 1:
        raise ConversionError("--input-shape applies to models with one input")
    keras_shape = (shape[2], shape[3], shape[1]) if len(shape) == 4 else shape[1:]
    inputs = keras.Input(shape=keras_shape, name=model.inputs[0].name.split(":")[0])
    wrapper = keras.Model(inputs, model(inputs), name=model.name)
    # convert_model maps the blobs to the wrapped model's layers, which the caller has, not to the wrapper's call.
    wrapper._keraffe_wraps = model.name
    return wrapper, shape[0]


def tensor_map_from_model(model, net):
    """The tensor map of converting ``model`` again, if its Caffe names match ``net`` (else None)."""
    for target in ("caffe1", "caffe", "opencv"):
        try:
            export = convert_model(model, target)
        except (ConversionError, UnsupportedLayerError):
            continue
        tops = {t for n in net.layers for t in (o.blob for o in n.outputs)}
        if all(e.caffe_blob in tops for e in export.tensor_map.entries.values()):
            return export.tensor_map
    return None
