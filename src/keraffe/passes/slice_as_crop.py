"""A Caffe -> Caffe pass for toolchains without Silence: a crop (Slice + Silence) as Caffe's Crop layer.

keraffe cuts rows and columns off a blob with Caffe 1.0's Slice and
swallows the cut parts with Silence (Keras' rounding-down pooling windows
cut out of Caffe's rounding-up output, say). Huawei's ATC and RKNN list no
Silence layer, but both list Crop: it copies the kept part, so every value
comes through bit for bit, whatever the cut parts hold (keraffe's own
drafts may leave inf or NaN there, in windows that read only padding).
Crop takes its size from a second bottom; a MAX pooling of the same input,
stride 1, with a kernel one longer than the cut, has exactly the kept size
(Crop reads only its shape, never its values).

Given (x is 1x8x57x57)::

    crop, crop_end = Slice(x)          axis 2, slice_point 56
    discard = Silence(crop_end, other)

Result::

    crop/size = Pooling(x)             MAX, kernel 2x1, stride 1: 1x8x56x57
    crop = Crop(x, crop/size)          axis 2, offset 0, 0
    discard = Silence(other)           (dropped when nothing is left to swallow)

Slices along the channel axis, or whose cut parts feed anything but
Silence, are left alone.
"""

from __future__ import annotations

from keraffe.caffe.net import CaffeNet, LayerNode
from keraffe.passes.caffe_rewrite import NetRewrite, Rewritten


def consumers_of(net: CaffeNet) -> dict:
    """Tensor -> the layers that read it."""
    result: dict = {}
    for node in net.layers:
        for tensor in node.inputs:
            result.setdefault(tensor, []).append(node)
    return result


def spatial_crop(net: CaffeNet, node: LayerNode, consumers) -> tuple[int, int, object] | None:
    """(axis, start, kept tensor) when a Slice crops a 4-D blob spatially and only Silence reads the rest."""
    if node.type != "Slice":
        return None
    bottom = net.shapes.get(node.inputs[0])
    if bottom is None:
        return None
    param = node.param.slice_param
    axis = param.axis if param.HasField("axis") else (param.slice_dim if param.HasField("slice_dim") else 1)
    axis = axis + len(bottom) if axis < 0 else axis
    if len(bottom) != 4 or axis not in (2, 3):
        return None
    kept = [t for t in node.outputs
            if t in net.outputs or any(c.type != "Silence" for c in consumers.get(t, []))]
    if len(kept) != 1:
        return None
    start = 0
    for tensor in node.outputs:
        if tensor == kept[0]:
            return axis, start, tensor
        start += net.shapes[tensor][axis]
    return None


def slice_as_crop(net: CaffeNet) -> Rewritten:
    rewrite = NetRewrite(net)
    consumers = consumers_of(net)
    swallowed: set[str] = set()
    for node, layer in rewrite.layers():
        crop = spatial_crop(net, node, consumers)
        if crop is not None:
            axis, start, kept = crop
            full, size = net.shapes[node.inputs[0]][axis], net.shapes[kept][axis]
            swallowed.update(t.blob for t in node.outputs if t != kept)
            reference = rewrite.unique(f"{node.name}/size")
            sizing = rewrite.add("Pooling", reference, [layer.bottom[0]], [reference])
            param = sizing.pooling_param
            param.pool = param.MAX
            param.kernel_h, param.kernel_w = (full - size + 1, 1) if axis == 2 else (1, full - size + 1)
            param.stride = 1
            cropped = rewrite.add("Crop", node.name, [layer.bottom[0], reference], [kept.blob])
            cropped.crop_param.axis = axis
            cropped.crop_param.offset.extend([start, 0] if axis == 2 else [start])
            rewrite.note(node, f"crop of axis {axis} (positions {start}..{start + size - 1} of {full}) as a Crop, "
                               "sized by a pooling of the same input")
        elif node.type == "Silence" and swallowed.intersection(layer.bottom):
            left = [b for b in layer.bottom if b not in swallowed]
            if left:
                copy = rewrite.keep(layer)
                del copy.bottom[:]
                copy.bottom.extend(left)
        else:
            rewrite.keep(layer)
    return rewrite.done()
