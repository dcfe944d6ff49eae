"""The state of one Caffe -> Keras conversion: tensors, layouts, names and the tensor map.

Handlers (one per Caffe layer type, in the family modules of this package)
receive this context and a :class:`~keraffe.caffe.net.LayerNode`; they read
their inputs in the layout they need, create standard Keras layers where one is
exact (keraffe's own layers elsewhere), set the Caffe weights, and emit one
Keras tensor per Caffe top. Everything about names and layouts goes through
here, so handlers stay a few lines each.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import keras
import numpy as np

from keraffe.caffe.net import CaffeNet, LayerNode, Tensor
from keraffe.convert.tensor_map import MapEntry, TensorMap
from keraffe.errors import ConversionError
from keraffe.host_memory import initial_value
from keraffe.keras_graph import produced_by
from keraffe.layout import NHWC, Layout, default_layout, identity, relative_perm
from keraffe.names import unused_name


@dataclasses.dataclass
class KerasValue:
    """A Keras tensor and how its axes relate to the Caffe blob it holds."""

    tensor: object
    layout: Layout
    #: The region proposals whose rows this tensor's rows follow (keraffe.layout.PROPOSALS), if any.
    rows_of: Tensor | None = None


def sanitize(name: str) -> str:
    """A Keras-legal layer name (Keras forbids '/'); other odd characters become '_' too."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
    return cleaned or "blob"


class _GivenValue(keras.initializers.Initializer):
    """Initialise a variable with an array already in Keras layout (used once, at build time).

    The variable takes one copy of the array (keraffe.host_memory), and the
    initialiser lets go of the array once asked, so it holds nothing after.
    """

    def __init__(self, value: np.ndarray):
        self.value = value

    def __call__(self, shape, dtype=None):
        value, self.value = self.value, None
        return initial_value(value, dtype)


