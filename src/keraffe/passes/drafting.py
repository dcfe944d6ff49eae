"""Small writers of Caffe layers into a conversion's draft net, shared by Keras -> Caffe handlers and passes.

``ctx`` is the conversion's context (keraffe.convert.keras_to_caffe.context):
``ctx.add`` appends a layer of a type the target has, ``ctx.unique`` reserves
a name.
"""

from __future__ import annotations


def set_power(param, power: float = 1.0, scale: float = 1.0, shift: float = 0.0) -> None:
    """Caffe's Power, (shift + scale * x) ** power, writing only the fields that differ from Caffe's defaults."""
    if power != 1.0:
        param.power = float(power)
    if scale != 1.0:
        param.scale = float(scale)
    if shift != 0.0:
        param.shift = float(shift)


def power(ctx, name: str, bottom: str, power: float = 1.0, scale: float = 1.0, shift: float = 0.0) -> str:
    """A Power layer (its name made unique from ``name``); returns its top."""
    layer = ctx.add("Power", ctx.unique(name), [bottom])
    set_power(layer.power_param, power, scale, shift)
    return layer.top[0]


def eltwise(ctx, name: str, bottoms, operation: str | None = None, coeff=None, top: str | None = None) -> str:
    """An Eltwise layer: a sum (with ``coeff``) or, with ``operation="prod"``, a product; returns its top."""
    layer = ctx.add("Eltwise", ctx.unique(name), bottoms, [top] if top else None)
    if operation == "prod":
        layer.eltwise_param.operation = layer.eltwise_param.PROD
    if coeff:
        layer.eltwise_param.coeff.extend(coeff)
    return layer.top[0]


def keep_range(ctx, layer_name: str, bottom: str, axis: int, size: int, cut_before: int, cut_after: int,
               kept: str, prefix: str, unused: list[str]) -> str:
    """A Slice keeping positions [cut_before, size - cut_after) of ``axis`` in blob ``kept``.

    The cut parts are named ``prefix_start`` and ``prefix_end`` (made unique)
    and appended to ``unused``, for a Silence layer to take.
    """
    layer = ctx.add("Slice", layer_name, [bottom], [])
    layer.slice_param.axis = axis
    tops = []
    if cut_before:
        layer.slice_param.slice_point.append(cut_before)
        tops.append(ctx.unique(f"{prefix}_start"))
        unused.append(tops[-1])
    tops.append(kept)
    if cut_after:
        layer.slice_param.slice_point.append(size - cut_after)
        tops.append(ctx.unique(f"{prefix}_end"))
        unused.append(tops[-1])
    layer.top.extend(tops)
    return kept
