"""The state of one Keras -> Caffe conversion: the net being written, blobs, layouts, the report.

Handlers (one per Keras layer class, in the family modules of this package)
receive this context, the Keras operation and its call call. They read each
input as a Caffe blob in the layout they need, add Caffe layers (named after
the Keras layer, so the weights carry over by name), and record the Caffe
blob that holds each Keras output.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.convert.keras_to_caffe.targets import Target
from keraffe.convert.tensor_map import MapEntry, TensorMap
from keraffe.errors import ConversionError
from keraffe.layout import NHWC, Layout, caffe_permute_order, default_layout, identity
from keraffe.names import unused_name


@dataclasses.dataclass
class CaffeValue:
    """A Caffe blob holding a Keras tensor's values, and how their axes relate."""

    blob: str
    layout: Layout
    #: The blob's Caffe shape, batch axis included.
    shape: tuple[int, ...]
    #: True when every value is >= 0 (after ReLU and the like), which lets
    #: zero padding before MAX pooling fold into Caffe's pooling exactly.
    non_negative: bool = False


@dataclasses.dataclass
class Legalisation:
    """A Keras layer that did not become exactly one Caffe layer of the same meaning."""

    keras_layer: str
    keras_class: str
    caffe_layers: list[str]
    note: str


class KerasToCaffeContext:
    def __init__(self, target: Target, batch_size: int = 1):
        self.target = target
        self.batch_size = batch_size
        self.net = pb.NetParameter()
        self.weights: dict[str, list[np.ndarray]] = {}
        self.values: dict[int, tuple[object, CaffeValue]] = {}
        self.map = TensorMap()
        self.report: list[Legalisation] = []
        #: Each blob's Caffe shape, and the blobs whose values are all >= 0 (what passes need to know).
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.non_negative: set[str] = set()
        #: The Keras operation whose handler added each Caffe layer (passes report in its name).
        self.origin: dict[str, object] = {}
        #: Draft zero padding layers by their top blob.
        self.padding_layers: dict[str, pb.LayerParameter] = {}
        #: The operation whose handler runs now.
        self.operation = None
        #: The composite layers whose traced calls are being converted, innermost last, as Caffe name prefixes.
        self.scope: list[str] = []
        self._names: set[str] = set()
        self._converted: dict[tuple[str, Layout], str] = {}

    # ------------------------------------------------------------------ names

    def unique(self, wanted: str) -> str:
        name = unused_name(wanted, self._names)
        self._names.add(name)
        return name

    def layer_name(self, operation, call) -> str:
        """The Caffe name for a Keras layer's call: its name, suffixed for a shared layer's later calls.

        Inside an inlined composite layer the name carries the composite's
        (:func:`scoped_name`), so the blocks of a backbone stay apart.
        """
        name = operation.name if call.index == 0 else f"{operation.name}_{call.index}"
        return self.unique(self.scoped(name))

    def scoped(self, name: str) -> str:
        """``name`` inside the composite layers being inlined now (see :func:`scoped_name`)."""
        return scoped_name(self.scope, name)

    # ------------------------------------------------------------------ layers

    def add(self, type_name: str, name: str, bottoms, tops=None, weights=None) -> pb.LayerParameter:
        if type_name not in self.target.layer_types:
            from keraffe.convert.keras_to_caffe.targets import TARGETS

            others = [f"'{t.name}'" for t in TARGETS.values() if type_name in t.layer_types]
            has = ""
            if others:
                has = f" (target {others[0]} has it)" if len(others) == 1 else f" (targets {', '.join(others)} have it)"
            raise ConversionError(
                f"a {type_name} layer is needed for '{name}', and target '{self.target.name}' has no {type_name}{has}"
            )
        return self.add_draft(type_name, name, bottoms, tops, weights)

    def add_draft(self, type_name: str, name: str, bottoms, tops=None, weights=None) -> pb.LayerParameter:
        """A layer of any type, the target unchecked: a draft layer (``keraffe.*``) that a pass rewrites."""
        layer = self.net.layer.add(name=name, type=type_name)
        layer.bottom.extend(bottoms)
        layer.top.extend(tops if tops is not None else [name])
        if weights is not None:
            self.weights[name] = [np.ascontiguousarray(w, dtype=np.float32) for w in weights]
        if self.operation is not None:
            self.origin[name] = self.operation
        return layer

    def note(self, operation, caffe_layers: list[str], note: str) -> None:
        self.report.append(Legalisation(self.scoped(operation.name), type(operation).__name__, caffe_layers, note))

    def note_layer(self, layer_name: str, caffe_layers: list[str], note: str) -> None:
        """A note for the Keras layer whose handler added Caffe layer ``layer_name`` (passes note this way)."""
        self.note(self.origin[layer_name], caffe_layers, note)

    @contextlib.contextmanager
    def rewriting(self):
        """For a pass: the net's layers as copies, the net emptied; the pass adds new layers or keeps each in turn."""
        layers = []
        for layer in self.net.layer:
            copy = pb.LayerParameter()
            copy.CopyFrom(layer)
            layers.append(copy)
        del self.net.layer[:]
        saved = self.operation
        try:
            yield layers
        finally:
            self.operation = saved

    def keep(self, layer: pb.LayerParameter) -> None:
        """Put a layer back, unchanged or changed in place, where a pass reached it."""
        self.net.layer.add().CopyFrom(layer)

    def caffe_types(self, first_layer_index: int) -> list[str]:
        return [layer.type for layer in self.net.layer[first_layer_index:]]

    # ------------------------------------------------------------------ values

    def caffe_shape(self, keras_tensor, layout: Layout) -> tuple[int, ...]:
        """The Caffe shape of a Keras tensor held in ``layout`` (an open batch axis is the export's batch size)."""
        return layout.caffe_shape(tuple(self.batch_size if d is None else int(d) for d in keras_tensor.shape))

    def value(self, keras_tensor) -> CaffeValue:
        """The value of a Keras tensor (zero padding may still be a draft that a pass folds or writes out)."""
        try:
            return self.values[id(keras_tensor)][1]
        except KeyError:
            raise ConversionError(f"tensor {keras_tensor.name} is used before it is computed") from None

    def set_value(self, keras_tensor, value: CaffeValue) -> None:
        self.values[id(keras_tensor)] = (keras_tensor, value)
        self.shapes[value.blob] = tuple(value.shape)
        if value.non_negative:
            self.non_negative.add(value.blob)

    # ------------------------------------------------------------------ zero padding

    #: The draft layer type of ZeroPadding2D (and of Cropping2D after it): Caffe 1.0 has no padding layer,
    #: so :mod:`keraffe.passes.absorb_zero_padding` folds it into the convolutions and poolings that read it
    #: and writes it out exactly for any other reader.
    ZERO_PADDING = "keraffe.ZeroPadding"

    def is_padding(self, value: CaffeValue) -> bool:
        """Whether the value is zero padding that no Caffe layer has applied yet."""
        return value.blob in self.padding_layers

    def zero_pad(self, name: str, value: CaffeValue, pads, shape, fill: float = 0.0) -> CaffeValue:
        """A draft layer padding an NCHW blob with zeros, ((top, bottom), (left, right)); negative ones crop.

        ``fill`` -inf pads with minus infinity (what keras_hub writes before
        a MAX pooling): only a MAX pooling can take that padding, as its own.
        """
        top = self.unique(f"{name}/zero_padded" if fill == 0.0 else f"{name}/padded")
        layer = self.add_draft(self.ZERO_PADDING, top, [value.blob], [top])
        param = layer.pad_param
        (param.pad_u, param.pad_d), (param.pad_l, param.pad_r) = pads
        if fill != 0.0:
            param.pad_value = fill
        self.padding_layers[top] = pb.LayerParameter()
        self.padding_layers[top].CopyFrom(layer)
        self.shapes[top] = tuple(shape)
        return CaffeValue(top, value.layout, tuple(shape), value.non_negative)

    def emit(self, operation, call, index: int, keras_tensor, blob: str, layout: Layout | None = None,
             producer: str | None = None, non_negative: bool = False, note: str = "") -> CaffeValue:
        """Record that Caffe blob ``blob`` holds output ``index`` of a Keras layer call.

        Inside an inlined composite layer no tensor of the model holds the
        value (the traced graph is not the model's), so the map records the
        blob without a Keras layer; the composite's own outputs are mapped to
        its call when the walk leaves it.
        """
        layout = layout or default_layout(len(keras_tensor.shape))
        value = CaffeValue(blob, layout, self.caffe_shape(keras_tensor, layout), non_negative)
        self.set_value(keras_tensor, value)
        keras_layer = None if self.scope else operation.name
        self.map.add(MapEntry(blob, blob, producer or blob, keras_layer, index, call.index, layout, note))
        return value

    def alias(self, keras_tensor, value: CaffeValue) -> None:
        """A Keras output that holds exactly an existing blob (identity layers at inference)."""
        self.set_value(keras_tensor, value)

    def blob_in(self, value: CaffeValue, layout: Layout, hint: str) -> str:
        """The blob of ``value`` moved into ``layout`` (a reshape when only size-1 axes move)."""
        if value.layout == layout:
            return value.blob
        key = (value.blob, layout)
        if key in self._converted:
            return self._converted[key]
        name = self.unique(f"{hint}/to_{_tag(layout)}")
        if layout.flattened_from is not None:
            # Into Caffe's (C, H, W) flattening of an NHWC tensor: the values must be moved, never just reshaped.
            if value.layout != identity(2):
                raise ConversionError(f"cannot move blob {value.blob} into layout {layout.describe()}")
            c, h, w = layout.flattened_from
            image = self.unique(f"{name}/image")
            reshape = self.add("Reshape", image, [value.blob])
            reshape.reshape_param.shape.dim.extend([0, h, w, c])
            nchw = self.unique(f"{name}/nchw")
            self._permute(nchw, image, caffe_permute_order(identity(4), NHWC), hint, (value.shape[0], h, w, c))
            flat = self.add("Flatten", name, [nchw])
            result = flat.top[0]
        elif value.layout.flattened_from is not None:
            if layout != identity(2):
                raise ConversionError(f"cannot move flattened blob {value.blob} into layout {layout.describe()}")
            c, h, w = value.layout.flattened_from
            image = self.unique(f"{name}/image")
            reshape = self.add("Reshape", image, [value.blob])
            reshape.reshape_param.shape.dim.extend([0, c, h, w])
            self._permute(name, image, caffe_permute_order(NHWC, identity(4)), hint, (value.shape[0], c, h, w))
            flat = self.add("Flatten", self.unique(f"{name}/flat"), [name])
            result = flat.top[0]
        else:
            rank = len(value.shape)
            # Caffe's Permute: top axis j is bottom axis order[j].
            order = caffe_permute_order(value.layout, layout)
            target_shape = tuple(value.shape[a] for a in order)
            if _only_unit_axes_move(value.shape, order):
                reshape = self.add("Reshape", name, [value.blob])
                # 0 keeps the batch axis's size, where the batch axis stays first (a time-major blob moves it).
                reshape.reshape_param.shape.dim.extend((0,) + target_shape[1:] if order[0] == 0 else target_shape)
            else:
                self._permute(name, value.blob, order, hint, value.shape)
            result = name
            self.shapes[result] = target_shape
        self._converted[key] = result
        return result

    def _permute(self, name, bottom, order, hint, shape):
        """Blob ``bottom`` (of ``shape``) transposed into ``name``: Permute, or Slice/Reshape/Concat without it.

        Caffe 1.0 has no Permute, but moving one axis is exact with its own
        layers (:func:`~keraffe.convert.keras_to_caffe.building.move_axis`):
        used where that axis is short enough to cut into single slices.
        """
        from keraffe.convert.keras_to_caffe.building import MOST_PIECES, move_axis

        if "Permute" in self.target.layer_types:
            layer = self.add("Permute", name, [bottom])
            layer.permute_param.order.extend(order)
            return
        moves = _moves(order)
        if all(shape[source_axis] <= MOST_PIECES for source_axis in (axis for axis, _ in moves)):
            start = len(self.net.layer)
            current, current_shape = bottom, list(shape)
            arrangement = list(range(len(shape)))
            for number, (axis, destination) in enumerate(moves):
                source = arrangement.index(axis)
                last = number == len(moves) - 1
                current = move_axis(self, self.unique(f"{name}/move{number}") if not last else name, current,
                                    current_shape, source, destination, top=name if last else None)
                arrangement.insert(destination, arrangement.pop(source))
                current_shape.insert(destination, current_shape.pop(source))
            if self.operation is not None:
                self.note(self.operation, self.caffe_types(start), "a transpose without Permute: "
                          + "; ".join(f"blob axis {axis} cut into its {shape[axis]} slices and concatenated as axis "
                                      f"{destination}" for axis, destination in moves))
            return
        raise ConversionError(
            f"'{hint}' needs its values in Keras' memory order, which takes a transpose (a Permute layer); "
            f"target '{self.target.name}' has none, and doing without it would cut an axis into more than "
            f"{MOST_PIECES} slices. Target 'opencv' has Permute; or keep channels-last Flatten/Reshape directly "
            "before a Dense layer, which converts without a transpose"
        )

    def blob_nchw(self, value: CaffeValue, hint: str) -> str:
        """A rank-4 value as an NCHW image blob (what Caffe's spatial layers read)."""
        if len(value.shape) != 4:
            raise ConversionError(f"'{hint}' needs a 4-axis image tensor, got Caffe shape {value.shape}")
        return self.blob_in(value, NHWC, hint)


