"""A Caffe net as keraffe works with it: layers in order, tensors versioned, shapes known.

:func:`load_net` is the one way from files to a :class:`CaffeNet`. It reads and
upgrades the prototxt, keeps the layers of one phase (TEST by default), turns a
train/val net into a deploy net when the user gives input shapes, resolves
in-place layers into distinct tensor versions, infers every blob's shape with
Caffe's own rules, and binds weights by layer name as Caffe does.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from keraffe.caffe.caffemodel import CaffeWeights, read_weights
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.prototxt import read_prototxt, read_prototxt_text
from keraffe.caffe.shapes import LayerShapes, Shape, has_rule, infer_layer, layer_kind
from keraffe.caffe.upgrade import upgrade_net
from keraffe.errors import CaffeFormatError, ShapeError, UnsupportedLayerError
from keraffe.limits import EXPANSION_SLACK, MIN_STORED_BYTES, check_elements, check_total, count, element_cap

#: Layers that read training data; a deploy net replaces them with an Input.
DATA_LAYER_TYPES = frozenset({
    "Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DenseImageData",
    "AnnotatedData", "VideoData",
})
#: Layers that only make sense in training; dropped when a train/val net becomes a deploy net.
TRAINING_ONLY_TYPES = frozenset({
    "SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss", "InfogainLoss",
    "MultinomialLogisticLoss", "ContrastiveLoss", "MultiBoxLoss", "SmoothL1Loss", "Accuracy",
    "DetectionEvaluate", "HDF5Output",
})


@dataclasses.dataclass(frozen=True, order=True)
class Tensor:
    """One value of a Caffe blob. Each in-place layer makes a new version of its blob."""

    blob: str
    version: int = 0

    def __str__(self) -> str:
        return self.blob if self.version == 0 else f"{self.blob}#{self.version}"


@dataclasses.dataclass
class LayerNode:
    index: int
    param: pb.LayerParameter
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    shapes: LayerShapes | None = None
    #: Weights in the shapes Caffe's layer holds them, or None when the net has no weights.
    weights: list[np.ndarray] | None = None

    @property
    def name(self) -> str:
        return self.param.name

    @property
    def type(self) -> str:
        return self.param.type

    @property
    def kind(self) -> str:
        """Its type, or for a Python layer "Python:module.Layer" (see keraffe.caffe.shapes.layer_kind)."""
        return layer_kind(self.param)

    @property
    def num_params(self) -> int:
        if self.weights is not None:
            return int(sum(w.size for w in self.weights))
        if self.shapes is None:
            return 0
        return int(sum(int(np.prod(s)) for s in self.shapes.params))


@dataclasses.dataclass
class CaffeNet:
    name: str
    source: str
    layers: list[LayerNode]
    shapes: dict[Tensor, Shape]
    inputs: list[Tensor]
    outputs: list[Tensor]
    #: What loading changed or ignored, in words (upgrades, dropped layers, unused weights).
    notes: list[str]
    #: Layer -> (owner layer, param index) for each shared parameter (ParamSpec names).
    shared_params: dict[tuple[str, int], tuple[str, int]]
    #: Tensors a pass removed by fusing their producer into the next layer -> (producer, fused layer).
    fused: dict[Tensor, tuple[str, str]] = dataclasses.field(default_factory=dict)
    #: Read with a fork's schema (--caffe-proto): layer name -> its fields keraffe's schema lacks.
    foreign_fields: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def layer(self, name: str) -> LayerNode:
        for node in self.layers:
            if node.name == name:
                return node
        raise KeyError(name)

    def to_net_parameter(self) -> pb.NetParameter:
        """The V2 deploy net as a NetParameter (no weights)."""
        net = pb.NetParameter(name=self.name)
        for node in self.layers:
            net.layer.add().CopyFrom(node.param)
        return net

    def consumers(self) -> dict[Tensor, list[tuple[LayerNode, int]]]:
        """Each tensor's readers: (layer, which bottom it is), in net order."""
        readers: dict[Tensor, list[tuple[LayerNode, int]]] = {}
        for node in self.layers:
            for index, tensor in enumerate(node.inputs):
                readers.setdefault(tensor, []).append((node, index))
        return readers

    def weight_arrays(self) -> dict[str, list[np.ndarray]]:
        return {n.name: n.weights for n in self.layers if n.weights}

    @property
    def has_weights(self) -> bool:
        return any(n.weights for n in self.layers)


