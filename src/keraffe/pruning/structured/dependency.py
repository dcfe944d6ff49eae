"""Which channels of a Keras model must be pruned together, read from its graph.

Every channel a layer creates (a Conv2D filter, a Dense unit) is an *atom*.
Every tensor carries a *layout*: for each position of its last (channel) axis,
the atom that lives there. Layers move layouts along: per-channel layers
(BatchNormalization, activations, pooling, depthwise convolutions) keep them,
Concatenate joins them (index offsets), Flatten tiles them (Keras flattens
NHWC, so channel c sits at every position p with p % C == c: a strided
mapping), and element-wise merges (Add, Multiply, ... the squeeze-excite
broadcast included) *couple* the atoms at equal positions: those must go
together. Coupled atoms form one channel (a union-find component); channels
whose atoms come from the same set of layers form a group, the unit a ratio
applies to.

Layers this module does not know, or knows but cannot cut along the channel
axis (LayerNormalization, a softmax over channels, grouped convolutions,
channels_first data), are *barriers*: every channel entering them is kept,
never guessed, and what leaves them is a fixed layout. So are the model's
outputs and inputs.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import keras
import numpy as np

from keraffe.errors import PruningError

SOURCE = "source"          # creates channels: Conv, Dense, Conv*Transpose, SeparableConv
CHANNELWISE = "channelwise"  # keeps positions: BN, activations, pooling, padding, depthwise
MERGE = "merge"            # element-wise over several inputs: couples equal positions
CONCAT = "concat"          # joins layouts along the channel axis
RESHAPE = "reshape"        # Flatten, Reshape that keeps or flattens the channel axis
BARRIER = "barrier"

#: Activations that act on each element alone, so removing a channel changes no other channel.
ELEMENTWISE_ACTIVATIONS = frozenset({
    "linear", "relu", "relu6", "sigmoid", "tanh", "swish", "silu", "elu", "selu", "softplus", "softsign",
    "gelu", "hard_sigmoid", "hard_silu", "hard_swish", "exponential", "leaky_relu", "mish", "celu",
    "log_sigmoid", "sparse_plus", "squareplus", "soft_shrink", "hard_shrink", "tanh_shrink", "hard_tanh",
    "threshold",
})

_CONV = ("Conv1D", "Conv2D", "Conv3D")
_CONV_TRANSPOSE = ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
_SEPARABLE = ("SeparableConv1D", "SeparableConv2D")
_DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
_PASS_THROUGH = (
    "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization", "Identity",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
)
_MERGES = ("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average")
_OPS_MERGES = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum")
#: keraffe's own layers (from Caffe nets) that act on each element or each channel alone.
_KERAFFE_PASS_THROUGH = ("Power", "Exp", "Log", "Threshold", "AbsVal", "Clip", "Swish", "CaffePooling2D", "Interp")


def _keras_class(operation, names) -> bool:
    """Exactly one of Keras' own classes: a user's subclass may compute anything, so it is a barrier."""
    cls = type(operation)
    return cls.__name__ in names and cls.__module__.startswith("keras.")


def _keraffe_class(operation, names) -> bool:
    cls = type(operation)
    return cls.__name__ in names and cls.__module__.startswith("keraffe.keras_layers")


def _channels_last(operation) -> bool:
    return getattr(operation, "data_format", "channels_last") == "channels_last"


def _activation_name(activation) -> str | None:
    if isinstance(activation, str):
        return activation
    name = getattr(activation, "__name__", None)
    return name


def elementwise_activation(operation) -> bool:
    """Whether a layer's fused ``activation`` leaves each channel independent (softmax does not)."""
    return _activation_name(getattr(operation, "activation", None) or "linear") in ELEMENTWISE_ACTIVATIONS


def classify(operation, call=None) -> tuple[str, str]:
    """(kind, reason): how an operation moves channels; the reason says why a barrier is one."""
    name = type(operation).__name__
    if not isinstance(operation, keras.layers.Layer):
        if name in _OPS_MERGES and type(operation).__module__.startswith("keras."):
            return MERGE, ""
        return BARRIER, f"keras.ops.{name} is not understood by the channel planner"
    for rule in _RULES:
        verdict = rule(operation, call)
        if verdict is not None:
            return verdict
    return BARRIER, f"{name} is not understood by the channel planner"


# Each rule below recognises one family of layers and says how it moves channels (None: not its family).

def _convolution(operation, call):
    if _keras_class(operation, _CONV) or _keras_class(operation, _CONV_TRANSPOSE):
        if not _channels_last(operation):
            return BARRIER, "channels_first data"
        if getattr(operation, "groups", 1) != 1:
            return BARRIER, f"grouped convolution (groups={operation.groups})"
        return SOURCE, ""
    if _keras_class(operation, ("Dense",)):
        return SOURCE, ""
    return None


