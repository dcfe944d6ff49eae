"""A Caffe -> Caffe pass for toolchains whose MAX pooling rounds down only: Caffe's rounding-up kept, exactly.

Caffe pools with its output size rounded up (Caffe 1.0 has no other mode);
an NPU that only rounds down (RKNN's NPU MaxPool: ``ceil_mode`` 0) would drop
Caffe's last, partial window. This pass makes both roundings agree: it pads
the input at the bottom and the right with copies of its last row and column
until rounding down gives Caffe's output size, and leaves the pooling as it
was. A MAX window that reaches the copies also holds the row (column) they
copy, so no maximum changes: the result is bit for bit Caffe's, whatever the
input's sign, and the copies add no new value to quantize. Caffe 1.0 has no
padding layer; the copies are a Slice of the last row and a Concat.

Given (x is 1x8x112x112; Caffe: 57x57, rounding down: 56x56)::

    pool = Pooling(x)                  MAX, kernel 3, stride 2, pad 1

Result::

    pool/keep_h, pool/last_h = Slice(x)                     axis 2 at 111
    pool/padded_h = Concat(pool/keep_h, pool/last_h, pool/last_h)        axis 2: 113 rows
    pool/keep_w, pool/last_w = Slice(pool/padded_h)         axis 3 at 111
    pool/padded_w = Concat(pool/keep_w, pool/last_w, pool/last_w)        axis 3: 113 columns
    pool = Pooling(pool/padded_w)      the same parameters: 57x57 either way

An AVE pooling is rewritten only where every window that reaches past the
input is cropped away afterwards (copies would enter those averages), as
keraffe's Keras -> Caffe windows do; so is a MAX pooling whose last window
Caffe starts past the input. Poolings whose roundings agree are left alone.
"""

from __future__ import annotations

from keraffe.caffe.net import CaffeNet
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.shapes.pooling import pool_geometry
from keraffe.passes.caffe_rewrite import NetRewrite, Rewritten


def floor_output(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int) -> int:
    """The output size when the same pooling rounds down (Caffe's clipping rule included)."""
    out = (size + pad_begin + pad_end - kernel) // stride + 1
    if (pad_begin or pad_end) and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def rows_to_add(size: int, kernel: int, stride: int, pad: int, caffe_out: int) -> int:
    """How many copied rows make rounding down give ``caffe_out`` (0 when it already does)."""
    return max(0, (caffe_out - 1) * stride + kernel - 2 * pad - size)


def rounding_differs(layer: pb.LayerParameter, bottom) -> bool:
    """Whether this Caffe pooling's output changes when it rounds down instead of up."""
    g = pool_geometry(layer, bottom)
    if g.global_pooling or not g.ceil:
        return False
    return any(floor_output(size, k, s, p0, p1) != out for size, k, s, p0, p1, out in
               zip(bottom[2:], g.kernel, g.stride, g.pad_begin, g.pad_end, g.output))


def rows_for_floor(net: CaffeNet, node, consumers=None) -> list[int] | None:
    """Copied rows and columns that make this pooling's roundings agree exactly, or None when none do.

    A MAX window that reaches the copies also holds the row they copy, so
    its maximum stays; a window Caffe starts past the input (stride above
    kernel, no padding) reads nothing and gives -FLT_MAX, which copies would
    replace. An AVE window that reaches past the input would average copies
    in. Such windows are rewritten only where the net throws them away: when
    the pooling's output goes to crops (Slice, the rest to Silence) that keep
    none of them, as keraffe's Keras -> Caffe windows do.
    """
    bottom = net.shapes.get(node.inputs[0])
    method = node.param.pooling_param.pool if node.type == "Pooling" else None
    if method not in (pb.PoolingParameter.MAX, pb.PoolingParameter.AVE) or bottom is None:
        return None
    g = pool_geometry(node.param, bottom)
    if g.pad_begin != g.pad_end or len(node.outputs) != 1:
        return None
    extra = []
    for axis, (size, k, s, p, out) in enumerate(zip(bottom[2:], g.kernel, g.stride, g.pad_begin, g.output)):
        if method == pb.PoolingParameter.MAX:
            changed = sum(1 for o in range(out) if o * s - p >= size)  # windows that start past the input
        else:
            changed = sum(1 for o in range(out) if o * s - p + k > size)  # windows that end past it
        if changed and not _cropped_away(net, node.outputs[0], axis + 2, out - changed, consumers):
            return None
        extra.append(rows_to_add(size, k, s, p, out))
    return extra


def _cropped_away(net: CaffeNet, tensor, axis: int, keep_below: int, consumers) -> bool:
    """Whether crops after ``tensor`` keep only positions below ``keep_below`` along ``axis``."""
    from keraffe.passes.slice_as_crop import consumers_of, spatial_crop

    consumers = consumers if consumers is not None else consumers_of(net)
    while True:
        readers = consumers.get(tensor, [])
        if len(readers) != 1 or tensor in net.outputs:
            return False
        crop = spatial_crop(net, readers[0], consumers)
        if crop is None:
            return False
        crop_axis, start, kept = crop
        if crop_axis == axis:
            return start + net.shapes[kept][axis] <= keep_below
        tensor = kept


def ceil_pooling_as_floor(net: CaffeNet) -> Rewritten:
    """Pad the input of every pooling whose roundings differ so that they agree, where that is exact (see the module)."""
    from keraffe.passes.slice_as_crop import consumers_of

    rewrite = NetRewrite(net)
    consumers = consumers_of(net)
    for node, layer in rewrite.layers():
        bottom = net.shapes.get(node.inputs[0]) if node.inputs else None
        extra = None
        if node.type == "Pooling" and bottom is not None and rounding_differs(layer, bottom):
            extra = rows_for_floor(net, node, consumers)
        if extra is None:
            rewrite.keep(layer)
            continue
        current = layer.bottom[0]
        for axis, (count, size) in enumerate(zip(extra, bottom[2:])):
            if count:
                current = _replicate_last(rewrite, node.name, current, axis + 2, size, count)
        pooled = rewrite.keep(layer)
        del pooled.bottom[:]
        pooled.bottom.append(current)
        rewrite.note(node, f"input padded with {extra[0]} copied row(s) and {extra[1]} copied column(s), so that "
                           "rounding down gives Caffe's rounded-up output")
    return rewrite.done()


def _replicate_last(rewrite: NetRewrite, name: str, bottom: str, axis: int, size: int, count: int) -> str:
    """``bottom`` with its last position along ``axis`` repeated ``count`` more times (Slice + Concat)."""
    tag = "h" if axis == 2 else "w"
    parts = [bottom]
    last = bottom
    if size > 1:
        head = rewrite.unique(f"{name}/keep_{tag}")
        last = rewrite.unique(f"{name}/last_{tag}")
        split = rewrite.add("Slice", rewrite.unique(f"{name}/split_{tag}"), [bottom], [head, last])
        split.slice_param.axis = axis
        split.slice_param.slice_point.append(size - 1)
        parts = [head, last]
    padded = rewrite.unique(f"{name}/padded_{tag}")
    concat = rewrite.add("Concat", padded, parts + [last] * count, [padded])
    concat.concat_param.axis = axis
    return padded
