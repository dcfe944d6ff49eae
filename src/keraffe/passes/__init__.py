"""Graph passes: rewrites of a Caffe net that never change what it computes.

Each pass is one module with one function and a docstring that shows the
graph before and after. They run in fixed pipelines:

* Caffe -> Keras, over a loaded :class:`~keraffe.caffe.net.CaffeNet` before
  conversion: TF's SpaceToBatchND, convolution, BatchToSpaceND folded into one
  dilated convolution; BatchNorm + Scale fused into one layer.
* Keras -> Caffe, over the net a conversion has drafted (the conversion's
  context: its net, weights, blob shapes and names): the handlers write what
  Keras computes (draft zero padding and Keras pooling layers, convolutions
  padded side by side), and the passes make that Caffe 1.0, exactly.
* For the reference runtimes: fork layers spelled with BVLC layers
  (:mod:`.bvlc_spelling`).
"""

from keraffe.passes.absorb_zero_padding import absorb_zero_padding
from keraffe.passes.convolution_padding import symmetric_convolution_padding
from keraffe.passes.fold_space_to_batch import fold_space_to_batch
from keraffe.passes.fuse_batchnorm_scale import fuse_batchnorm_scale
from keraffe.passes.pooling_windows import place_pooling_windows

#: Caffe -> Keras pipeline, in order.
CAFFE_TO_KERAS_PASSES = (fold_space_to_batch, fuse_batchnorm_scale)

#: Keras -> Caffe pipeline, in order. Poolings read the draft zero padding before
#: absorb_zero_padding removes it, and it adds the padding that the convolutions'
#: symmetric padding then settles.
KERAS_TO_CAFFE_PASSES = (place_pooling_windows, absorb_zero_padding, symmetric_convolution_padding)


def run_caffe_to_keras_passes(net):
    for apply in CAFFE_TO_KERAS_PASSES:
        net = apply(net)
    return net


def run_keras_to_caffe_passes(ctx) -> list:
    """Run the Keras -> Caffe pipeline on a conversion's context; returns (Caffe layer, error) problems."""
    problems = []
    for apply in KERAS_TO_CAFFE_PASSES:
        problems.extend(apply(ctx))
    return problems