def _depthwise_family(operation, call):
    """SeparableConv creates channels (its pointwise part); DepthwiseConv keeps them, one filter each."""
    for names, kind in ((_SEPARABLE, SOURCE), (_DEPTHWISE, CHANNELWISE)):
        if _keras_class(operation, names):
            if not _channels_last(operation):
                return BARRIER, "channels_first data"
            if operation.depth_multiplier != 1:
                return BARRIER, f"depth_multiplier={operation.depth_multiplier}"
            return kind, ""
    return None


def _normalisation_and_activation(operation, call):
    if _keras_class(operation, ("BatchNormalization",)):
        rank = len(call.inputs[0].shape) if call is not None else None
        axis = operation.axis if isinstance(operation.axis, int) else None
        return (CHANNELWISE, "") if axis == -1 or (axis is not None and axis == (rank or 0) - 1) \
            else (BARRIER, f"normalises over axis {operation.axis}, not the channel axis")
    if _keras_class(operation, ("Activation",)):
        return (CHANNELWISE, "") if elementwise_activation(operation) else (
            BARRIER, f"activation {_activation_name(operation.activation)!r} mixes channels")
    if _keras_class(operation, ("PReLU",)):
        return CHANNELWISE, ""
    if _keras_class(operation, ("Rescaling",)):
        scalar = np.ndim(operation.scale) == 0 and np.ndim(operation.offset) == 0
        return (CHANNELWISE, "") if scalar else (BARRIER, "per-channel Rescaling factors")
    return None


def _per_channel(operation, call):
    if _keras_class(operation, _PASS_THROUGH) or _keraffe_class(operation, _KERAFFE_PASS_THROUGH):
        return (CHANNELWISE, "") if _channels_last(operation) else (BARRIER, "channels_first data")
    if _keraffe_class(operation, ("AxisSlice",)):  # Caffe's Slice: a crop when it cuts a spatial axis
        rank = len(call.inputs[0].shape) if call is not None else 0
        return (CHANNELWISE, "") if operation.axis not in (-1, rank - 1) else (BARRIER, "slices the channel axis")
    return None


def _merge_concat_reshape(operation, call):
    if _keras_class(operation, _MERGES) or _keraffe_class(operation, ("WeightedSum",)):
        return MERGE, ""
    if _keras_class(operation, ("Concatenate",)):
        return CONCAT, ""
    if _keras_class(operation, ("Flatten",)):
        return (RESHAPE, "") if _channels_last(operation) else (BARRIER, "channels_first data")
    if _keras_class(operation, ("Reshape",)):
        return RESHAPE, ""
    return None


_RULES = (_convolution, _depthwise_family, _normalisation_and_activation, _per_channel, _merge_concat_reshape)


def _static(shape) -> tuple[int, ...] | None:
    """A tensor's shape without the batch axis, or None when any size is unknown."""
    dims = tuple(shape[1:])
    return None if any(d is None for d in dims) else tuple(int(d) for d in dims)


@dataclasses.dataclass
class NodeRecord:
    """One call of one operation, with the layouts of its tensor inputs and outputs."""

    operation: object
    call: object  # a keraffe.keras_graph.LayerCall
    kind: str
    reason: str
    inputs: list          # KerasTensors (flattened)
    outputs: list
    in_layouts: list      # np.ndarray of atom ids per input, None where a tensor has no known channel axis
    out_layouts: list

    @property
    def name(self) -> str:
        return self.operation.name


@dataclasses.dataclass
class ChannelGroup:
    """Channels that share one set of source layers; a ratio applies to the group as a whole.

    ``channels`` holds one union-find root per coupled channel. ``filters[layer]``
    gives, for each channel, the output index of that source layer's filter
    (or -1 where the channel has no filter of that layer). ``prunable[i]`` says
    whether channel i may go at all (False when it reaches an output, a barrier
    or an excluded layer; ``protected_by`` says which).
    """

    name: str
    sources: tuple[str, ...]
    channels: np.ndarray
    filters: dict
    prunable: np.ndarray
    protected_by: str = ""

    def __len__(self) -> int:
        return len(self.channels)


