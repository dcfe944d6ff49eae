"""Users' own Caffe layers: :func:`register_caffe_layer` teaches keraffe a layer type, or a Python layer.

A plug-in is a function that builds the Keras computation of one Caffe layer
from standard Keras layers (or the user's own, registered serializable), with
an optional shape rule. keraffe calls it in net order, like its own handlers,
with the layer's parameters, its inputs as Keras tensors and its weights as
Caffe stores them. Layout is kept out of the plug-in's way: every 4-axis blob
is an NHWC Keras tensor (Keras' image order), every other blob holds Caffe's
axis order, and the plug-in returns its tops the same way.

docs/caffe_plugins.md shows a complete plug-in.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

from keraffe.caffe.shapes import LayerShapes, has_rule, known_types, python_layer_kind, shape_rule
from keraffe.convert.caffe_to_keras import HANDLERS, caffe_layer, load_handlers
from keraffe.errors import ConversionError, ShapeError
from keraffe.layout import default_layout

#: convert(layer, inputs, weights, name) -> one Keras tensor, or a list with one per top.
Converter = Callable[..., object]
#: output_shapes(layer, bottom_shapes) -> the tops' shapes, in Caffe's axis order.
ShapeFunction = Callable[[object, Sequence[tuple[int, ...]]], Sequence[Sequence[int]]]


def register_caffe_layer(type_name: str | None = None, *, python_layer: str | None = None,
                         output_shapes: ShapeFunction | None = None,
                         weight_shapes: ShapeFunction | None = None) -> Callable[[Converter], Converter]:
    """Decorator: convert Caffe layers of ``type_name``, or Python layers ``python_layer="module.Layer"``.

    The decorated function is called as ``convert(layer, inputs, weights, name)``:

    * ``layer``: the layer's ``LayerParameter`` (keraffe's schema; a Python
      layer's ``python_param.param_str`` is there as written);
    * ``inputs``: one Keras tensor per bottom, 4-axis blobs as NHWC, others in
      Caffe's axis order (axis 0, the batch, first);
    * ``weights``: the layer's blobs as numpy arrays in Caffe's shapes, or None
      when the net is converted without weights;
    * ``name``: a unique name for the Keras layer that makes the (first) top.

    It returns one Keras tensor per top, in the same layout. ``output_shapes``
    gives the tops' Caffe shapes from the bottoms' (default: each top has the
    first bottom's shape, as for an element-wise layer); ``weight_shapes`` gives
    the shapes of the layer's learned blobs (default: none), which keraffe checks
    a weights file against. Types keraffe converts already cannot be registered.
    """
    kind = _kind(type_name, python_layer)
    load_handlers()
    known_types()  # keraffe's own rules first, so a clash shows here and not at their first use
    if kind in HANDLERS:
        raise ValueError(f"keraffe already converts {_describe(kind)}; a plug-in cannot replace it")
    if has_rule(kind) and (output_shapes is not None or weight_shapes is not None):
        raise ValueError(f"keraffe already has a shape rule for {_describe(kind)}; register the plug-in "
                         "without output_shapes and weight_shapes")

    def decorate(convert: Converter) -> Converter:
        if len(inspect.signature(convert).parameters) != 4:
            raise TypeError(f"a Caffe layer plug-in takes (layer, inputs, weights, name); {convert!r} does not")
        if not has_rule(kind):
            shape_rule(kind)(_rule(kind, output_shapes, weight_shapes))
        caffe_layer(kind)(_handler(kind, convert))
        return convert

    return decorate


def _kind(type_name: str | None, python_layer: str | None) -> str:
    if (type_name is None) == (python_layer is None):
        raise TypeError("register_caffe_layer takes a Caffe layer type or python_layer='module.Layer', one of them")
    if python_layer is not None:
        module, _, layer = python_layer.rpartition(".")
        if not module or not layer:
            raise ValueError(f"python_layer must be 'module.Layer' as the layer's python_param names them, "
                             f"got {python_layer!r}")
        return python_layer_kind(module, layer)
    if type_name == "Python":
        raise ValueError("Python layers are registered by module and class: python_layer='module.Layer'")
    return type_name


def _describe(kind: str) -> str:
    return f"Python layer {kind.split(':', 1)[1]}" if kind.startswith("Python:") else f"Caffe type {kind!r}"


def _rule(kind: str, output_shapes: ShapeFunction | None, weight_shapes: ShapeFunction | None):
    def rule(layer, bottoms):
        if output_shapes is None:
            if not bottoms:
                raise ShapeError("has no bottom to take its shape from; give the plug-in output_shapes")
            tops = [bottoms[0]] * max(1, len(layer.top))
        else:
            tops = output_shapes(layer, bottoms)
        params = weight_shapes(layer, bottoms) if weight_shapes is not None else ()
        return LayerShapes(tuple(tuple(int(d) for d in top) for top in tops),
                           tuple(tuple(int(d) for d in shape) for shape in params))

    rule.__name__ = f"plugin_rule_{kind}"
    return rule


def _handler(kind: str, convert: Converter):
    def handler(ctx, node):
        inputs = [ctx.input(node, i, default_layout(len(ctx.in_shape(node, i)))) for i in range(len(node.inputs))]
        result = convert(node.param, inputs, ctx.weights(node), ctx.blob_name(node))
        tops = list(result) if isinstance(result, (list, tuple)) else [result]
        if len(tops) != len(node.outputs):
            raise ConversionError(f"layer '{node.name}': the plug-in for {_describe(kind)} returned {len(tops)} "
                                  f"tensor(s) for {len(node.outputs)} top(s)")
        for index, tensor in enumerate(tops):
            layout = default_layout(len(ctx.out_shape(node, index)))
            wanted = layout.keras_shape(ctx.out_shape(node, index))[1:]
            got = tuple(getattr(tensor, "shape", ())[1:])
            if got != wanted:
                raise ConversionError(
                    f"layer '{node.name}': the plug-in for {_describe(kind)} returned a Keras tensor of shape "
                    f"(batch, {', '.join(map(str, got))}) for top {index}; its Caffe shape "
                    f"{ctx.out_shape(node, index)} is (batch, {', '.join(map(str, wanted))}) in Keras "
                    f"({layout.describe()})")
            ctx.emit(node, index, tensor, layout)

    handler.__name__ = f"plugin_{kind}"
    return handler
