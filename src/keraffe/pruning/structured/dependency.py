"""Which channels of a Keras model must be pruned together, read from its graph.

Every channel a layer creates (a Conv2D filter, a Dense unit, an LSTM unit)
is an *atom*. Every tensor carries a *layout*: for each position of its last
(channel) axis, the atom that lives there. Layers move layouts along, as the
rules in :mod:`.rules` say: per-channel layers keep them, Concatenate joins
them (index offsets) and a channel split cuts them into pieces, Flatten tiles
them (Keras flattens NHWC, so channel c sits at every position p with
p % C == c: a strided mapping), and element-wise merges (Add, Multiply, ...
the squeeze-excite broadcast included) *couple* the atoms at equal positions:
those must go together. Coupled atoms form one channel (a union-find
component); channels whose atoms come from the same set of layers (and the
same pieces of every split) form a group, the unit a ratio applies to.

Composite layers (a user's or keras_hub's block built from other layers and
keras.ops calls) are looked inside: their ``call`` is traced into a graph
(:func:`keraffe.keras_graph.trace`) and its layers join the channel graph as
if the model had been written flat; ``inlined`` keeps each traced graph, so
the pruned model is rebuilt from the same graph, flat.

Layers this module does not know, or knows but cannot cut along the channel
axis (LayerNormalization, a softmax over channels, grouped convolutions,
channels_first data, a block whose call cannot be traced), are *barriers*:
every channel entering them is kept, never guessed, and what leaves them is a
fixed layout; ``barriers`` names each with its reason. So are the model's
outputs and inputs.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import keras
import numpy as np

from keraffe.errors import GraphError, KeraffeError, PruningError
from keraffe.names import unused_name
from keraffe.pruning.structured import sources
from keraffe.pruning.structured.rules import (
    BARRIER,
    CHANNELWISE,
    CONCAT,
    MERGE,
    RESHAPE,
    SHAPE,
    SOURCE,
    SPLIT,
    channel_slice,
    classify,
    elementwise_activation,
    keras_class,
)


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
    name: str = ""        # the operation's name, made unique within the graph


@dataclasses.dataclass
class ChannelGroup:
    """Channels that share one set of source layers; a ratio applies to the group as a whole.

    ``channels`` holds one union-find root per coupled channel. ``filters[layer]``
    gives, for each channel, the unit index of that source layer
    (or -1 where the channel has no unit of that layer). ``prunable[i]`` says
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
    """The channel dependencies of a functional or Sequential Keras model (nested models and composite layers
    inlined).

    ``barriers`` maps each layer the planner left whole to the reason;
    ``inlined`` maps (id(layer), call index) of every composite layer call it
    looked inside to the traced graph.
    """

    def __init__(self, model, exclude=()):
        self.model = model
        self.records: list[NodeRecord] = []
        self.layouts: dict[int, np.ndarray] = {}
        self.aliases: dict[int, int] = {}  # id(tensor inside a nested model) -> id(tensor outside), and back
        self._parent: list[int] = []
        self._protected: dict[int, str] = {}
        self._tags: dict[int, set] = defaultdict(set)  # atom -> (split, piece) pairs it went through
        self.source_atoms: dict[str, np.ndarray] = {}
        self.barriers: dict[str, str] = {}
        self.layers: dict[str, object] = {}
        self.inlined: dict[tuple[int, int], object] = {}
        self._names: dict[int, str] = {}
        self._untraceable: dict[int, str] = {}
        self._first_inputs: dict[int, np.ndarray] = {}
        self._current_call = None
        self._inside: list[str] = []  # the composite layers whose traced call is being walked
        self._exclude = set(exclude)
        self._build()
        self.roots = self._all_roots()
        self.groups = self._groups()

    # --- atoms and coupling -------------------------------------------------
    def _new_atoms(self, count: int, owner: str | None, reason: str = "") -> np.ndarray:
        start = len(self._parent)
        self._parent.extend(range(start, start + count))
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

    def protected_roots(self) -> dict[int, str]:
        """Every channel that must stay (by union-find root), with the first reason found."""
        found: dict[int, str] = {}
        for atom, reason in self._protected.items():
            found.setdefault(int(self.roots[atom]), reason)
        return found

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

    def name_of(self, operation) -> str:
        """The operation's name, or, where another operation of the graph has it already, a unique variant."""
        key = id(operation)
        if key not in self._names:
            self._names[key] = unused_name(operation.name, set(self._names.values()))
        return self._names[key]

    def _expandable(self, call) -> bool:
        """Whether to look inside a call: a composite layer (not Keras' or keraffe's own) whose call traces.

        A composite layer that holds weights of its own, outside the layers its
        call uses, is not inlined: a flat rebuild would lose them.
        """
        from keraffe.keras_graph import is_model, trace

        operation = call.operation
        module = type(operation).__module__
        if (not isinstance(operation, keras.layers.Layer) or is_model(operation) or module.startswith("keras.")
                or module.startswith("keraffe.")):
            return False
        try:
            graph = trace(call)
        except GraphError as error:
            self._untraceable[id(operation)] = f"its call cannot be traced ({str(error).split(': ', 1)[-1]})"
            return False
        inner = {id(v) for layer in graph.layers for v in layer.weights}
        own = [v.name for v in operation.weights if id(v) not in inner]
        if own:
            self._untraceable[id(operation)] = f"it holds weights of its own ({', '.join(own[:3])})"
            return False
        return True

    def _build(self) -> None:
        from keraffe.keras_graph import functional_of, is_model, walk

        try:
            functional_of(self.model)
        except KeraffeError as error:
            raise PruningError(str(error)) from None
        for tensor in self.model.inputs:
            self.layout(tensor)
        for event in walk(self.model, self._expandable):
            if event.kind == "enter":
                if not is_model(event.operation):
                    self.inlined[(id(event.operation), event.call.index)] = event.graph
                    self._inside.append(self.name_of(event.operation))
                for outer, inner_input in zip(event.call.inputs, event.graph.inputs):
                    self._alias(inner_input, outer)
            elif event.kind == "leave":
                if not is_model(event.operation):
                    self._inside.pop()
                for outer, inner_output in zip(event.call.outputs, event.graph.outputs):
                    self._alias(outer, inner_output)
            else:
                self._visit(event.call)
        unknown = sorted(self._exclude - {layer.name for layer in _all_layers(self.model)} - set(self.layers))
        if unknown:
            raise PruningError(f"`exclude` names layers the model does not have: {unknown}")
        for record in self.records:
            if record.name in self._exclude:  # its own channels stay; a source's inputs may still shrink
                for layout in (record.out_layouts if record.kind == SOURCE else
                               record.in_layouts + record.out_layouts):
                    self._protect(layout, f"{record.name} is excluded")
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
        name = self.name_of(operation)
        kind, reason = classify(operation, call)
        if id(operation) in self._untraceable:
            reason = f"{reason} ({self._untraceable[id(operation)]})"
        if isinstance(operation, keras.layers.Layer):
            self.layers.setdefault(name, operation)
        inputs = list(call.inputs)
        outputs = list(call.outputs)
        in_layouts = [self.layout(t) for t in inputs]
        if keras_class(operation, ("Embedding",)):
            in_layouts = [None] * len(inputs)  # token ids, not channels
        elif kind not in (BARRIER, SHAPE) and (not inputs or in_layouts[0] is None):
            kind, reason = BARRIER, "no static channel axis"
        out_layouts = None
        self._current_call = call
        if kind != BARRIER:
            out_layouts, reason = getattr(self, f"_rule_{kind}")(operation, name, inputs, in_layouts, outputs)
            if out_layouts is None:
                kind = BARRIER
        if kind == BARRIER:
            where = name
            if self._inside and not isinstance(operation, keras.layers.Layer):  # an op has no name of its own
                where, reason = self._inside[-1], f"{reason} (in its call)"
            self.barriers.setdefault(where, reason)
            for layout in in_layouts:
                self._protect(layout, f"it enters {where} ({reason})")
            out_layouts = [self.layout(t) for t in outputs]
        else:
            for tensor, layout in zip(outputs, out_layouts):
                if layout is not None:
                    self.layouts[id(tensor)] = layout
        self.records.append(NodeRecord(operation, call, kind, reason, inputs, outputs, in_layouts, out_layouts, name))

    def _share_inputs(self, operation, layout) -> None:
        """A layer called more than once slices its weights once: its inputs must agree channel by channel."""
        if layout is None:
            return
        first = self._first_inputs.setdefault(id(operation), layout)
        if first is not layout and len(first) == len(layout):
            self._union(first, layout)

    def _rule_source(self, operation, name, inputs, in_layouts, outputs):
        units = sources.unit_count(operation)
        if name not in self.source_atoms:
            self.source_atoms[name] = self._new_atoms(units, name)
            inner = getattr(operation, "layer", operation)  # TimeDistributed's activation is its layer's
            if not elementwise_activation(inner):
                self._protect(self.source_atoms[name], f"{name}'s activation mixes its output channels")
        atoms = self.source_atoms[name]
        self._share_inputs(operation, in_layouts[0])
        if keras_class(operation, ("Bidirectional",)):
            return self._bidirectional(operation, name, atoms, in_layouts, outputs)
        if sources.recurrent_cell(operation) is not None:
            for extra in in_layouts[1:]:  # initial states: one entry per unit
                if extra is not None and len(extra) == len(atoms):
                    self._union(extra, atoms)
                else:
                    self._protect(extra, f"it is a side input of {name}")
            return [atoms if t.shape[-1] == len(atoms) else None for t in outputs], ""
        if len(inputs) != 1 or len(outputs) != 1:
            return None, "more than one input or output"
        return [atoms], ""

    def _bidirectional(self, operation, name, atoms, in_layouts, outputs):
        """Unit j of both directions is one channel (Keras keeps the directions equally wide)."""
        for extra in in_layouts[1:]:
            self._protect(extra, f"it is an initial state of {name}")
        merged = np.concatenate([atoms, atoms]) if operation.merge_mode == "concat" else atoms
        return [merged] + [atoms] * (len(outputs) - 1), ""

    def _rule_channelwise(self, operation, name, inputs, in_layouts, outputs):
        if len(outputs) != 1 or tuple(outputs[0].shape)[-1:] != tuple(inputs[0].shape)[-1:]:
            return None, "changes the channel count"
        if getattr(operation, "weights", None):
            self._share_inputs(operation, in_layouts[0])
        for extra in in_layouts[1:]:
            self._protect(extra, f"it is a side input of {name}")
        return [in_layouts[0]], ""

    def _rule_merge(self, operation, name, inputs, in_layouts, outputs):
        if len(outputs) != 1:
            return None, "more than one output"
        width = outputs[0].shape[-1]
        constants = _per_channel_constants(self._current_call)
        if constants:
            return None, f"it combines its input with a constant of shape {constants}"
        full = [layout for t, layout in zip(inputs, in_layouts) if layout is not None and t.shape[-1] == width]
        if not full or width is None:
            return None, "no input has the output's channels"
        for t, layout in zip(inputs, in_layouts):
            if layout is not None and t.shape[-1] != width:
                self._protect(layout, f"it is broadcast across channels in {name}")
        for layout in full[1:]:
            self._union(full[0], layout)
        return [full[0]], ""

    def _rule_concat(self, operation, name, inputs, in_layouts, outputs):
        rank = len(outputs[0].shape)
        if operation.axis not in (-1, rank - 1) or any(layout is None for layout in in_layouts):
            return None, f"concatenates along axis {operation.axis}, not the channel axis"
        return [np.concatenate(in_layouts)], ""

    def _rule_split(self, operation, name, inputs, in_layouts, outputs):
        """A channel split hands each output a piece of the layout; each piece is pruned by the ratio alone."""
        layout, rank = in_layouts[0], len(inputs[0].shape)
        if keras_class(operation, ("GetItem",)):
            pieces = [layout[channel_slice(self._current_call)]]
        elif operation.axis % rank != rank - 1:
            return [layout] * len(outputs), ""  # a split of another axis: every piece keeps every channel
        else:
            offsets = np.cumsum([0] + [int(t.shape[-1]) for t in outputs])
            pieces = [layout[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        if len(pieces) > 1 or len(pieces[0]) < len(layout):
            for index, piece in enumerate(pieces):
                for atom in piece.tolist():
                    self._tags[atom].add((name, index))
        return pieces, ""

    def _rule_shape(self, operation, name, inputs, in_layouts, outputs):
        return [self.layout(t) for t in outputs], ""

    def _rule_reshape(self, operation, name, inputs, in_layouts, outputs):
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
        tags: dict[int, set] = defaultdict(set)
        for atom, atom_tags in self._tags.items():
            tags[int(roots[atom])] |= atom_tags
        protected_roots = self.protected_roots()
        by_key: dict[tuple, list[int]] = defaultdict(list)
        for root, owned in members.items():
            sources_of = tuple(sorted({name for name, _ in owned}, key=order.get))
            by_key[(sources_of, tuple(sorted(tags[root])))].append(root)
        groups, seen = [], defaultdict(int)
        for (sources_of, _), channel_roots in sorted(by_key.items(), key=lambda item: (order[item[0][0][0]],
                                                                                         item[0][1])):
            channel_roots.sort(key=lambda r: min(order[n] * 1_000_000 + i for n, i in members[r]))
            filters = {name: np.full(len(channel_roots), -1, dtype=np.int64) for name in sources_of}
            for position, root in enumerate(channel_roots):
                for name, index in members[root]:
                    if filters[name][position] < 0:
                        filters[name][position] = index
            prunable = np.array([root not in protected_roots for root in channel_roots], dtype=bool)
            reasons = [protected_roots[r] for r in channel_roots if r in protected_roots]
            label = sources_of[0] if not seen[sources_of[0]] else f"{sources_of[0]}:{seen[sources_of[0]]}"
            seen[sources_of[0]] += 1
            groups.append(ChannelGroup(label, sources_of, np.array(channel_roots, dtype=np.int64), filters,
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


def _per_channel_constants(call) -> tuple | None:
    """The shape of a non-scalar constant a merge was called with (it cannot be cut along channels), if any."""
    if isinstance(call.operation, keras.layers.Layer):
        return None
    args, kwargs = call.arguments()
    tensors = {id(t) for t in call.inputs}
    for value in keras.tree.flatten((args, kwargs)):
        if id(value) not in tensors and np.ndim(value) > 0 and np.size(value) > 1:
            return tuple(np.shape(value))
    return None


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers") and layer is not model:
            yield from _all_layers(layer)
