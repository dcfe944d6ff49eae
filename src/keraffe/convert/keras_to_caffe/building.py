"""Caffe 1.0 building blocks that several handler families share: reshapes, slices, concatenations.

Each writes plain Caffe 1.0 layers (Reshape, Slice, Concat, Silence, Power,
Eltwise) through the conversion's context and returns the top blob(s). None
of them computes anything but copies, sums and products, so each is exact.
"""

from __future__ import annotations

from keraffe.errors import ConversionError

#: The most pieces a blob is cut into to move or reverse an axis without a Permute layer.
MOST_PIECES = 256


def reshape(ctx, name: str, bottom: str, dims, top: str | None = None) -> str:
    """A Reshape of ``bottom`` to ``dims`` (0 keeps an axis, -1 infers one)."""
    layer = ctx.add("Reshape", name, [bottom], [top or name])
    layer.reshape_param.shape.dim.extend(int(d) for d in dims)
    return layer.top[0]


def slice_axis(ctx, name: str, bottom: str, axis: int, bounds, size: int, kept_names=None) -> list[str]:
    """Cut ``bottom`` along ``axis`` (of length ``size``) into the pieces [start, stop) of ``bounds``.

    Returns one blob per piece; what lies between or around them goes to a
    Silence layer. A piece that is the whole axis is ``bottom`` itself.
    """
    if len(bounds) == 1 and tuple(bounds[0]) == (0, size):
        return [bottom]
    points, tops, unused, wanted = [], [], [], []
    position = 0
    for index, (start, stop) in enumerate(bounds):
        if start < position or stop <= start or stop > size:
            raise ConversionError(f"'{name}': cannot slice [{start}, {stop}) of an axis of {size}")
        if start > position:
            if position:
                points.append(position)
            tops.append(ctx.unique(f"{name}/unused{len(unused)}"))
            unused.append(tops[-1])
            position = start
        if position:
            points.append(position)
        kept = kept_names[index] if kept_names else ctx.unique(f"{name}/part{index}")
        tops.append(kept)
        wanted.append(kept)
        position = stop
    if position < size:
        points.append(position)
        tops.append(ctx.unique(f"{name}/unused{len(unused)}"))
        unused.append(tops[-1])
    layer = ctx.add("Slice", ctx.unique(f"{name}/slice"), [bottom], tops)
    layer.slice_param.axis = axis
    layer.slice_param.slice_point.extend(points)
    if unused:
        ctx.add("Silence", ctx.unique(f"{name}/discard"), unused, [])
    return wanted


def concat(ctx, name: str, bottoms, axis: int, top: str | None = None) -> str:
    """Concat along ``axis``; a single bottom is returned as it is (unless a top name is asked for)."""
    if len(bottoms) == 1 and top is None:
        return bottoms[0]
    layer = ctx.add("Concat", name, list(bottoms), [top or name])
    if axis != 1:
        layer.concat_param.axis = axis
    return layer.top[0]


def pieces(ctx, name: str, bottom: str, axis: int, size: int) -> list[str]:
    """``bottom`` cut along ``axis`` into its ``size`` single slices (the axis kept, of length 1)."""
    if size > MOST_PIECES:
        raise ConversionError(f"'{name}': cutting an axis of {size} into single slices would take {size} Caffe "
                              f"layers (at most {MOST_PIECES} are written)")
    if size == 1:
        return [bottom]
    return slice_axis(ctx, f"{name}/pieces", bottom, axis, [(i, i + 1) for i in range(size)], size)


def reverse_axis(ctx, name: str, bottom: str, axis: int, size: int, top: str | None = None) -> str:
    """``bottom`` with axis ``axis`` in reverse order: its single slices concatenated backwards."""
    if size == 1:
        return bottom if top is None else reshape(ctx, top, bottom, [0] * (axis + 1))
    return concat(ctx, ctx.unique(f"{name}/reversed") if top is None else top,
                  list(reversed(pieces(ctx, name, bottom, axis, size))), axis, top)


def move_axis(ctx, name: str, bottom: str, shape, source: int, destination: int, top: str | None = None) -> str:
    """Blob axis ``source`` moved to ``destination`` without a Permute layer: one Caffe 1.0 transpose.

    The blob is cut into single slices along ``source``; each slice's unit
    axis is moved by a Reshape (a unit axis can go anywhere without moving
    data), and the slices are concatenated along ``destination``.
    """
    shape = list(shape)
    size = shape[source]
    moved = shape[:source] + shape[source + 1:]
    moved.insert(destination, 1)
    parts = []
    for index, piece in enumerate(pieces(ctx, name, bottom, source, size)):
        parts.append(reshape(ctx, ctx.unique(f"{name}/moved{index}"), piece, moved))
    return concat(ctx, top or ctx.unique(f"{name}/transposed"), parts, destination, top)


def scaled(ctx, name: str, bottom: str, power: float = 1.0, scale: float = 1.0, shift: float = 0.0) -> str:
    """Caffe's Power layer named exactly ``name``: (shift + scale * x) ** power."""
    from keraffe.passes.drafting import set_power

    layer = ctx.add("Power", name, [bottom])
    set_power(layer.power_param, power, scale, shift)
    return layer.top[0]


def eltwise(ctx, name: str, bottoms, operation: str = "sum", coeff=None, top: str | None = None) -> str:
    """Caffe's Eltwise: "sum" (with coefficients), "prod" or "max"."""
    layer = ctx.add("Eltwise", name, list(bottoms), [top or name])
    param = layer.eltwise_param
    if operation == "prod":
        param.operation = param.PROD
    elif operation == "max":
        param.operation = param.MAX
    if coeff is not None:
        param.coeff.extend(float(c) for c in coeff)
    return layer.top[0]
