"""Graph passes over a loaded Caffe net, run in a fixed pipeline before conversion.

Each pass is one module with one function that takes a CaffeNet and returns a
new one; its docstring shows the graph before and after. A pass never changes
what the net computes.
"""

from keraffe.passes.fuse_batchnorm_scale import fuse_batchnorm_scale

#: Caffe -> Keras pipeline, in order.
CAFFE_TO_KERAS_PASSES = (fuse_batchnorm_scale,)


def run_caffe_to_keras_passes(net):
    for apply in CAFFE_TO_KERAS_PASSES:
        net = apply(net)
    return net