InputShapes = Mapping[str, Sequence[int]] | Sequence[int] | None


def load_net(
    prototxt: str | os.PathLike,
    weights: str | os.PathLike | CaffeWeights | None = None,
    input_shapes: InputShapes = None,
    phase: str = "TEST",
    stages: Sequence[str] = (),
    level: int = 0,
    infer_shapes: bool = True,
    check_types: Callable[["CaffeNet"], None] | None = None,
    max_elements: int | None = None,
    caffe_proto: str | os.PathLike | None = None,
) -> CaffeNet:
    """Read a prototxt (and weights) into a deploy :class:`CaffeNet`.

    ``input_shapes`` sets the shape of the net's inputs: one shape for a net
    with one input, or a mapping from input blob name to shape. A train/val net
    needs it, since its data layers only know their shape at training time.

    ``check_types`` replaces the check that every layer type has a shape rule,
    run before shape inference; a converter passes one that also asks for its
    own handlers, so that a user learns every missing type from one error.

    ``max_elements`` raises or lowers keraffe's cap on the values of any one
    blob and of all weights together (keraffe.limits); every shape the net
    declares is checked against it, and its weights against the size of the
    weights file, before a weight is read.

    ``caffe_proto`` is a fork's own caffe.proto to read the prototxt with
    (keraffe.caffe.fork_schema): fields keraffe's schema lacks are kept in
    ``CaffeNet.foreign_fields`` and named in the notes.
    """
    with element_cap(max_elements):
        return _load_net(prototxt, weights, input_shapes, phase, stages, level, infer_shapes, check_types, caffe_proto)


def _load_net(prototxt, weights, input_shapes, phase, stages, level, infer_shapes, check_types,
              caffe_proto) -> CaffeNet:
    source = str(prototxt)
    foreign: dict[str, list[str]] = {}
    if caffe_proto is not None:
        from keraffe.caffe.fork_schema import load_fork_schema, parse_with_schema

        read = parse_with_schema(read_prototxt_text(prototxt), source, load_fork_schema(caffe_proto))
        raw, foreign = read.net, read.foreign
    else:
        raw = read_prototxt(prototxt)
    if not len(raw.layer) and not len(raw.layers) and not len(raw.input):
        raise CaffeFormatError(f"{source}: the net has no layers (is the file empty?)")
    upgraded, notes = upgrade_net(raw, source)
    net = filter_phase(upgraded, phase, stages, level)
    kept = {layer.name for layer in net.layer}
    excluded_producers = {
        top: layer.name for layer in upgraded.layer if layer.name not in kept for top in layer.top
    }
    net = _to_deploy(net, input_shapes, source, notes)
    nodes, inputs, outputs = _build_graph(net, source, excluded_producers, phase)
    result = CaffeNet(net.name, source, nodes, {}, inputs, outputs, notes, _shared_params(net))
    if foreign:
        kept = {node.name for node in nodes}
        result.foreign_fields = {name: fields for name, fields in foreign.items() if name in kept or not name}
        for name, fields in result.foreign_fields.items():
            where = f"layer '{name}'" if name else "the net"
            notes.append(f"{where} has field(s) keraffe's schema lacks, read with {caffe_proto}: {', '.join(fields)}")
    if infer_shapes:
        (check_types or check_known_types)(result)
        _infer_shapes(result)
    if weights is not None:
        if not isinstance(weights, CaffeWeights) and infer_shapes:
            _check_weights_fit(result, Path(weights))
        loaded = weights if isinstance(weights, CaffeWeights) else read_weights(weights)
        bind_weights(result, loaded)
    _parameters_fed_from_outside(result)
    return result


def _parameters_fed_from_outside(net: CaffeNet) -> None:
    """A Parameter layer with no blob in the weights is an input of the net.

    Caffe would give it zeros (a fresh blob), which no net means: such layers
    stand for values fed from outside (DAN's, converted from TensorFlow
    placeholders), which a pycaffe user writes into the layer's blob.
    """
    for node in net.layers:
        if node.type == "Parameter" and node.weights is None and node.outputs[0] not in net.inputs:
            net.inputs.append(node.outputs[0])
            net.notes.append(f"Parameter layer '{node.name}' has no blob in the weights: it is an input of the net")