def scoped_name(scope, name: str) -> str:
    """A layer's name inside inlined composite layers ``scope`` (outermost first, each a full path).

    It goes under the innermost composite ("stage1/block0" + "conv" ->
    "stage1/block0/conv"), unless it already starts with that composite's own
    name, as keras_hub names its blocks' layers ("block0_conv" ->
    "stage1/block0_conv").
    """
    if not scope:
        return name
    outer = scope[-1]
    parent, _, own = outer.rpartition("/")
    if name.startswith(own):
        return f"{parent}/{name}" if parent else name
    return f"{outer}/{name}"


def _tag(layout: Layout) -> str:
    if layout == NHWC:
        return "nchw"
    if layout.is_identity:
        return "keras_order"
    return "axes" + "".join(str(a) for a in layout.perm)


def _moves(order) -> list[tuple[int, int]]:
    """Permute ``order`` as single-axis moves: (the bottom axis moved, where it goes), applied in turn."""
    arrangement = list(range(len(order)))
    moves = []
    for destination, axis in enumerate(order):
        if arrangement.index(axis) != destination:
            arrangement.insert(destination, arrangement.pop(arrangement.index(axis)))
            moves.append((axis, destination))
    return moves


def _only_unit_axes_move(shape, perm) -> bool:
    kept = [a for a in perm if shape[a] != 1]
    return kept == sorted(kept)
