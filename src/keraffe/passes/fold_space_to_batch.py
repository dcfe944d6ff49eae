"""Fold TensorFlow's dilated-convolution idiom into one dilated convolution.

TensorFlow (before 2.x fused them) computed an atrous convolution as
SpaceToBatchND, an unpadded convolution and BatchToSpaceND, and nets converted
from it to Caffe (the Synopsys fork; DeepLab v3) keep the three layers.

Given, on an NCHW blob, with blocks (1, B_h, B_w) (or (B_h, B_w) on axes 2, 3
of a 3-axis block list), pads (t, b) and (l, r), crops (t', b') and (l', r'),
and a stride-1, unpadded, undilated convolution of kernel (K_h, K_w)::

    x -> SpaceToBatchND -> s -> Convolution(conv) -> c -> BatchToSpaceND(b2s) -> y

where ``s`` and ``c`` each feed only the next layer and are not net outputs.
Output row i of ``y`` is sum_k w_k x[i + t' - t + k * B_h] (zero outside x), which is
the same convolution dilated by B_h with t - t' rows of padding on top. Result::

    x -> Convolution(b2s, dilation (B_h, B_w), pad_t t - t', pad_l l - l', pad_b, pad_r) -> y

with the bottom and right pads that give y's size. The folded node keeps the
convolution's parameters and weights and takes BatchToSpaceND's name and top;
``s`` and ``c`` are recorded as fused into it. Where the sizes or pads do not
fit (a negative pad, another stride), the three layers stay and convert one by one.
"""

from __future__ import annotations

import dataclasses

from keraffe.caffe.net import CaffeNet, LayerNode
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.shapes import infer_layer
from keraffe.caffe.shapes.conv import conv_geometry
from keraffe.caffe.shapes.tensor_ops import space_to_batch_setting
from keraffe.errors import ShapeError


def _spatial_blocks(node: LayerNode, rank: int, what: str):
    """((B_h, B_w), ((begin, end) on H, (begin, end) on W)) when the op blocks only axes 2 and 3 of an NCHW blob."""
    if rank != 4:
        return None
    blocks, amounts = space_to_batch_setting(node.param, rank, what)
    if len(blocks) == 3 and blocks[0] == 1 and amounts[0] == (0, 0):
        return tuple(blocks[1:]), tuple(amounts[1:])
    return None


def _folded(net: CaffeNet, s2b: LayerNode, conv: LayerNode, b2s: LayerNode) -> LayerNode | None:
    x_shape = net.shapes[s2b.inputs[0]]
    before = _spatial_blocks(s2b, len(x_shape), "paddings")
    after = _spatial_blocks(b2s, len(net.shapes[b2s.inputs[0]]), "crops")
    if before is None or after is None or before[0] != after[0]:
        return None
    blocks, pads = before
    _, crops = after
    geometry = conv_geometry(conv.param, net.shapes[conv.inputs[0]])
    if any(s != 1 for s in geometry.stride) or any(d != 1 for d in geometry.dilation):
        return None
    if any(geometry.pad_begin) or any(geometry.pad_end) or conv.param.convolution_param.axis != 1:
        return None
    out_h, out_w = net.shapes[b2s.outputs[0]][2:]
    begin = [pad[0] - crop[0] for pad, crop in zip(pads, crops)]
    end = [out - size - first + (k - 1) * block
           for out, size, first, k, block in zip((out_h, out_w), x_shape[2:], begin, geometry.kernel, blocks)]
    if min(begin + end) < 0:
        return None
    param = pb.LayerParameter()
    param.CopyFrom(conv.param)
    param.name = b2s.param.name
    del param.bottom[:], param.top[:]
    param.bottom.extend(s2b.param.bottom)
    param.top.extend(b2s.param.top)
    conv_param = param.convolution_param
    for field in ("pad", "pad_h", "pad_w", "dilation"):
        conv_param.ClearField(field)
    conv_param.dilation.extend(blocks)
    conv_param.pad_t, conv_param.pad_b = begin[0], end[0]
    conv_param.pad_l, conv_param.pad_r = begin[1], end[1]
    try:
        shapes = infer_layer(param, [x_shape])
    except ShapeError:
        return None
    if shapes.tops != (net.shapes[b2s.outputs[0]],) or shapes.params != conv.shapes.params:
        return None
    return dataclasses.replace(conv, param=param, inputs=s2b.inputs, outputs=b2s.outputs, shapes=shapes)


def fold_space_to_batch(net: CaffeNet) -> CaffeNet:
    consumers = net.consumers()
    outputs = set(net.outputs)

    def only_reader(tensor):
        users = consumers.get(tensor, [])
        return users[0][0] if len(users) == 1 and tensor not in outputs else None

    replaced: dict[int, LayerNode] = {}
    dropped: set[int] = set()
    fused = dict(net.fused)
    for node in net.layers:
        if node.type != "SpaceToBatchND" or node.shapes is None:
            continue
        conv = only_reader(node.outputs[0])
        if conv is None or conv.type != "Convolution" or len(conv.inputs) != 1 or len(conv.outputs) != 1:
            continue
        b2s = only_reader(conv.outputs[0])
        if b2s is None or b2s.type != "BatchToSpaceND":
            continue
        folded = _folded(net, node, conv, b2s)
        if folded is None:
            continue
        replaced[conv.index] = folded
        dropped.update((node.index, b2s.index))
        fused[node.outputs[0]] = (node.name, b2s.name)
        fused[conv.outputs[0]] = (conv.name, b2s.name)
    if not replaced:
        return net
    layers = [replaced.get(node.index, node) for node in net.layers if node.index not in dropped]
    return dataclasses.replace(net, layers=layers, fused=fused)