# ------------------------------------------------------------------ phase filtering


def _state_meets_rule(phase: int, level: int, stages: Sequence[str], rule: pb.NetStateRule) -> bool:
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(stage not in stages for stage in rule.stage):
        return False
    if any(stage in stages for stage in rule.not_stage):
        return False
    return True


def filter_phase(net: pb.NetParameter, phase: str = "TEST", stages: Sequence[str] = (), level: int = 0) -> pb.NetParameter:
    """Keep the layers Caffe's Net::FilterNet keeps for this state."""
    phase_value = pb.Phase.Value(phase.upper())
    result = pb.NetParameter()
    result.CopyFrom(net)
    del result.layer[:]
    for layer in net.layer:
        if len(layer.include) and len(layer.exclude):
            raise CaffeFormatError(f"layer '{layer.name}' has both include and exclude rules; Caffe refuses that")
        if len(layer.include):
            keep = any(_state_meets_rule(phase_value, level, stages, r) for r in layer.include)
        else:
            keep = not any(_state_meets_rule(phase_value, level, stages, r) for r in layer.exclude)
        if keep:
            result.layer.add().CopyFrom(layer)
    return result


# ------------------------------------------------------------------ train/val -> deploy


def _normalise_input_shapes(input_shapes: InputShapes, input_names: list[str], source: str) -> dict[str, tuple[int, ...]]:
    if input_shapes is None:
        return {}
    if isinstance(input_shapes, Mapping):
        unknown = sorted(set(input_shapes) - set(input_names))
        if unknown:
            raise ShapeError(
                f"{source}: --input-shape names {', '.join(unknown)}, but the net's inputs are "
                f"{', '.join(input_names) or '(none)'}"
            )
        return {k: tuple(int(d) for d in v) for k, v in input_shapes.items()}
    if len(input_names) != 1:
        raise ShapeError(
            f"{source}: the net has {len(input_names)} inputs ({', '.join(input_names)}); "
            "give each one's shape as NAME=N,C,H,W"
        )
    return {input_names[0]: tuple(int(d) for d in input_shapes)}


def _to_deploy(net: pb.NetParameter, input_shapes: InputShapes, source: str, notes: list[str]) -> pb.NetParameter:
    data_layers = [
        l for l in net.layer
        if l.type in DATA_LAYER_TYPES or (l.type == "Python" and not len(l.bottom) and len(l.top))
    ]
    input_layers = [l for l in net.layer if l.type == "Input"]
    input_names = [t for l in input_layers for t in l.top] + [l.top[0] for l in data_layers if len(l.top)]
    shapes = _normalise_input_shapes(input_shapes, input_names, source)
    missing = [l for l in data_layers if len(l.top) and l.top[0] not in shapes]
    if missing:
        described = ", ".join(f"'{l.name}' ({l.type}, top '{l.top[0]}')" for l in missing)
        raise ShapeError(
            f"{source}: the net reads its input from data layer(s) {described}, whose shape is only "
            "known at training time; give it with --input-shape N,C,H,W (or NAME=N,C,H,W)"
        )
    result = pb.NetParameter()
    result.CopyFrom(net)
    del result.layer[:]
    dropped_blobs: set[str] = set()
    data_layer_names = {l.name for l in data_layers}
    for layer in net.layer:
        if layer.name in data_layer_names:
            replacement = result.layer.add(name=layer.name, type="Input")
            replacement.top.append(layer.top[0])
            replacement.input_param.shape.add().dim.extend(shapes[layer.top[0]])
            dropped_blobs.update(layer.top[1:])
            notes.append(
                f"data layer '{layer.name}' ({layer.type}) replaced by an Input of shape {shapes[layer.top[0]]}"
                + (f"; its other tops ({', '.join(layer.top[1:])}) dropped" if len(layer.top) > 1 else "")
            )
            continue
        if data_layers and (layer.type in TRAINING_ONLY_TYPES or any(b in dropped_blobs for b in layer.bottom)):
            dropped_blobs.update(t for t in layer.top if t not in layer.bottom)
            notes.append(f"training-only layer '{layer.name}' ({layer.type}) dropped")
            continue
        copy = result.layer.add()
        copy.CopyFrom(layer)
        if layer.type == "Input":
            for i, top in enumerate(layer.top):
                if top in shapes:
                    if len(copy.input_param.shape) == 1 and len(layer.top) > 1:
                        original = list(copy.input_param.shape)[0]
                        del copy.input_param.shape[:]
                        for _ in layer.top:
                            copy.input_param.shape.add().CopyFrom(original)
                    while len(copy.input_param.shape) <= i:
                        copy.input_param.shape.add()
                    del copy.input_param.shape[i].dim[:]
                    copy.input_param.shape[i].dim.extend(shapes[top])
    return result


