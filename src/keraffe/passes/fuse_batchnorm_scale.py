"""Fuse Caffe's BatchNorm and the Scale after it into one batch normalisation.

Caffe splits batch normalisation in two layers: BatchNorm normalises with the
stored statistics, Scale applies the learned gamma and beta. Keras'
BatchNormalization does both, so the pair becomes one Keras layer, as in
keras.applications models, and no tensor is spent on the intermediate value.

Given::

    x -> BatchNorm(bn) -> t -> Scale(sc, one bottom, axis 1, num_axes 1) -> y

where ``t`` feeds only ``sc`` and is not a net output. Result::

    x -> keraffe.BatchNormScale(sc) -> y

The fused node keeps both layers' parameters (batch_norm_param and
scale_param) and their weights in order: mean, variance, factor, gamma[, beta].
The net records ``t`` as fused into the new node.
"""

from __future__ import annotations

import dataclasses

from keraffe.caffe.net import CaffeNet, LayerNode
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.shapes import LayerShapes

FUSED_TYPE = "keraffe.BatchNormScale"


def _is_per_channel_scale(node: LayerNode) -> bool:
    param = node.param.scale_param
    return node.type == "Scale" and len(node.inputs) == 1 and param.axis == 1 and param.num_axes == 1


def fuse_batchnorm_scale(net: CaffeNet) -> CaffeNet:
    consumers: dict = {}
    for node in net.layers:
        for tensor in node.inputs:
            consumers.setdefault(tensor, []).append(node)
    outputs = set(net.outputs)
    fused_pairs: dict[int, LayerNode] = {}
    absorbed: set[int] = set()
    for node in net.layers:
        if node.type != "BatchNorm" or len(node.outputs) != 1:
            continue
        tensor = node.outputs[0]
        users = consumers.get(tensor, [])
        if tensor in outputs or len(users) != 1 or not _is_per_channel_scale(users[0]):
            continue
        fused_pairs[node.index] = users[0]
        absorbed.add(users[0].index)
    if not fused_pairs:
        return net

    layers: list[LayerNode] = []
    fused = dict(net.fused)
    for node in net.layers:
        if node.index in absorbed:
            continue
        scale = fused_pairs.get(node.index)
        if scale is None:
            layers.append(node)
            continue
        param = pb.LayerParameter()
        param.CopyFrom(scale.param)
        param.type = FUSED_TYPE
        param.batch_norm_param.CopyFrom(node.param.batch_norm_param)
        del param.bottom[:]
        param.bottom.extend(node.param.bottom)
        weights = None
        if node.weights is not None or scale.weights is not None:
            weights = list(node.weights or []) + list(scale.weights or [])
        shapes = None
        if node.shapes is not None and scale.shapes is not None:
            shapes = LayerShapes(scale.shapes.tops, node.shapes.params + scale.shapes.params)
        layers.append(dataclasses.replace(node, param=param, outputs=scale.outputs, shapes=shapes, weights=weights))
        fused[node.outputs[0]] = (node.name, scale.name)
    return dataclasses.replace(net, layers=layers, fused=fused)