class CaffeToKerasContext:
    """One conversion's state.

    ``release_weights``: the caller hands the net's weight arrays over; each is
    dropped from the net as soon as its layer has taken it, so a conversion
    holds about one copy of the weights beyond the Keras model's own (VGG-16's
    fc6 alone is 411 MB). The net's weights are gone afterwards.
    """

    def __init__(self, net: CaffeNet, release_weights: bool = False):
        self.net = net
        self.release_weights = release_weights
        self._released: set[int] = set()  # ids of the nodes whose weights were handed over
        self.values: dict[Tensor, KerasValue] = {}
        self.map = TensorMap()
        self._used_names: set[str] = set()
        self._converted: dict[tuple[Tensor, Layout], object] = {}

    # ------------------------------------------------------------------ names

    def unique_name(self, wanted: str) -> str:
        candidate = unused_name(sanitize(wanted), self._used_names, first_suffix=2)
        self._used_names.add(candidate)
        return candidate

    def reserve_output_names(self, tensors) -> None:
        """Model outputs are named after their blobs, whichever version of the blob they are."""
        self._reserved = {tensor: self.unique_name(tensor.blob) for tensor in tensors}

    def blob_name(self, node: LayerNode, index: int = 0) -> str:
        """The Keras name for a Caffe top.

        A blob's first value takes the blob's name (which is usually its layer's
        name); a value an in-place layer rewrites takes that Caffe layer's name
        (relu1, bn_conv1, ...). So Keras names are unique, say where they came
        from, and convert back to the same Caffe layer names. Model outputs keep
        their blob names.
        """
        tensor = node.outputs[index]
        reserved = getattr(self, "_reserved", {})
        if tensor in reserved:
            return reserved[tensor]
        if tensor.version == 0:
            return self.unique_name(tensor.blob)
        suffix = f"_{index}" if len(node.outputs) > 1 else ""
        return self.unique_name(node.name + suffix)

    def helper_name(self, node: LayerNode, role: str) -> str:
        """Name for an extra Keras layer a handler needs (padding, flattening, layout moves)."""
        return self.unique_name(f"{node.name}_{role}")

    # ------------------------------------------------------------------ shapes and weights

    def in_shape(self, node: LayerNode, index: int = 0) -> tuple[int, ...]:
        return self.net.shapes[node.inputs[index]]

    def out_shape(self, node: LayerNode, index: int = 0) -> tuple[int, ...]:
        return self.net.shapes[node.outputs[index]]

    def weights(self, node: LayerNode) -> list[np.ndarray] | None:
        """The node's Caffe weights; with ``release_weights``, handed over once (the net keeps none)."""
        weights = node.weights
        if self.release_weights:
            if id(node) in self._released:
                raise RuntimeError(f"handler for layer '{node.name}' ({node.type}) asked for its released weights "
                                   "twice; it must keep the first answer")
            if weights is not None:
                self._released.add(id(node))
            node.weights = None
        return weights

    def call_with_weights(self, node: LayerNode, layer: keras.layers.Layer, x, arrays: list[np.ndarray] | None):
        """Call a fresh layer on ``x``, its variables created from ``arrays`` (None: Keras' own initialisers).

        Creating each variable from its final value costs one copy of it. Keras'
        initialiser followed by ``set_weights`` costs the random draw, its
        temporaries and the assigned tensor besides: three times a layer's
        weights at the peak. The layer's configured initialisers are untouched.
        """
        if arrays is None:
            return layer(x)
        pending = [np.asarray(a, dtype=np.float32) for a in arrays]
        given = [tuple(a.shape) for a in pending]
        created = []
        add_weight = layer.add_weight
        signature = inspect.signature(add_weight)

        def add_given_weight(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            if pending:
                bound.arguments["initializer"] = _GivenValue(pending.pop(0))
                created.append(tuple(bound.arguments.get("shape") or ()))
            return add_weight(*bound.args, **bound.kwargs)

        object.__setattr__(layer, "add_weight", add_given_weight)
        try:
            y = layer(x)
        finally:
            object.__delattr__(layer, "add_weight")
        expected = [tuple(w.shape) for w in layer.weights]
        if expected != given or created != given:
            raise ConversionError(
                f"layer '{node.name}' ({node.type}): converted weights have shapes {given}, "
                f"Keras layer '{layer.name}' expects {expected}"
            )
        return y

    def set_weights(self, node: LayerNode, layer: keras.layers.Layer, arrays: list[np.ndarray] | None) -> None:
        """Load converted weights into a built Keras layer (skipped when the net has no weights)."""
        if arrays is None:
            return
        expected = [tuple(w.shape) for w in layer.weights]
        given = [tuple(np.shape(a)) for a in arrays]
        if expected != given:
            raise ConversionError(
                f"layer '{node.name}' ({node.type}): converted weights have shapes {given}, "
                f"Keras layer '{layer.name}' expects {expected}"
            )
        layer.set_weights([np.asarray(a, dtype=np.float32) for a in arrays])

    # ------------------------------------------------------------------ values

    def value(self, node: LayerNode, index: int = 0) -> KerasValue:
        return self.values[node.inputs[index]]

    def input(self, node: LayerNode, index: int = 0, layout: Layout | None = None):
        """The Keras tensor for a bottom, moved into ``layout`` if given."""
        tensor = node.inputs[index]
        current = self.values[tensor]
        if layout is None or layout == current.layout:
            return current.tensor
        return self.convert_layout(tensor, layout)

    def input_nhwc(self, node: LayerNode, index: int = 0):
        """A rank-4 bottom as an NHWC image tensor, which every spatial Keras layer needs."""
        shape = self.in_shape(node, index)
        if len(shape) != 4:
            raise ConversionError(
                f"layer '{node.name}' ({node.type}) needs a 4-axis (N, C, H, W) input, got {shape}"
            )
        return self.input(node, index, NHWC)

    def convert_layout(self, tensor: Tensor, target: Layout):
        key = (tensor, target)
        if key in self._converted:
            return self._converted[key]
        current = self.values[tensor]
        base = sanitize(str(tensor)).replace("#", "_")
        if current.layout.flattened_from is not None:
            if target != identity(2):
                raise ConversionError(f"cannot move flattened tensor {tensor} into layout {target.describe()}")
            c, h, w = current.layout.flattened_from
            image = keras.layers.Reshape((h, w, c), name=self.unique_name(f"{base}_unflatten"))(current.tensor)
            moved = keras.layers.Permute((3, 1, 2), name=self.unique_name(f"{base}_to_chw"))(image)
            result = keras.layers.Flatten(name=self.unique_name(f"{base}_caffe_order"))(moved)
        else:
            perm = relative_perm(current.layout, target)
            if perm[0] != 0:
                raise ConversionError(f"cannot move the batch axis of {tensor} (layout {target.describe()})")
            keras_shape = current.layout.keras_shape(self.net.shapes[tensor])
            if _only_unit_axes_move(keras_shape, perm):
                target_shape = target.keras_shape(self.net.shapes[tensor])[1:]
                result = keras.layers.Reshape(target_shape, name=self.unique_name(f"{base}_to_{_layout_tag(target)}"))(
                    current.tensor)
            else:
                result = keras.layers.Permute(tuple(p for p in perm[1:]),
                                              name=self.unique_name(f"{base}_to_{_layout_tag(target)}"))(current.tensor)
        self._converted[key] = result
        return result

    def emit(self, node: LayerNode, index: int, tensor, layout: Layout | None = None, note: str = "",
             rows_of: Tensor | None = None) -> None:
        """Record a Keras tensor as Caffe top ``index`` of ``node``.

        A top computed from region proposals keeps their rows (``rows_of``, taken
        from the bottoms unless given); a proposal layer names its own top.
        """
        caffe_tensor = node.outputs[index]
        layout = layout or default_layout(len(self.net.shapes[caffe_tensor]))
        rows_of = rows_of or self._rows_of(node)
        self.values[caffe_tensor] = KerasValue(tensor, layout, rows_of)
        operation, call_index, output_index = produced_by(tensor)
        self.map.add(MapEntry(str(caffe_tensor), caffe_tensor.blob, node.name, operation.name, output_index,
                              call_index, layout, note, str(rows_of) if rows_of else ""))

    def _rows_of(self, node: LayerNode) -> Tensor | None:
        sources = {self.values[t].rows_of for t in node.inputs if t in self.values} - {None}
        if len(sources) > 1:
            raise ConversionError(f"layer '{node.name}' ({node.type}) combines rows of different region proposals "
                                  f"({', '.join(sorted(str(s) for s in sources))}); their numbers of rows differ")
        return next(iter(sources), None)

    def alias(self, node: LayerNode, index: int, value: KerasValue, note: str) -> None:
        """A top that holds exactly an existing tensor (Split, identity layers at inference)."""
        caffe_tensor = node.outputs[index]
        if value.rows_of is None:
            value = dataclasses.replace(value, rows_of=self._rows_of(node))
        self.values[caffe_tensor] = value
        self.map.add(MapEntry(str(caffe_tensor), caffe_tensor.blob, node.name, None, 0, 0, value.layout, note,
                              str(value.rows_of) if value.rows_of else ""))

    def fused(self, caffe_tensor: Tensor, layer_name: str, into: str) -> None:
        """Record a Caffe tensor that no Keras tensor holds because a pass fused it away."""
        self.map.add(MapEntry(str(caffe_tensor), caffe_tensor.blob, layer_name, None, 0, 0, None, f"fused into {into}"))


def _layout_tag(layout: Layout) -> str:
    if layout == NHWC:
        return "nhwc"
    if layout.is_identity:
        return "caffe_order"
    return "axes" + "".join(str(a) for a in layout.perm)


def _only_unit_axes_move(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """True when a permutation keeps the relative order of all axes longer than 1 (a pure reshape)."""
    kept = [a for a in perm if shape[a] != 1]
    return kept == sorted(kept)