# ------------------------------------------------------------------ graph


def _build_graph(
    net: pb.NetParameter, source: str, excluded_producers: Mapping[str, str] = {}, phase: str = "TEST"
) -> tuple[list[LayerNode], list[Tensor], list[Tensor]]:
    current: dict[str, Tensor] = {}
    producer: dict[str, str] = {}
    nodes: list[LayerNode] = []
    inputs: list[Tensor] = []
    available: dict[str, Tensor] = {}
    for index, layer in enumerate(net.layer):
        bottoms = []
        for j, blob in enumerate(layer.bottom):
            if blob not in current:
                hint = ""
                if blob in excluded_producers:
                    hint = (
                        f"; layer '{excluded_producers[blob]}' produces it but its include/exclude "
                        f"rules leave it out in phase {phase} (choose --phase or --stage)"
                    )
                raise CaffeFormatError(
                    f"{source}: layer '{layer.name}' reads blob '{blob}' (bottom {j}), "
                    f"which no earlier layer produces{hint}"
                )
            bottoms.append(current[blob])
            available.pop(blob, None)
        tops = []
        for j, blob in enumerate(layer.top):
            in_place = j < len(layer.bottom) and layer.bottom[j] == blob
            if in_place:
                tensor = Tensor(blob, current[blob].version + 1)
            elif blob in current:
                raise CaffeFormatError(
                    f"{source}: blob '{blob}' is produced by both '{producer[blob]}' and "
                    f"'{layer.name}'; Caffe allows a blob to be rewritten only in place"
                )
            else:
                tensor = Tensor(blob)
            current[blob] = tensor
            producer[blob] = layer.name
            available[blob] = tensor
            tops.append(tensor)
        if layer.type == "Input":
            inputs.extend(tops)
        param = pb.LayerParameter()
        param.CopyFrom(layer)
        del param.blobs[:]
        nodes.append(LayerNode(index, param, tuple(bottoms), tuple(tops)))
    outputs = [available[name] for name in sorted(available)]
    return nodes, inputs, outputs


def _shared_params(net: pb.NetParameter) -> dict[tuple[str, int], tuple[str, int]]:
    owners: dict[str, tuple[str, int]] = {}
    shared: dict[tuple[str, int], tuple[str, int]] = {}
    for layer in net.layer:
        for i, spec in enumerate(layer.param):
            if not spec.name:
                continue
            if spec.name in owners:
                shared[(layer.name, i)] = owners[spec.name]
            else:
                owners[spec.name] = (layer.name, i)
    return shared


def check_known_types(net: "CaffeNet") -> None:
    """Raise one error naming every layer whose type has no shape rule (Python layers included)."""
    refuse_layer_types(net, lambda node: has_rule(node.kind), "does not know")


