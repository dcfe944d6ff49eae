"""A Caffe -> Caffe pass for Huawei ATC (Ascend): the YOLO forks' nearest Upsample in Huawei's spelling.

The YOLO forks' Upsample (darknet2caffe, brocolli) repeats each pixel
``scale`` times along both spatial axes. Huawei's ATC reads ``scale`` as a
factor on the values and takes the repeat count from ``stride``
(y[n, c, i, j] = scale * x[n, c, i / stride, j / stride]); its guide asks
YOLOv3 prototxts to change ``scale: 2`` into ``scale: 1 stride: 2``. The
rewrite only changes the spelling: the same layer computes the same values.

Given::

    up = Upsample(x)                   upsample_param { scale: 2 }

Result::

    up = Upsample(x)                   upsample_param { scale: 1 stride: 2 }

SegNet's Upsample (a second bottom, the pooling mask) and layers already in
Huawei's spelling are left alone.
"""

from __future__ import annotations

from keraffe.caffe.net import CaffeNet
from keraffe.passes.caffe_rewrite import NetRewrite, Rewritten


def needs_stride_spelling(layer) -> bool:
    """A one-bottom (nearest) Upsample written with the forks' ``scale``, not Huawei's ``stride``."""
    param = layer.upsample_param
    return layer.type == "Upsample" and len(layer.bottom) == 1 and not param.HasField("stride") and (
        param.dims_num == 4)


def upsample_stride_spelling(net: CaffeNet) -> Rewritten:
    rewrite = NetRewrite(net)
    for node, layer in rewrite.layers():
        copy = rewrite.keep(layer)
        if needs_stride_spelling(layer):
            factor = layer.upsample_param.scale
            copy.upsample_param.stride = factor
            copy.upsample_param.scale = 1
            rewrite.note(node, f"nearest upsampling by {factor} spelled scale: 1 stride: {factor}")
    return rewrite.done()
