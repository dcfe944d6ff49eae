"""Fork layer types that are BVLC layers under another name, spelled the BVLC way.

MobileNet-YOLO's DepthwiseConvolution and ShuffleNet's ConvolutionDepthwise
compute what BVLC's grouped Convolution computes with one group per input
channel. Forks that pad each side on its own (``pad_l``, ``pad_r``, ``pad_t``,
``pad_b``) mean BVLC's ``pad_h``/``pad_w`` when opposite sides agree, and an
``AVE_EXC_PAD`` pooling without padding is BVLC's AVE (which already leaves out
a window's overrun past the image). Runtimes
that lack the fork names (real Caffe, OpenCV) run the BVLC spelling; keraffe
writes it when it hands a net to them.
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
        for param in (layer.convolution_param, layer.pooling_param):
            _symmetric_pads_the_bvlc_way(param)
        pool = layer.pooling_param
        if node.type == "Pooling" and pool.pool == pb.PoolingParameter.AVE_EXC_PAD and not (
                pool.pad or pool.pad_h or pool.pad_w or pool.pad_l or pool.pad_r or pool.pad_t or pool.pad_b):
            pool.pool = pb.PoolingParameter.AVE
    return result


def _symmetric_pads_the_bvlc_way(param) -> None:
    sides = ("pad_l", "pad_r", "pad_t", "pad_b")
    if not any(param.HasField(side) for side in sides):
        return
    left, right, top, bottom = (getattr(param, side) for side in sides)
    if left != right or top != bottom:
        return
    for side in sides:
        param.ClearField(side)
    param.ClearField("pad")
    param.pad_h, param.pad_w = top, left
