"""Keras 3 -> Caffe: write a Caffe net that computes exactly what a Keras model computes.

Each Keras layer class has one handler, registered with :func:`keras_layer` in
the module of its family. :func:`convert_model` reads the model's graph through
:mod:`keraffe.keras_graph` (nested models inlined, shared layers once per
call), checks up front that every layer has a handler, runs each handler, then
the Keras -> Caffe passes (:mod:`keraffe.passes`) that make the net fit Caffe
1.0 (zero padding folded into the next layer, Keras' pooling windows placed in
Caffe's), and lists everything that cannot be exact in one error.
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
    #: For an NPU target: what its rewrites changed, and its check of the result (keraffe.targets).
    target_notes: list = dataclasses.field(default_factory=list)
    target_check: object = None


def operation_kind(operation) -> str:
    """The registry key of a Keras operation: a layer's class name, or "ops.<Class>" for a keras.ops call.

    Functional models hold raw ops where code writes ``x + 3.0`` on a Keras
    tensor (keras.applications' MobileNetV3 does); their classes share names
    with layers (Add, Multiply), hence the prefix.
    """
    import keras

    name = type(operation).__name__
    return name if isinstance(operation, keras.layers.Layer) else f"ops.{name}"


def layer_calls(model):
    """The layer calls :func:`convert_model` converts (nested models inlined)."""
    from keraffe.keras_graph import walk

    return [event.call for event in walk(model) if event.kind == "call"]


def check_supported(model, target=None) -> None:
    """One error listing every layer class without a handler."""
    load_handlers()
    missing: dict[str, list[str]] = {}
    for call in layer_calls(model):
        kind = operation_kind(call.operation)
        if kind not in HANDLERS:
            missing.setdefault(kind, []).append(call.operation.name)
    if missing:
        lines = [f"cannot convert {len(missing)} Keras layer class(es) to Caffe:"]
        for kind, names in sorted(missing.items()):
            hint = " (arbitrary Python code)" if kind == "Lambda" else ""
            shown = ", ".join(f"'{n}'" for n in names[:5]) + (" ..." if len(names) > 5 else "")
            lines.append(f"  {kind}{hint}: {len(names)} layer(s): {shown}")
        raise UnsupportedLayerError("\n".join(lines))


def convert_model(model, target: str = "caffe1", batch_size: int = 1) -> CaffeExport:
    """Convert an in-memory Keras model into a Caffe net for ``target`` (caffe1, caffe, opencv, nnie, ascend, rknn).

    For an NPU target the result is fitted to the toolchain and checked; the
    check is on ``target_check`` (violations are reported, not raised: the
    net is exact Caffe either way).
    """
    from keraffe.convert.keras_to_caffe.context import KerasToCaffeContext
    from keraffe.convert.keras_to_caffe.targets import get_target
    from keraffe.passes import run_keras_to_caffe_passes

    load_handlers()
    chosen = get_target(target)
    try:
        check_supported(model)
        unsupported = None
    except UnsupportedLayerError as error:
        # Still convert the rest, so one error lists these classes and every layer that cannot be exact.
        unsupported = error
    ctx = KerasToCaffeContext(chosen, batch_size)
    ctx.net.name = model.name
    _add_inputs(ctx, model)
    problems = _convert_graph(ctx, model)
    if not problems and unsupported is None:
        ctx.map.inputs = [ctx.value(t).blob for t in model.inputs]
        ctx.map.outputs = [ctx.value(t).blob for t in model.outputs]
    for layer_name, error in run_keras_to_caffe_passes(ctx):
        operation = ctx.origin[layer_name]
        problems.append(f"  {operation.name} ({operation_kind(operation)}): {error}")
    _raise_if_inexact(unsupported, problems, target)
    export = CaffeExport(ctx.net, ctx.weights, ctx.map, ctx.report, target)
    if chosen.profile is not None:
        _fit_to_profile(export, chosen.profile, model.name)
    return export


def _fit_to_profile(export: CaffeExport, name: str, source: str) -> None:
    """An NPU target's exact rewrites on the export, then its check (the blobs keep their names: the map holds)."""
    from keraffe.caffe.net import net_from_parameter
    from keraffe.targets import get_profile
    from keraffe.targets.check import check_net
    from keraffe.targets.fit import fit_net

    profile = get_profile(name)
    fitted = fit_net(net_from_parameter(export.net, export.weights, f"Keras model '{source}'"), profile)
    export.net = fitted.net.to_net_parameter()
    export.weights = fitted.net.weight_arrays()
    export.target_notes = fitted.notes
    export.target_check = check_net(fitted.net, profile)


def _convert_graph(ctx, model) -> list[str]:
    """Run every layer call's handler; returns the problems, one line per layer that cannot be exact.

    A layer that fails (or has no handler) marks its outputs failed: the layers
    they feed are skipped rather than reported again.
    """
    from keraffe.keras_graph import walk

    problems: list[str] = []
    failed: set[int] = set()
    input_blobs = {ctx.value(t).blob for t in model.inputs}
    depth = 0
    for event in walk(model):
        call = event.call
        if event.kind == "enter":
            _enter_graph(ctx, call, event.graph, failed)
            depth += 1
        elif event.kind == "leave":
            depth -= 1
            # The user's own model inside with_input_shape's wrapper keeps its layers' names in the map.
            unwrapped = depth == 0 and call.operation.name == getattr(model, "_keraffe_wraps", None)
            _leave_graph(ctx, call, event.graph, failed, None if unwrapped else input_blobs)
        elif any(id(t) in failed for t in call.inputs) or operation_kind(call.operation) not in HANDLERS:
            failed.update(id(t) for t in call.outputs)
        else:
            ctx.operation = call.operation
            try:
                HANDLERS.get(operation_kind(call.operation))(ctx, call.operation, call)
            except ConversionError as error:
                problem = f"  {call.operation.name} ({operation_kind(call.operation)}): {error}"
                if problem not in problems:  # a nested model called twice refuses its layer once
                    problems.append(problem)
                failed.update(id(t) for t in call.outputs)
    return problems


def _enter_graph(ctx, call, graph, failed: set[int]) -> None:
    """The inlined graph's inputs hold the values of the call's inputs."""
    for outer, inner_input in zip(call.inputs, graph.inputs):
        if id(outer) in failed:  # a refused layer feeds the nested graph: its layers are skipped too
            failed.add(id(inner_input))
        else:
            failed.discard(id(inner_input))
            ctx.alias(inner_input, ctx.value(outer, allow_pending=True))


def _leave_graph(ctx, call, graph, failed: set[int], input_blobs) -> None:
    """The call's outputs hold the inlined graph's outputs; the tensor map names the call, not the inner layer."""
    for index, (outer, inner_output) in enumerate(zip(call.outputs, graph.outputs)):
        if id(inner_output) in failed:
            failed.add(id(outer))
            continue
        value = ctx.value(inner_output, allow_pending=True)
        ctx.alias(outer, value)
        if input_blobs is not None:
            _record_nested_output(ctx, call, index, value, input_blobs)


def _raise_if_inexact(unsupported, problems: list[str], target: str) -> None:
    if unsupported is None and not problems:
        return
    parts = [str(unsupported)] if unsupported is not None else []
    if problems:
        parts.append(f"{len(problems)} Keras layer(s) cannot be expressed exactly for target '{target}':\n"
                     + "\n".join(problems))
    raise (UnsupportedLayerError if unsupported is not None else ConversionError)("\n".join(parts))


#: Layers over (N, L, C) sequences; models with them keep rank-3 inputs as Caffe (N, C, L) blobs.
ONE_D_LAYERS = frozenset({"Conv1D", "MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D",
                          "GlobalMaxPooling1D"})


def _record_nested_output(ctx, call, index, value, input_blobs) -> None:
    """Map the blob of a nested model's output to that call of the nested model, not to its inner layer.

    The inner layer's tensor is not in the outer model's graph; the nested
    model's call is, so a verifier can read the blob from the outer model (an
    outer nesting level, left later, overwrites an inner one).
    """
    entry = ctx.map.entries.get(value.blob)
    if entry is None or ctx.is_padding(value) or value.blob in input_blobs:
        return
    ctx.map.add(dataclasses.replace(entry, keras_layer=call.operation.name, keras_output=index,
                                    keras_node=call.index))


def _add_inputs(ctx, model) -> None:
    """One Caffe Input layer per model input, in the layout the model's layers expect."""
    from keraffe.keras_graph import first_call, produced_by
    from keraffe.layout import NLC, default_layout

    sequence_model = any(operation_kind(call.operation) in ONE_D_LAYERS for call in layer_calls(model))
    for tensor in model.inputs:
        operation = produced_by(tensor)[0]
        layout = NLC if sequence_model and len(tensor.shape) == 3 else default_layout(len(tensor.shape))
        if any(d is None for d in tensor.shape[1:]):
            raise ConversionError(
                f"input '{operation.name}' has shape {tuple(tensor.shape)} with unknown sizes; Caffe nets have "
                "fixed shapes: give the model a fixed input shape (or pass --input-shape)"
            )
        name = ctx.unique(operation.name)
        shape = ctx.caffe_shape(tensor, layout)
        layer = ctx.add("Input", name, [], [name])
        layer.input_param.shape.add().dim.extend(shape)
        ctx.emit(operation, first_call(operation), 0, tensor, name, layout)


def export_files(model, prototxt, caffemodel=None, target: str = "caffe1", batch_size: int = 1,
                 source=None) -> CaffeExport:
    """Convert ``model`` and write the prototxt, the caffemodel (next to it unless given) and the tensor map.

    Nothing is written unless the whole conversion succeeds, each file
    atomically, and no output may be ``source``, the file the model came from.
    """
    from pathlib import Path

    from keraffe.caffe.caffemodel import write_caffemodel
    from keraffe.caffe.prototxt import write_prototxt
    from keraffe.convert.keras_to_caffe.targets import get_target
    from keraffe.convert.tensor_map import recorded_map_path, write_recorded_map
    from keraffe.files import refuse_overwriting_input

    prototxt = Path(prototxt)
    caffemodel = Path(caffemodel) if caffemodel else prototxt.with_suffix(".caffemodel")
    refuse_overwriting_input(prototxt, source)
    refuse_overwriting_input(caffemodel, source, prototxt)
    refuse_overwriting_input(recorded_map_path(prototxt), source, prototxt, caffemodel)
    export = convert_model(model, target, batch_size=batch_size)
    header = (f"Converted from Keras model '{model.name}' by keraffe for target '{target}' "
              f"({get_target(target).description}).")
    write_caffemodel(caffemodel, export.net, export.weights)
    write_prototxt(prototxt, export.net, get_target(target).dialect, header)
    write_recorded_map(prototxt, export.tensor_map)
    export.prototxt, export.caffemodel = prototxt, caffemodel
    return export


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
