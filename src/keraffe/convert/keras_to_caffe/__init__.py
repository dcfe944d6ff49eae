"""Keras 3 -> Caffe: write a Caffe net that computes exactly what a Keras model computes.

Each Keras layer class has one handler, registered with :func:`keras_layer` in
the module of its family under the class's registered name (see
:func:`operation_kind`); users add their own with :func:`register_keras_layer`.
:func:`convert_model` reads the model's graph through :mod:`keraffe.keras_graph`
(nested models inlined, shared layers once per call, and every layer without a
handler traced and inlined: composite layers convert through the layers and
ops their ``call`` uses), checks up front that every layer has a handler, runs
each handler, then
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
            "sequence", "detection", "ops", "recurrent", "resizing")

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
    """The registry key of a Keras operation: its registered serializable name.

    Keras' own layers are keyed by class name ("Dense"), and raw keras.ops
    calls, which functional models hold where code writes ``x + 3.0`` on a
    Keras tensor, by "ops.<Class>" (their classes share names with layers:
    Add, Multiply). Every other class is keyed by the name it is registered
    under with ``keras.saving.register_keras_serializable`` ("keraffe>LRN",
    "keras_hub>InvertedResidualBlock"), and an unregistered one by its module
    and class ("my_model.LRN"): a user's own layer never reaches a handler
    written for another class of the same name.
    """
    import keras

    cls = type(operation)
    if cls.__module__.split(".")[0] == "keras":
        return cls.__name__ if isinstance(operation, keras.layers.Layer) else f"ops.{cls.__name__}"
    registered = keras.saving.get_registered_name(cls)
    return registered if ">" in registered else f"{cls.__module__}.{cls.__qualname__}"


def register_keras_layer(layer, handler: Handler | None = None):
    """Convert Keras layer class ``layer`` (or its registered name, "package>Name") with ``handler``.

    ``handler(ctx, layer, call)`` writes the Caffe layers of one call of the
    layer (docs/keras_to_caffe.md shows the context's API and an example).
    A layer needs a handler only when its ``call`` cannot be inlined: a layer
    built from convertible layers and keras.ops converts without one. Usable
    as a decorator: ``@register_keras_layer(MyLayer)``.
    """
    from keraffe.errors import KeraffeError

    if isinstance(layer, str):
        name = layer
    else:
        import keras

        if not (isinstance(layer, type) and issubclass(layer, keras.layers.Layer)):
            raise KeraffeError(f"register_keras_layer needs a Keras layer class or its registered name, got {layer!r}")
        name = operation_kind(layer.__new__(layer))
    load_handlers()

    def decorate(function: Handler) -> Handler:
        if name in HANDLERS:
            raise KeraffeError(f"a Keras -> Caffe handler for {name!r} is already registered "
                               f"(in {HANDLERS.family(name)})")
        HANDLERS.register(name)(function)
        return function

    return decorate if handler is None else decorate(handler)


def _expands(call) -> bool:
    """Whether the walk traces a layer's call and inlines it: any layer (not a raw op) without a handler.

    Layers known to have no Caffe form (attention, Masking) are not traced:
    they are refused as themselves, with the reason.
    """
    import keras

    kind = operation_kind(call.operation)
    return isinstance(call.operation, keras.layers.Layer) and kind not in HANDLERS and kind not in NO_CAFFE_FORM


def converted_events(model):
    """The walk :func:`convert_model` converts: nested models inlined, layers without a handler traced.

    Yields (event, scope): ``scope`` is the path of composite layers whose
    traced calls the event is inside ("block_1_0", "stage1/block0"), empty at
    the model's own level and inside nested models.
    """
    from keraffe.convert.keras_to_caffe.context import scoped_name
    from keraffe.keras_graph import walk

    load_handlers()
    scope: list[str] = []
    for event in walk(model, _expands):
        if event.kind == "enter" and event.traced:
            scope.append(scoped_name(scope, event.operation.name))
        yield event, tuple(scope)
        if event.kind == "leave" and event.traced:
            scope.pop()


def layer_calls(model):
    """The layer calls :func:`convert_model` converts (nested models inlined, composite layers traced)."""
    return [event.call for event, _ in converted_events(model) if event.kind == "call"]


def _mask_only(calls) -> set[int]:
    """Tensors that only carry Keras masks: the outputs of ops computing a mask nothing else reads."""
    import keras

    masks = set()
    for call in calls:
        mask = call.mask()
        if mask is not None:
            masks.update(id(t) for t in keras.tree.flatten(mask))
    other_reads = {id(t) for call in calls for t in call.inputs if id(t) not in masks or call.mask() is None}
    return {m for m in masks if m not in other_reads}


#: Why the layers and keras.ops calls keraffe never converts have no Caffe form (refusals say it).
NO_CAFFE_FORM = {
    "Masking": "Caffe has no masks: the masked steps would be computed",
    "ops.Erf": "Caffe has no erf",
    "ops.Erfinv": "Caffe has no erf",
    "ops.Einsum": "einsum is not converted: a product of two activations (attention's scores) has no Caffe 1.0 "
                  "layer, and a product by a constant converts when written as x @ W or a Dense layer",
    "ops.DotProductAttention": "a product of two activations (attention's scores) has no Caffe 1.0 layer",
    "ops.Where": "a data-dependent choice",
    "ops.Nonzero": "a data-dependent shape",
    "ops.Unique": "a data-dependent shape",
    "ops.Argsort": "sorting has no Caffe layer",
    "ops.Sort": "sorting has no Caffe layer",
    "ops.TopK": "sorting has no Caffe layer",
    "ops.Floor": "Caffe has no rounding",
    "ops.Ceil": "Caffe has no rounding",
    "ops.Round": "Caffe has no rounding",
    "ops.Sign": "Caffe has no sign",
    "ops.Cumsum": "Caffe 1.0 has no cumulative sum",
    "ops.Take": "a data-dependent gather",
    "ops.TakeAlongAxis": "a data-dependent gather",
    "MultiHeadAttention": "a product of two activations (attention's scores) has no Caffe 1.0 layer",
    "Attention": "a product of two activations (attention's scores) has no Caffe 1.0 layer",
    "AdditiveAttention": "a product of two activations (attention's scores) has no Caffe 1.0 layer",
}


def _why_not(kind: str, error) -> str | None:
    """The reason shown for a layer class or op that has no handler (and whose call, if any, was not traced)."""
    if kind in NO_CAFFE_FORM:
        return NO_CAFFE_FORM[kind]
    if kind == "Lambda":
        return "arbitrary Python code, not a graph of keras.ops"
    if error is not None:
        first = str(error).strip().splitlines()[0]
        return "no handler, and " + (first if len(first) <= 200 else first[:197] + "...")
    return None


def check_supported(model, target=None) -> None:
    """One error listing every layer class or op without a handler (or a traceable call), and every layer there."""
    from keraffe.convert.keras_to_caffe.context import scoped_name

    missing: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    events = list(converted_events(model))
    mask_only = _mask_only([e.call for e, _ in events if e.kind == "call"])
    for event, scope in events:
        if event.kind != "call":
            continue
        call = event.call
        kind = operation_kind(call.operation)
        if kind in HANDLERS or all(id(t) in mask_only for t in call.outputs):
            continue
        missing.setdefault(kind, []).append(scoped_name(scope, call.operation.name))
        reason = _why_not(kind, event.error)
        if reason:
            reasons[kind] = reason
    if missing:
        lines = [f"cannot convert {len(missing)} Keras layer class(es) to Caffe:"]
        for kind, names in sorted(missing.items()):
            hint = f" ({reasons[kind]})" if kind in reasons else ""
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
        ctx.map.outputs = _output_blobs(ctx, model)
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


def _output_blobs(ctx, model) -> list[str]:
    """Each Keras output's blob, copied (Caffe's Split) where it would not be a Caffe output of its own.

    A Caffe net's outputs are the blobs no layer reads. A Keras output that
    is a model input (an identity layer's output), that a layer reads, or that
    several outputs hold, is copied: one Split with a top for each of them.
    """
    from keraffe.convert.tensor_map import MapEntry
    from keraffe.keras_graph import produced_by

    read = {bottom for layer in ctx.net.layer for bottom in layer.bottom}
    inputs = set(ctx.map.inputs)
    values = [ctx.value(tensor) for tensor in model.outputs]
    holders: dict[str, list[int]] = {}
    for position, value in enumerate(values):
        holders.setdefault(value.blob, []).append(position)
    blobs = [value.blob for value in values]
    for blob, positions in holders.items():
        if len(positions) == 1 and blob not in read and blob not in inputs:
            continue
        tops = []
        for position in positions:
            operation, node, index = produced_by(model.outputs[position])
            top = ctx.unique(f"{operation.name}/output" if index == 0 else f"{operation.name}/output{index}")
            ctx.shapes[top] = ctx.shapes.get(blob, values[position].shape)
            ctx.map.add(MapEntry(top, top, top, operation.name, index, node, values[position].layout,
                                 "a copy: the Keras output is a Caffe output of its own"))
            blobs[position] = top
            tops.append(top)
            ctx.operation = operation
        ctx.add("Split", ctx.unique(f"{blob}/outputs"), [blob], tops)
    return blobs


def convert_graph(ctx, graph) -> list[str]:
    """Convert the calls of ``graph``, whose inputs already hold values; returns the problems (see convert_model).

    For handlers that apply a layer the model's graph does not show as a call
    of its own (TimeDistributed's layer over the folded batch).
    """
    return _convert_graph(ctx, graph)


def _convert_graph(ctx, model) -> list[str]:
    """Run every layer call's handler; returns the problems, one line per layer that cannot be exact.

    A layer that fails (or has no handler) marks its outputs failed: the layers
    they feed are skipped rather than reported again.
    """
    from keraffe.convert.keras_to_caffe.context import scoped_name

    problems: list[str] = []
    failed: set[int] = set()
    input_blobs = {ctx.value(t).blob for t in model.inputs}
    events = list(converted_events(model))
    mask_only = _mask_only([e.call for e, _ in events if e.kind == "call"])
    depth = 0
    inlined_from: list[int] = []
    for event, scope in events:
        call = event.call
        if event.kind == "enter":
            _enter_graph(ctx, call, event.graph, failed)
            depth += 1
            if event.traced:
                ctx.scope.append(scope[-1])
                inlined_from.append(len(ctx.net.layer))
        elif event.kind == "leave":
            depth -= 1
            if event.traced:
                ctx.scope.pop()
                start = inlined_from.pop()
                types = ctx.caffe_types(start)
                ctx.note(call.operation, sorted(set(types)), f"composite layer inlined: its call became "
                         f"{len(types)} Caffe layer(s), named under '{scope[-1]}'")
            # The user's own model inside with_input_shape's wrapper keeps its layers' names in the map.
            unwrapped = depth == 0 and call.operation.name == getattr(model, "_keraffe_wraps", None)
            record = not unwrapped and not ctx.scope
            _leave_graph(ctx, call, event.graph, failed, input_blobs if record else None)
        elif any(id(t) in failed and id(t) not in mask_only for t in call.inputs) \
                or operation_kind(call.operation) not in HANDLERS or all(id(t) in mask_only for t in call.outputs):
            failed.update(id(t) for t in call.outputs)
        else:
            ctx.operation = call.operation
            try:
                if call.mask() is not None:
                    raise ConversionError(
                        "it receives a Keras mask (from Masking or Embedding(mask_zero=True)), which changes what it "
                        "computes; Caffe has no masks, so the masked steps would count")
                HANDLERS.get(operation_kind(call.operation))(ctx, call.operation, call)
            except ConversionError as error:
                problem = f"  {scoped_name(scope, call.operation.name)} ({operation_kind(call.operation)}): {error}"
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
            ctx.alias(inner_input, ctx.value(outer))


def _leave_graph(ctx, call, graph, failed: set[int], input_blobs) -> None:
    """The call's outputs hold the inlined graph's outputs; the tensor map names the call, not the inner layer."""
    for index, (outer, inner_output) in enumerate(zip(call.outputs, graph.outputs)):
        if id(inner_output) in failed:
            failed.add(id(outer))
            continue
        value = ctx.value(inner_output)
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
    if entry is None or value.blob in input_blobs:
        return
    ctx.map.add(dataclasses.replace(entry, keras_layer=call.operation.name, keras_output=index,
                                    keras_node=call.index))


def _add_inputs(ctx, model) -> None:
    """One Caffe Input layer per model input, in the layout the model's layers expect."""
    from keraffe.keras_graph import first_call, produced_by
    from keraffe.layout import NDHWC, NLC, default_layout

    sequence_model = any(operation_kind(call.operation) in ONE_D_LAYERS for call in layer_calls(model))
    for tensor in model.inputs:
        operation = produced_by(tensor)[0]
        rank = len(tensor.shape)
        # Volumes are channels first in Caffe, as images are (Caffe's N-D convolution reads (N, C, D, H, W)).
        layout = NLC if sequence_model and rank == 3 else NDHWC if rank == 5 else default_layout(rank)
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
