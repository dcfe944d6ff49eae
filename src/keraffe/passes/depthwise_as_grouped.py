"""A Caffe -> Caffe pass: the forks' depthwise convolution types as BVLC's grouped Convolution.

MobileNet-YOLO's DepthwiseConvolution and ShuffleNet's ConvolutionDepthwise
compute BVLC's Convolution with one group per input channel; Huawei's ATC
(and keraffe's reference runtimes) know only the latter. The weights keep
their shape (C, 1, kH, kW) and the layer its name.

Given (x has 32 channels)::

    dw = ConvolutionDepthwise(x)       num_output 32, kernel 3

Result::

    dw = Convolution(x)                num_output 32, group 32, kernel 3
"""

from __future__ import annotations

from keraffe.caffe.net import CaffeNet, LayerNode
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.passes.caffe_rewrite import NetRewrite, Rewritten

DEPTHWISE_ALIASES = frozenset({"DepthwiseConvolution", "ConvolutionDepthwise"})


def as_grouped_convolution(net: CaffeNet, node: LayerNode, layer: pb.LayerParameter) -> pb.LayerParameter:
    """A copy of a depthwise alias layer as Convolution with group = num_output = its input's channels."""
    from keraffe.caffe.shapes.conv import conv_geometry

    geometry = conv_geometry(node.param, net.shapes[node.inputs[0]])
    copy = pb.LayerParameter()
    copy.CopyFrom(layer)
    copy.type = "Convolution"
    copy.convolution_param.group = geometry.group
    copy.convolution_param.num_output = geometry.num_output
    return copy


def depthwise_as_grouped(net: CaffeNet) -> Rewritten:
    rewrite = NetRewrite(net)
    for node, layer in rewrite.layers():
        if node.type in DEPTHWISE_ALIASES and node.inputs[0] in net.shapes:
            rewrite.keep(as_grouped_convolution(net, node, layer))
            rewrite.note(node, "written as Convolution with one group per channel")
        else:
            rewrite.keep(layer)
    return rewrite.done()