def refuse_layer_types(net: "CaffeNet", accepted: Callable[["LayerNode"], bool], verb: str,
                       refuse_foreign_fields: bool = False) -> None:
    """Raise one UnsupportedLayerError listing, by type, every layer ``accepted`` refuses.

    Python layers are listed with the module and class they run, since those
    say what the layer is; keraffe never reads user Python code, and knows only
    the Python layers it (or a plug-in, keraffe.register_caffe_layer) was taught.
    """
    missing: dict[str, list[str]] = {}
    for node in net.layers:
        if accepted(node):
            continue
        if node.type == "Python":
            python = node.param.python_param
            missing.setdefault("Python", []).append(f"'{node.name}' ({python.module}.{python.layer})")
        else:
            missing.setdefault(node.type, []).append(f"'{node.name}'")
    foreign = []
    if refuse_foreign_fields:
        # A field keraffe's schema lacks may change what a layer computes: a layer keraffe would convert refuses it.
        foreign = [(node, net.foreign_fields[node.name]) for node in net.layers
                   if node.name in net.foreign_fields and accepted(node)]
    if not missing and not foreign:
        return
    lines = [f"{net.source}: {len(missing)} layer type(s) keraffe {verb}:"] if missing else [f"{net.source}:"]
    for type_name, layer_names in sorted(missing.items()):
        shown = ", ".join(layer_names[:5]) + (" ..." if len(layer_names) > 5 else "")
        what = " running user Python code that keraffe cannot read" if type_name == "Python" else ""
        lines.append(f"  {type_name}: {len(layer_names)} layer(s){what}: {shown}")
    for node, fields in foreign:
        lines.append(f"  layer '{node.name}' ({node.type}) sets field(s) of its fork's schema that keraffe's lacks, "
                     f"so keraffe cannot know what they change: {', '.join(fields)}")
    raise UnsupportedLayerError("\n".join(lines))


def _infer_shapes(net: CaffeNet) -> None:
    weights = 0
    for node in net.layers:
        bottoms = [net.shapes[t] for t in node.inputs]
        node.shapes = infer_layer(node.param, bottoms)
        if len(node.shapes.tops) != len(node.outputs):
            raise ShapeError(
                f"layer '{node.name}' ({node.type}) has {len(node.outputs)} tops but produces "
                f"{len(node.shapes.tops)}"
            )
        what = f"{net.source}: layer '{node.name}' ({node.type})"
        for tensor, shape in zip(node.outputs, node.shapes.tops):
            check_elements(f"{what} top '{tensor}'", shape)
            net.shapes[tensor] = shape
        for index, shape in enumerate(node.shapes.params):
            weights += check_elements(f"{what} weight blob {index}", shape)
    check_total(f"{net.source}: the net's weights", weights)


def _stored_weights(node: LayerNode, shared: Mapping[tuple[str, int], tuple[str, int]]) -> int:
    """The fewest values a weights file must store for ``node``: its required blobs not shared with another layer."""
    if node.shapes is None:
        return 0
    params = node.shapes.params
    required = len(params) if node.shapes.required_params is None else node.shapes.required_params
    return sum(count(shape) for i, shape in enumerate(params[:required]) if (node.name, i) not in shared)


def _check_weights_fit(net: CaffeNet, path: Path) -> None:
    """Refuse, before reading it, a weights file too small to hold the weights some layer declares.

    Each value takes at least keraffe.limits.MIN_STORED_BYTES in any Caffe
    weights file, so a file of N bytes holds at most N / 2 values. Layers
    declaring under a megabyte are left to :func:`bind_weights`, whose message
    names the blob that is missing or of another shape.
    """
    if not path.is_file():
        return  # read_weights says so
    size = path.stat().st_size
    for node in net.layers:
        values = _stored_weights(node, net.shared_params)
        if values * MIN_STORED_BYTES > max(size, EXPANSION_SLACK):
            raise ShapeError(
                f"{path}: layer '{node.name}' ({node.type}) declares {values:,} weight values, which cannot fit "
                f"this weights file of {size:,} bytes; the prototxt and the weights do not belong together"
            )


# ------------------------------------------------------------------ weights


def _legacy_matches(expected: Shape, found: Shape) -> bool:
    """Caffe accepts a 4-D legacy blob when the expected shape, padded with leading 1s, equals it."""
    if len(expected) > 4:
        return False
    return (1,) * (4 - len(expected)) + tuple(expected) == tuple(found)


