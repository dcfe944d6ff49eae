"""keraffe's own Keras layers, for Caffe semantics no standard Keras layer computes exactly.

Each is registered serializable under the package name "keraffe", so a model
that holds them reloads with ``keras.saving.load_model(path)`` (safe_mode on)
once ``keraffe`` is imported. All are written with ``keras.ops`` only, so they
run on the TensorFlow, JAX and PyTorch backends.
"""

from keraffe.keras_layers.conv import GroupedConv2DTranspose
from keraffe.keras_layers.detection import (DetectionOutput, PriorBox, Proposal, Yolov3DetectionOutput,
                                            YoloDetectionOutput)
from keraffe.keras_layers.elementwise import AbsVal, Clip, Exp, Log, Power, Swish, Threshold, WeightedSum
from keraffe.keras_layers.normalization import LRN, MVN, AxisScale, L2Normalize
from keraffe.keras_layers.pooling import CaffePooling2D, MaxPoolingWithMask, MaxUnpooling2D, PSROIPooling, ROIPooling
from keraffe.keras_layers.resize import Interp, ResizeBilinear
from keraffe.keras_layers.tensor_ops import (ArgMax, AxisSlice, BatchToSpaceND, ConstantBlob, Reduction,
                                             SpaceToBatchND, Subsample2D, Tile)

__all__ = [
    "AbsVal", "ArgMax", "GroupedConv2DTranspose", "AxisScale", "AxisSlice", "BatchToSpaceND", "CaffePooling2D", "Clip",
    "ConstantBlob", "DetectionOutput", "Exp", "Interp", "L2Normalize", "LRN", "Log", "MVN", "MaxPoolingWithMask",
    "MaxUnpooling2D", "PSROIPooling", "Power", "PriorBox", "Proposal", "ROIPooling", "Reduction", "ResizeBilinear", "SpaceToBatchND", "Subsample2D", "Swish",
    "Threshold", "Tile", "WeightedSum", "YoloDetectionOutput", "Yolov3DetectionOutput",
]
