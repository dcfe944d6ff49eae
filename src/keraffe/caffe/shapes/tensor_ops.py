"""Layers that combine, split or rearrange blobs without learned weights."""

from __future__ import annotations

from keraffe.caffe.shapes import LayerShapes, canonical_axis, count, expect_bottoms, shape_rule
from keraffe.errors import ShapeError


@shape_rule("Split")
def split(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    return LayerShapes((bottoms[0],) * len(layer.top))


@shape_rule("Silence")
def silence(layer, bottoms):
    return LayerShapes(())


@shape_rule("Eltwise")
def eltwise(layer, bottoms):
    if len(bottoms) < 2:
        raise ShapeError(f"needs at least 2 bottoms, has {len(bottoms)}")
    for other in bottoms[1:]:
        if other != bottoms[0]:
            raise ShapeError(f"all bottoms must have one shape, got {bottoms[0]} and {other}")
    param = layer.eltwise_param
    if len(param.coeff) and len(param.coeff) != len(bottoms):
        raise ShapeError(f"{len(param.coeff)} coefficients for {len(bottoms)} bottoms")
    return LayerShapes((bottoms[0],))


@shape_rule("Axpy")
def axpy(layer, bottoms):
    """SENet's fused a*x + y, with a of shape (N, C, 1, 1)."""
    expect_bottoms(layer, bottoms, 3)
    scale, x, y = bottoms
    if x != y or scale[:2] != x[:2] or count(scale, 2) != 1:
        raise ShapeError(f"expects (N,C,1,1), x and y of one shape; got {scale}, {x}, {y}")
    return LayerShapes((x,))


def concat_axis(layer, rank: int) -> int:
    param = layer.concat_param
    if param.HasField("concat_dim"):
        return param.concat_dim
    return canonical_axis(param.axis, rank)


@shape_rule("Concat")
def concat(layer, bottoms):
    if not bottoms:
        raise ShapeError("needs at least one bottom")
    first = bottoms[0]
    axis = concat_axis(layer, len(first))
    total = 0
    for other in bottoms:
        if len(other) != len(first) or other[:axis] != first[:axis] or other[axis + 1:] != first[axis + 1:]:
            raise ShapeError(f"bottoms {first} and {other} differ outside concat axis {axis}")
        total += other[axis]
    return LayerShapes((first[:axis] + (total,) + first[axis + 1:],))


def slice_axis(layer, rank: int) -> int:
    param = layer.slice_param
    if param.HasField("slice_dim"):
        return param.slice_dim
    return canonical_axis(param.axis, rank)


@shape_rule("Slice")
def slice_(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    axis = slice_axis(layer, len(bottom))
    size = bottom[axis]
    tops = len(layer.top)
    points = list(layer.slice_param.slice_point)
    if points:
        if len(points) != tops - 1:
            raise ShapeError(f"{len(points)} slice points for {tops} tops")
        bounds = [0] + points + [size]
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        if any(s <= 0 for s in sizes):
            raise ShapeError(f"slice points {points} do not split size {size} into positive parts")
    else:
        if size % tops:
            raise ShapeError(f"{tops} tops do not evenly divide size {size} on axis {axis}")
        sizes = [size // tops] * tops
    return LayerShapes(tuple(bottom[:axis] + (s,) + bottom[axis + 1:] for s in sizes))


@shape_rule("Flatten")
def flatten(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    start = canonical_axis(layer.flatten_param.axis, len(bottom))
    end = canonical_axis(layer.flatten_param.end_axis, len(bottom))
    return LayerShapes((bottom[:start] + (count(bottom, start, end + 1),) + bottom[end + 1:],))


@shape_rule("Reshape")
def reshape(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    param = layer.reshape_param
    if param.pixelshuffler != 1:
        return LayerShapes((_pixel_shuffle(bottom, param.pixelshuffler),))
    dims = [int(d) for d in param.shape.dim]
    start = param.axis if param.axis >= 0 else len(bottom) + param.axis + 1
    if not 0 <= start <= len(bottom):
        raise ShapeError(f"axis {param.axis} is out of range for input {bottom}")
    if param.num_axes < -1:
        raise ShapeError("num_axes must be >= 0, or -1 for all")
    end = len(bottom) if param.num_axes == -1 else start + param.num_axes
    if end > len(bottom):
        raise ShapeError(f"axis + num_axes = {end} is out of range for input {bottom}")
    if dims.count(-1) > 1:
        raise ShapeError("the new shape has more than one -1")
    top = list(bottom[:start]) + dims + list(bottom[end:])
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= len(bottom):
                raise ShapeError(f"dim {i} is 0 but the input has no axis {start + i} to copy")
            top[start + i] = bottom[start + i]
    if -1 in dims:
        inferred = start + dims.index(-1)
        known = count([d for j, d in enumerate(top) if j != inferred])
        if known == 0 or count(bottom) % known:
            raise ShapeError(f"cannot infer the -1 dimension: {count(bottom)} values into {top}")
        top[inferred] = count(bottom) // known
    if count(top) != count(bottom):
        raise ShapeError(f"new shape {tuple(top)} holds {count(top)} values, the input {count(bottom)}")
    return LayerShapes((tuple(top),))


def _pixel_shuffle(bottom, factor: int):
    """Synopsys fork: Reshape with pixelshuffler r maps (N, C*r*r, H, W) to (N, C, H*r, W*r)."""
    if len(bottom) != 4:
        raise ShapeError(f"pixelshuffler needs a 4-axis (N, C, H, W) input, got {bottom}")
    if factor <= 0 or bottom[1] % (factor * factor):
        raise ShapeError(f"pixelshuffler {factor}: channels {bottom[1]} are not a multiple of {factor}*{factor}")
    n, c, h, w = bottom
    return (n, c // (factor * factor), h * factor, w * factor)


def permute_order(layer, rank: int) -> tuple[int, ...]:
    """SSD's Permute: the given axes first, the rest after them in their order."""
    order = [int(a) for a in layer.permute_param.order]
    if any(not 0 <= a < rank for a in order) or len(set(order)) != len(order):
        raise ShapeError(f"order {order} is not a set of distinct axes below {rank}")
    return tuple(order + [a for a in range(rank) if a not in order])


@shape_rule("Permute")
def permute(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    return LayerShapes((tuple(bottom[a] for a in permute_order(layer, len(bottom))),))


@shape_rule("Crop")
def crop(layer, bottoms):
    expect_bottoms(layer, bottoms, 2)
    data, reference = bottoms
    if len(data) != len(reference):
        raise ShapeError(f"bottoms {data} and {reference} differ in rank")
    axis = canonical_axis(layer.crop_param.axis, len(data))
    offsets = list(layer.crop_param.offset)
    if len(offsets) > 1 and len(offsets) != len(data) - axis:
        raise ShapeError(f"{len(offsets)} offsets for {len(data) - axis} cropped axes")
    top = list(data)
    for i in range(axis, len(data)):
        offset = offsets[0] if len(offsets) == 1 else (offsets[i - axis] if offsets else 0)
        if data[i] - offset < reference[i]:
            raise ShapeError(f"crop of axis {i} to {reference[i]} at offset {offset} leaves input {data}")
        top[i] = reference[i]
    return LayerShapes((tuple(top),))


@shape_rule("Tile")
def tile(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    axis = canonical_axis(layer.tile_param.axis, len(bottom))
    if layer.tile_param.tiles <= 0:
        raise ShapeError("tile_param.tiles must be positive")
    return LayerShapes((bottom[:axis] + (bottom[axis] * layer.tile_param.tiles,) + bottom[axis + 1:],))


@shape_rule("Reduction")
def reduction(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    axis = canonical_axis(layer.reduction_param.axis, len(bottom)) if bottom else 0
    return LayerShapes((bottom[:axis],))


@shape_rule("ArgMax")
def argmax(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    param = layer.argmax_param
    if param.HasField("axis"):
        axis = canonical_axis(param.axis, len(bottom))
        if param.top_k > bottom[axis]:
            raise ShapeError(f"top_k {param.top_k} exceeds axis {axis} of size {bottom[axis]}")
        top = list(bottom)
        top[axis] = param.top_k
    else:
        if param.top_k > count(bottom, 1):
            raise ShapeError(f"top_k {param.top_k} exceeds the {count(bottom, 1)} values per item")
        top = [1] * max(3, len(bottom))
        top[0] = bottom[0]
        top[2] = param.top_k
        if param.out_max_val:
            top[1] = 2
    return LayerShapes((tuple(top),))


@shape_rule("Squeeze")
def squeeze(layer, bottoms):
    """Synopsys fork: drop the given size-1 axes (all of them when none are given)."""
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    axes = {canonical_axis(a, len(bottom)) for a in layer.squeeze_param.axis}
    if not axes:
        axes = {i for i, d in enumerate(bottom) if d == 1}
    if any(bottom[a] != 1 for a in axes):
        raise ShapeError(f"axes {sorted(axes)} of {bottom} are not all of size 1")
    return LayerShapes((tuple(d for i, d in enumerate(bottom) if i not in axes),))


@shape_rule("Mul")
def mul(layer, bottoms):
    """Synopsys fork (TF's Mul): elementwise product of two bottoms, broadcast as NumPy does."""
    expect_bottoms(layer, bottoms, 2)
    first, second = bottoms
    rank = max(len(first), len(second))
    padded = [(1,) * (rank - len(b)) + tuple(b) for b in (first, second)]
    top = []
    for a, b in zip(*padded):
        if a != b and 1 not in (a, b):
            raise ShapeError(f"bottoms {first} and {second} do not broadcast (sizes {a} and {b})")
        top.append(max(a, b))
    return LayerShapes((tuple(top),))


def space_to_batch_setting(layer, rank: int, what: str) -> tuple[list[int], list[tuple[int, int]]]:
    """(block per axis 1..M, (begin, end) pads or crops per axis) of the Synopsys fork's SpaceToBatchND/BatchToSpaceND.

    The TF op applied to the blob's own axes 1..M, whatever its layout.
    """
    param = layer.space_to_batch_nd_param if what == "paddings" else layer.batch_to_space_nd_param
    blocks = [int(b) for b in param.block_shape]
    amounts = [int(a) for a in (param.paddings if what == "paddings" else param.crops)]
    if not blocks or any(b <= 0 for b in blocks):
        raise ShapeError(f"block_shape {blocks} must hold positive sizes")
    if len(blocks) >= rank:
        raise ShapeError(f"block_shape {blocks} blocks {len(blocks)} axes of a {rank}-axis blob; axis 0 is the batch")
    if len(amounts) not in (0, 2 * len(blocks)):
        raise ShapeError(f"{what} {amounts} must give (begin, end) for each of the {len(blocks)} blocked axes")
    amounts = amounts or [0] * (2 * len(blocks))
    return blocks, [(amounts[2 * i], amounts[2 * i + 1]) for i in range(len(blocks))]


@shape_rule("SpaceToBatchND")
def space_to_batch_nd(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    blocks, pads = space_to_batch_setting(layer, len(bottom), "paddings")
    spatial = []
    for axis, (block, (begin, end)) in enumerate(zip(blocks, pads), start=1):
        padded = bottom[axis] + begin + end
        if padded % block:
            raise ShapeError(f"axis {axis}: padded size {padded} is not a multiple of its block {block}")
        spatial.append(padded // block)
    top = (bottom[0] * count(blocks),) + tuple(spatial) + bottom[len(blocks) + 1:]
    return LayerShapes((top,))


@shape_rule("BatchToSpaceND")
def batch_to_space_nd(layer, bottoms):
    expect_bottoms(layer, bottoms, 1)
    bottom = bottoms[0]
    blocks, crops = space_to_batch_setting(layer, len(bottom), "crops")
    if bottom[0] % count(blocks):
        raise ShapeError(f"batch {bottom[0]} is not a multiple of the blocks' product {count(blocks)}")
    spatial = []
    for axis, (block, (begin, end)) in enumerate(zip(blocks, crops), start=1):
        size = bottom[axis] * block - begin - end
        if size <= 0:
            raise ShapeError(f"axis {axis}: crops {begin}, {end} leave nothing of {bottom[axis] * block}")
        spatial.append(size)
    top = (bottom[0] // count(blocks),) + tuple(spatial) + bottom[len(blocks) + 1:]
    return LayerShapes((top,))
