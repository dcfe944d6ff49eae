"""Caffe's shape rules: the top shapes, weight shapes and multiply-accumulates of each layer.

Each layer family has one module here; each rule is a function registered for
one or more Caffe type names with :func:`shape_rule`, and computes exactly what
that layer's ``LayerSetUp``/``Reshape`` computes in real Caffe (or in the fork
that defines it). :func:`infer_layer` is the only way in.

Shapes are tuples in Caffe's own axis order (NCHW for images).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Sequence

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.errors import ShapeError

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LayerShapes:
    """What one layer produces given its bottom shapes."""

    tops: tuple[Shape, ...]
    #: Shapes of the layer's learned blobs, in Caffe's blob order.
    params: tuple[Shape, ...] = ()
    #: Multiply-accumulates for one forward pass (0 where the layer has none).
    macs: int = 0
    #: How many leading entries of ``params`` a weights file must hold (None: all).
    #: The forks' BN stores 2 blobs (SegNet) or 4 (PSPNet, brocolli).
    required_params: int | None = None
    #: True when Caffe sets a placeholder shape that the forward pass changes
    #: (DetectionOutput keeps a variable number of boxes).
    dynamic: bool = False


ShapeRule = Callable[[pb.LayerParameter, Sequence[Shape]], LayerShapes]

_RULES: dict[str, ShapeRule] = {}


def shape_rule(*type_names: str) -> Callable[[ShapeRule], ShapeRule]:
    """Register a rule for Caffe layer types (or Python layers, by :func:`python_layer_kind`); once each."""

    def register(rule: ShapeRule) -> ShapeRule:
        for name in type_names:
            if name in _RULES:
                raise RuntimeError(f"shape rule for Caffe type {name!r} registered twice")
            _RULES[name] = rule
        return rule

    return register


def python_layer_kind(module: str, layer: str) -> str:
    """The kind of a Python layer: every one has type "Python", and what it computes is its module and class."""
    return f"Python:{module}.{layer}"


def layer_kind(layer: pb.LayerParameter) -> str:
    """What a layer computes, as rules and converters are registered: its type, or a Python layer's module and class.

    Python layers are known by the module and class their ``python_param``
    names; a net may hold several different ones.
    """
    if layer.type == "Python":
        return python_layer_kind(layer.python_param.module, layer.python_param.layer)
    return layer.type


def known_types() -> frozenset[str]:
    _load_families()
    return frozenset(_RULES)


def has_rule(type_name: str) -> bool:
    _load_families()
    return type_name in _RULES


def infer_layer(layer: pb.LayerParameter, bottoms: Sequence[Shape]) -> LayerShapes:
    """Shapes of one layer's tops and weights; raises ShapeError naming the layer."""
    _load_families()
    rule = _RULES.get(layer_kind(layer))
    if rule is None:
        raise ShapeError(f"layer '{layer.name}': no shape rule for {_describe_kind(layer)}")
    try:
        result = rule(layer, [tuple(int(d) for d in b) for b in bottoms])
    except ShapeError as error:
        raise ShapeError(f"layer '{layer.name}' ({layer.type}): {error}") from None
    except (IndexError, ValueError, ZeroDivisionError) as error:
        shapes = ", ".join(str(b) for b in bottoms)
        raise ShapeError(
            f"layer '{layer.name}' ({layer.type}) cannot take bottom shapes {shapes}: {error}"
        ) from None
    for top in result.tops:
        if any(d < 0 for d in top) or (top and 0 in top and layer.type not in _ZERO_OK):
            raise ShapeError(
                f"layer '{layer.name}' ({layer.type}) would produce shape {top} from "
                f"bottom shapes {', '.join(str(b) for b in bottoms)}; the input is too small"
            )
    return result


def _describe_kind(layer: pb.LayerParameter) -> str:
    if layer.type == "Python":
        return f"Python layer {layer.python_param.module}.{layer.python_param.layer}"
    return f"type '{layer.type}'"


_ZERO_OK = frozenset({"Silence"})

_loaded = False


#: The family modules; each registers its rules when imported (on first use, since they import this module).
FAMILIES = ("activations", "conv", "dense", "detection", "io", "normalization", "pooling", "recurrent", "resize",
            "tensor_ops")


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")


# ------------------------------------------------------------------ helpers for the rules


def canonical_axis(axis: int, rank: int) -> int:
    """Caffe's CanonicalAxisIndex: negative axes count from the end."""
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for a blob of {rank} axes")
    return axis % rank


def div_toward_zero(numerator: int, denominator: int) -> int:
    """C++ integer division, which Caffe's shape code uses (it truncates, Python floors)."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


def count(shape: Sequence[int], start: int = 0, end: int | None = None) -> int:
    result = 1
    for d in shape[start:end]:
        result *= d
    return result


def expect_bottoms(layer: pb.LayerParameter, bottoms: Sequence[Shape], minimum: int, maximum: int | None = None) -> None:
    maximum = minimum if maximum is None else maximum
    if not minimum <= len(bottoms) <= maximum:
        wanted = str(minimum) if minimum == maximum else f"{minimum} to {maximum}"
        raise ShapeError(f"needs {wanted} bottom(s), has {len(bottoms)}")


def same_as_bottoms(layer: pb.LayerParameter, bottoms: Sequence[Shape]) -> tuple[Shape, ...]:
    """Element-wise layers: one top per bottom, same shape (tops may be fewer)."""
    return tuple(bottoms[: max(1, len(layer.top))])
