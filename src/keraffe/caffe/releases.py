"""Which layer types a Caffe release has: what every Caffe build, vendor toolchain and converter knows."""

from __future__ import annotations

#: Caffe 1.0 (April 2017), the inference layer types. Its pooling always rounds up.
CAFFE_1_0_TYPES = frozenset({
    "AbsVal", "ArgMax", "BNLL", "BatchNorm", "Bias", "Concat", "Convolution", "Crop", "Deconvolution", "Dropout",
    "DummyData", "ELU", "Eltwise", "Embed", "Exp", "Flatten", "InnerProduct", "Input", "LRN", "LSTM", "Log", "MVN",
    "Parameter", "Pooling", "Power", "PReLU", "RNN", "ReLU", "Reduction", "Reshape", "Scale", "Sigmoid", "Silence",
    "Slice", "Softmax", "Split", "TanH", "Threshold", "Tile",
})
