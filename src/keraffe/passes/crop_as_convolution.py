"""A Caffe -> Caffe pass for toolchains without Silence: a crop (Slice + Silence) as a copying convolution.

keraffe cuts rows and columns off a blob with Caffe 1.0's Slice and
swallows the cut parts with Silence (Keras' rounding-down pooling windows
cut out of Caffe's rounding-up output, say). Huawei's ATC and RKNN list no
Silence layer. The same crop is a depthwise convolution, unpadded, whose
kernel spans the cut plus one and is 1 where the kept part starts and 0
elsewhere: each output is one input times 1 plus exact zeros, so the kept
values come through unrounded (for finite inputs, as every Caffe net has).

Given (x is 1x8x57x57)::

    crop, crop_end = Slice(x)          axis 2, slice_point 56
    discard = Silence(crop_end, other)

Result::

    crop = Convolution(x)              num_output 8, group 8, kernel 2x1, no bias; weight 1 at (0, 0)
    discard = Silence(other)           (dropped when nothing is left to swallow)

Slices along the channel axis, or whose cut parts feed anything but
Silence, are left alone.
"""

from __future__ import annotations

from keraffe.caffe.net import CaffeNet, LayerNode
from keraffe.passes.caffe_rewrite import NetRewrite, Rewritten, spatial_copy_kernel


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


def crop_as_convolution(net: CaffeNet) -> Rewritten:
    rewrite = NetRewrite(net)
    consumers = consumers_of(net)
    swallowed: set[str] = set()
    for node, layer in rewrite.layers():
        crop = spatial_crop(net, node, consumers)
        if crop is not None:
            axis, start, kept = crop
            channels, full = net.shapes[node.inputs[0]][1], net.shapes[node.inputs[0]][axis]
            size = net.shapes[kept][axis]
            swallowed.update(t.blob for t in node.outputs if t != kept)
            kernel = (full - size + 1, 1) if axis == 2 else (1, full - size + 1)
            offset = (start, 0) if axis == 2 else (0, start)
            conv = rewrite.add("Convolution", node.name, [layer.bottom[0]], [kept.blob],
                               [spatial_copy_kernel(channels, kernel, offset)])
            param = conv.convolution_param
            param.num_output = channels
            param.group = channels
            param.kernel_h, param.kernel_w = kernel
            param.bias_term = False
            rewrite.note(node, f"crop of axis {axis} (positions {start}..{start + size - 1} of {full}) as a "
                               "depthwise convolution that copies them")
        elif node.type == "Silence" and swallowed.intersection(layer.bottom):
            left = [b for b in layer.bottom if b not in swallowed]
            if left:
                copy = rewrite.keep(layer)
                del copy.bottom[:]
                copy.bottom.extend(left)
        else:
            rewrite.keep(layer)
    return rewrite.done()