class ChannelGraph:
    """The channel dependencies of a functional or Sequential Keras model (nested models inlined)."""

    def __init__(self, model, exclude=()):
        self.model = model
        self.records: list[NodeRecord] = []
        self.layouts: dict[int, np.ndarray] = {}
        self.aliases: dict[int, int] = {}  # id(tensor inside a nested model) -> id(tensor outside), and back
        self._parent: list[int] = []
        self._owner: list[tuple[str, int] | None] = []
        self._protected: dict[int, str] = {}
        self.source_atoms: dict[str, np.ndarray] = {}
        self.barriers: dict[str, str] = {}
        self.layers: dict[str, object] = {}
        self._first_inputs: dict[int, np.ndarray] = {}
        self._exclude = set(exclude)
        self._build()
        self.roots = self._all_roots()
        self.groups = self._groups()

    # --- atoms and coupling -------------------------------------------------
    def _new_atoms(self, count: int, owner: str | None, reason: str = "") -> np.ndarray:
        start = len(self._parent)
        self._parent.extend(range(start, start + count))
        self._owner.extend((owner, i) if owner else None for i in range(count))
        if owner is None:
            for atom in range(start, start + count):
                self._protected[atom] = reason
        return np.arange(start, start + count, dtype=np.int64)

    def _find(self, atom: int) -> int:
        parent = self._parent
        root = atom
        while parent[root] != root:
            root = parent[root]
        while parent[atom] != root:
            parent[atom], atom = root, parent[atom]
        return root

    def _union(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self._find(x), self._find(y)
            if rx != ry:
                self._parent[max(rx, ry)] = min(rx, ry)

    def _protect(self, layout: np.ndarray | None, reason: str) -> None:
        if layout is None:
            return
        for atom in np.unique(layout).tolist():
            self._protected.setdefault(atom, reason)

    def _all_roots(self) -> np.ndarray:
        return np.array([self._find(a) for a in range(len(self._parent))], dtype=np.int64)

    # --- walking the graph --------------------------------------------------
    def layout(self, tensor) -> np.ndarray | None:
        """The atom at each channel position of ``tensor`` (None: no static channel axis)."""
        key = id(tensor)
        if key not in self.layouts:
            shape = tuple(tensor.shape)
            if not shape or shape[-1] is None:
                return None
            self.layouts[key] = self._new_atoms(int(shape[-1]), None, "a model input or a barrier's output")
        return self.layouts[key]

    def _build(self) -> None:
        from keraffe.errors import KeraffeError
        from keraffe.keras_graph import functional_of, walk

        try:
            functional_of(self.model)
        except KeraffeError as error:
            raise PruningError(str(error)) from None
        known = {layer.name for layer in _all_layers(self.model)}
        unknown = sorted(set(self._exclude) - known)
        if unknown:
            raise PruningError(f"`exclude` names layers the model does not have: {unknown}")
        for tensor in self.model.inputs:
            self.layout(tensor)
        for event in walk(self.model):
            if event.kind == "enter":
                for outer, inner_input in zip(event.call.inputs, event.graph.inputs):
                    self._alias(inner_input, outer)
            elif event.kind == "leave":
                for outer, inner_output in zip(event.call.outputs, event.graph.outputs):
                    self._alias(outer, inner_output)
            else:
                self._visit(event.call)
        for tensor in self.model.outputs:
            self._protect(self.layout(tensor), "it reaches a model output")

    def _alias(self, target, source) -> None:
        self.aliases[id(target)] = id(source)
        layout = self.layout(source)
        if id(target) in self.layouts and layout is not None:
            self._union(self.layouts[id(target)], layout)
        elif layout is not None:
            self.layouts[id(target)] = layout

    def _visit(self, call) -> None:
        operation = call.operation
        kind, reason = classify(operation, call)
        self.layers.setdefault(operation.name, operation)
        inputs = list(call.inputs)
        outputs = list(call.outputs)
        in_layouts = [self.layout(t) for t in inputs]
        if kind != BARRIER and (not inputs or any(layout is None for layout in in_layouts[:1])):
            kind, reason = BARRIER, "no static channel axis"
        out_layouts = None
        if kind != BARRIER:
            out_layouts, reason = getattr(self, f"_rule_{kind}")(operation, inputs, in_layouts, outputs)
            if out_layouts is None:
                kind = BARRIER
        if kind == BARRIER:
            self.barriers.setdefault(operation.name, reason)
            for layout in in_layouts:
                self._protect(layout, f"it enters {operation.name} ({reason})")
            out_layouts = [self.layout(t) for t in outputs]
        else:
            for tensor, layout in zip(outputs, out_layouts):
                self.layouts[id(tensor)] = layout
        if operation.name in self._exclude:  # its own channels stay; a source's inputs may still shrink
            for layout in out_layouts if kind == SOURCE else in_layouts + out_layouts:
                self._protect(layout, f"{operation.name} is excluded")
        self.records.append(NodeRecord(operation, call, kind, reason, inputs, outputs, in_layouts, out_layouts))

    def _share_inputs(self, operation, layout) -> None:
        """A layer called more than once slices its weights once: its inputs must agree channel by channel."""
        first = self._first_inputs.setdefault(id(operation), layout)
        if first is not layout and len(first) == len(layout):
            self._union(first, layout)

    def _rule_source(self, operation, inputs, in_layouts, outputs):
        if len(inputs) != 1 or len(outputs) != 1:
            return None, "more than one input or output"
        self._share_inputs(operation, in_layouts[0])
        if operation.name not in self.source_atoms:
            count = int(outputs[0].shape[-1])
            self.source_atoms[operation.name] = self._new_atoms(count, operation.name)
            if not elementwise_activation(operation):
                self._protect(self.source_atoms[operation.name],
                              f"{operation.name}'s activation mixes its output channels")
        return [self.source_atoms[operation.name]], ""

    def _rule_channelwise(self, operation, inputs, in_layouts, outputs):
        if len(outputs) != 1 or tuple(outputs[0].shape)[-1:] != tuple(inputs[0].shape)[-1:]:
            return None, "changes the channel count"
        if operation.weights:
            self._share_inputs(operation, in_layouts[0])
        for extra in in_layouts[1:]:
            self._protect(extra, f"it is a side input of {operation.name}")
        return [in_layouts[0]], ""

    def _rule_merge(self, operation, inputs, in_layouts, outputs):
        if len(outputs) != 1:
            return None, "more than one output"
        width = outputs[0].shape[-1]
        full = [layout for t, layout in zip(inputs, in_layouts) if layout is not None and t.shape[-1] == width]
        if not full or width is None:
            return None, "no input has the output's channels"
        for t, layout in zip(inputs, in_layouts):
            if layout is not None and t.shape[-1] != width:
                self._protect(layout, f"it is broadcast across channels in {operation.name}")
        for layout in full[1:]:
            self._union(full[0], layout)
        return [full[0]], ""

    def _rule_concat(self, operation, inputs, in_layouts, outputs):
        rank = len(outputs[0].shape)
        if operation.axis not in (-1, rank - 1) or any(layout is None for layout in in_layouts):
            return None, f"concatenates along axis {operation.axis}, not the channel axis"
        return [np.concatenate(in_layouts)], ""

    def _rule_reshape(self, operation, inputs, in_layouts, outputs):
        source, target = _static(inputs[0].shape), _static(outputs[0].shape)
        if source is None or target is None or not source:
            return None, "a reshape with unknown sizes"
        if target[-1] == source[-1] and int(np.prod(target)) == int(np.prod(source)):
            return [in_layouts[0]], ""
        if len(target) == 1 and target[0] == int(np.prod(source)):
            return [np.tile(in_layouts[0], int(np.prod(source[:-1])))], ""
        return None, f"reshapes {source} to {target}, moving the channel axis"

    # --- groups -------------------------------------------------------------
    def _groups(self) -> list[ChannelGroup]:
        roots = self.roots
        members: dict[int, list[tuple[str, int]]] = defaultdict(list)
        order = {name: i for i, name in enumerate(self.source_atoms)}
        for name, atoms in self.source_atoms.items():
            for index, atom in enumerate(atoms.tolist()):
                members[int(roots[atom])].append((name, index))
        protected_roots: dict[int, str] = {}
        for atom, reason in self._protected.items():
            protected_roots.setdefault(int(roots[atom]), reason)
        by_sources: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for root, owned in members.items():
            sources = tuple(sorted({name for name, _ in owned}, key=order.get))
            by_sources[sources].append(root)
        groups = []
        for sources, channel_roots in sorted(by_sources.items(), key=lambda item: order[item[0][0]]):
            channel_roots.sort(key=lambda r: min(order[n] * 1_000_000 + i for n, i in members[r]))
            filters = {name: np.full(len(channel_roots), -1, dtype=np.int64) for name in sources}
            for position, root in enumerate(channel_roots):
                for name, index in members[root]:
                    if filters[name][position] < 0:
                        filters[name][position] = index
            prunable = np.array([root not in protected_roots for root in channel_roots], dtype=bool)
            reasons = [protected_roots[r] for r in channel_roots if r in protected_roots]
            groups.append(ChannelGroup(sources[0], sources, np.array(channel_roots, dtype=np.int64), filters,
                                       prunable, reasons[0] if reasons else ""))
        return groups

    def group_of(self, layer_name: str) -> ChannelGroup | None:
        for group in self.groups:
            if layer_name in group.sources:
                return group
        return None

    def alive(self, layout: np.ndarray | None, removed_roots: set | np.ndarray) -> np.ndarray | None:
        """Which positions of a layout survive when the channels ``removed_roots`` go."""
        if layout is None:
            return None
        removed = np.asarray(sorted(removed_roots), dtype=np.int64)
        return ~np.isin(self.roots[layout], removed)


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers") and layer is not model:
            yield from _all_layers(layer)