def bind_weights(net: CaffeNet, weights: CaffeWeights) -> None:
    """Attach weights to layers by name, checking each blob against the shape the layer needs."""
    source = str(weights.source) if weights.source else "weights"
    used: set[str] = set()
    for node in net.layers:
        expected = list(node.shapes.params) if node.shapes else None
        # Caffe gives a layer name's weights to the first layer of that name only.
        entry = weights.layers.get(node.name) if node.name not in used else None
        if entry is None or not entry.blobs:
            if node.type == "Parameter":
                continue  # fed from outside: an input of the net (see _parameters_fed_from_outside)
            if expected and not all((node.name, i) in net.shared_params for i in range(len(expected))):
                wanted = ", ".join(str(s) for s in expected)
                raise ShapeError(
                    f"{source}: layer '{node.name}' ({node.type}) needs weights of shape {wanted}, "
                    "and the weights file has none for it"
                )
            continue
        used.add(node.name)
        blobs = entry.blobs
        if expected is None:
            node.weights = [b.data for b in blobs]
            continue
        required = node.shapes.required_params
        allowed = {len(expected)} if required is None else set(range(required, len(expected) + 1))
        if len(blobs) not in allowed:
            raise ShapeError(
                f"{source}: layer '{node.name}' ({node.type}) needs {len(expected)} weight blob(s) "
                f"of shape {', '.join(str(s) for s in expected)}; the file has {len(blobs)}"
            )
        arrays = []
        for i, blob in enumerate(blobs):
            want = tuple(expected[i])
            if blob.shape == want:
                arrays.append(blob.data)
            elif blob.legacy and _legacy_matches(want, blob.shape):
                arrays.append(blob.data.reshape(want))
            elif {want, blob.shape} == {(), (1,)}:
                # One value, spelled as a scalar (Caffe writes no shape) or as a vector of one (other writers).
                arrays.append(blob.data.reshape(want))
            else:
                raise ShapeError(
                    f"{source}: layer '{node.name}' ({node.type}) blob {i} should have shape {want}, "
                    f"the file has {blob.shape}"
                )
        node.weights = arrays
    unused = [name for name, entry in weights.layers.items() if name not in used and entry.blobs]
    if unused:
        shown = ", ".join(f"'{n}'" for n in unused[:8]) + (" ..." if len(unused) > 8 else "")
        net.notes.append(f"weights for {len(unused)} layer(s) not in the net were ignored, as Caffe does: {shown}")
    if weights.net_name and net.name and weights.net_name != net.name:
        net.notes.append(
            f"the weights file calls its net '{weights.net_name}', the prototxt '{net.name}'; "
            "weights are matched by layer name"
        )


def infer_known_shapes(net: CaffeNet) -> list[str]:
    """Infer shapes layer by layer as far as keraffe has rules; returns the layers where they stop.

    For readers that take any net (``keraffe check``): a layer type without
    a shape rule leaves its tops, and what is computed from them, unknown.
    """
    from keraffe.caffe.shapes import has_rule

    stopped: list[str] = []
    for node in net.layers:
        bottoms = [net.shapes.get(t) for t in node.inputs]
        if any(b is None for b in bottoms):
            continue
        if not has_rule(node.type):
            stopped.append(f"'{node.name}' ({node.type})")
            continue
        try:
            node.shapes = infer_layer(node.param, bottoms)
        except ShapeError as error:
            raise ShapeError(f"{net.source}: layer '{node.name}' ({node.type}): {error}") from None
        for tensor, shape in zip(node.outputs, node.shapes.tops):
            net.shapes[tensor] = shape
    return stopped


def net_from_parameter(
    net: pb.NetParameter,
    weights: Mapping[str, Sequence[np.ndarray]] | None = None,
    source: str = "<net>",
    partial: bool = False,
) -> CaffeNet:
    """A :class:`CaffeNet` from a deploy NetParameter held in memory (V2 layers, Input layers), shapes inferred.

    What a Caffe -> Caffe pipeline needs between two passes: the rewritten
    net as a graph again, with each layer's weights (arrays keyed by layer
    name, in Caffe's blob shapes) attached as they are. ``partial`` accepts
    layer types without a shape rule (see :func:`infer_known_shapes`).
    """
    if len(net.layers) or len(net.input):
        raise CaffeFormatError(f"{source}: net_from_parameter expects an upgraded deploy net (V2 layers, Input layers)")
    nodes, inputs, outputs = _build_graph(net, source)
    result = CaffeNet(net.name, source, nodes, {}, inputs, outputs, [], _shared_params(net))
    if partial:
        infer_known_shapes(result)
    else:
        check_known_types(result)
        _infer_shapes(result)
    for node in result.layers:
        if weights and node.name in weights:
            node.weights = [np.asarray(w, dtype=np.float32) for w in weights[node.name]]
    return result
