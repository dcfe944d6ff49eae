"""keraffe: exact Keras 3 <-> Caffe conversion, and pruning for Keras 3 models."""

__version__ = "0.1.0"
