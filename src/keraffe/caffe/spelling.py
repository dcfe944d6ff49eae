"""Fork layer types that are BVLC layers under another name, spelled the BVLC way.

MobileNet-YOLO's DepthwiseConvolution and ShuffleNet's ConvolutionDepthwise
compute what BVLC's grouped Convolution computes with one group per input
channel. Runtimes that lack the fork names (real Caffe, OpenCV) run the
BVLC spelling; keraffe writes it when it hands a net to them.
"""

from __future__ import annotations

from keraffe.caffe.net import CaffeNet
from keraffe.caffe.proto import caffe_pb2 as pb

DEPTHWISE_ALIASES = frozenset({"DepthwiseConvolution", "ConvolutionDepthwise"})


def bvlc_spelling(net: CaffeNet) -> pb.NetParameter:
    """The net's deploy NetParameter with fork aliases of BVLC layers renamed."""
    from keraffe.caffe.shapes.conv import conv_geometry

    result = net.to_net_parameter()
    for node, layer in zip(net.layers, result.layer):
        if node.type in DEPTHWISE_ALIASES:
            geometry = conv_geometry(node.param, net.shapes[node.inputs[0]])
            layer.type = "Convolution"
            layer.convolution_param.group = geometry.group
            layer.convolution_param.num_output = geometry.num_output
    return result
