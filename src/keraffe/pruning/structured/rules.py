"""How each operation moves channels: one small rule per family of layers and ops.

:func:`classify` answers, for one call of one operation, a *kind* and, for a
barrier, the reason:

* SOURCE creates channels (Conv, Dense, SeparableConv, Conv*Transpose, the
  recurrent layers LSTM/GRU/SimpleRNN and Bidirectional over them,
  TimeDistributed over a source, Embedding);
* CHANNELWISE keeps every channel where it is (BatchNormalization,
  element-wise activations, pooling, padding, depthwise convolutions, reductions
  over other axes, TimeDistributed over such a layer);
* MERGE couples equal positions of its inputs (Add, Multiply, ... and the
  keras.ops arithmetic);
* CONCAT joins layouts along the channel axis; SPLIT cuts one into pieces
  (keras.ops.split, slicing ``x[..., a:b]``);
* RESHAPE keeps or flattens the channel axis;
* SHAPE reads nothing but its inputs' shapes (SSD's PriorBox): its inputs may
  shrink freely, its output is a constant;
* BARRIER: anything else. Every channel entering a barrier is kept, and the
  reason is reported; never guessed.

Only Keras' own classes (and keraffe's, for Caffe nets) are recognised: a
user's subclass may compute anything, so it is a barrier unless its call is
traced into a graph of known layers (see dependency).
"""

from __future__ import annotations

import numpy as np

from keraffe.pruning.structured.sources import CONV, CONV_TRANSPOSE, DEPTHWISE, SEPARABLE, recurrent_cell

SOURCE = "source"
CHANNELWISE = "channelwise"
MERGE = "merge"
CONCAT = "concat"
SPLIT = "split"
RESHAPE = "reshape"
SHAPE = "shape"
BARRIER = "barrier"

#: Activations that act on each element alone, so removing a channel changes no other channel.
ELEMENTWISE_ACTIVATIONS = frozenset({
    "linear", "relu", "relu6", "sigmoid", "tanh", "swish", "silu", "elu", "selu", "softplus", "softsign",
    "gelu", "hard_sigmoid", "hard_silu", "hard_swish", "exponential", "leaky_relu", "mish", "celu",
    "log_sigmoid", "sparse_plus", "squareplus", "soft_shrink", "hard_shrink", "tanh_shrink", "hard_tanh",
    "threshold",
})

_PASS_THROUGH = (
    "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization", "Identity",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
)
_MERGES = ("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average")
#: keras.ops arithmetic: element-wise over broadcast inputs (a single tensor input: with a constant).
_OPS_MERGES = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power")
#: keras.ops (and keras.activations) classes that act on each element alone.
_OPS_ELEMENTWISE = (
    "Abs", "Negative", "Square", "Sqrt", "Exp", "Log", "Log1p", "Expm1", "Clip", "Sign", "Floor", "Ceil", "Round",
    "Reciprocal", "Rsqrt", "Erf", "Cast", "Sigmoid", "HardSigmoid", "Relu", "Relu6", "Silu", "Swish", "HardSilu",
    "HardSwish", "Tanh", "Gelu", "Elu", "Selu", "Celu", "Softplus", "Softsign", "LeakyRelu", "Mish", "LogSigmoid",
    "ReLU", "StopGradient", "Copy", "SoftShrink", "HardShrink", "TanhShrink", "HardTanh",
)
_OPS_REDUCTIONS = ("Mean", "Sum", "Max", "Min", "Amax", "Amin", "Prod")
#: keraffe's own layers (from Caffe nets) that act on each element or each channel alone.
_KERAFFE_PASS_THROUGH = ("Power", "Exp", "Log", "Threshold", "AbsVal", "Clip", "Swish", "CaffePooling2D", "Interp")


def keras_class(operation, names) -> bool:
    """Exactly one of Keras' own classes: a user's subclass may compute anything, so it is a barrier."""
    cls = type(operation)
    return cls.__name__ in names and cls.__module__.startswith("keras.")


def _keraffe_class(operation, names) -> bool:
    cls = type(operation)
    return cls.__name__ in names and cls.__module__.startswith("keraffe.keras_layers")


def _channels_last(operation) -> bool:
    return getattr(operation, "data_format", "channels_last") == "channels_last"


def _activation_name(activation) -> str | None:
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", None)


def elementwise_activation(operation) -> bool:
    """Whether a layer's fused ``activation`` leaves each channel independent (softmax does not)."""
    return _activation_name(getattr(operation, "activation", None) or "linear") in ELEMENTWISE_ACTIVATIONS


def _rank(call) -> int | None:
    return len(call.inputs[0].shape) if call is not None and call.inputs else None


def _is_last_axis(axis, rank) -> bool:
    return rank is not None and axis is not None and axis % rank == rank - 1


def classify(operation, call=None) -> tuple[str, str]:
    """(kind, reason): how an operation moves channels; the reason says why a barrier is one."""
    import keras

    name = type(operation).__name__
    rules = _RULES if isinstance(operation, keras.layers.Layer) else _OPS_RULES
    for rule in rules:
        verdict = rule(operation, call)
        if verdict is not None:
            return verdict
    prefix = "" if isinstance(operation, keras.layers.Layer) else "keras.ops."
    return BARRIER, f"{prefix}{name} is not understood by the channel planner"


# Each rule below recognises one family and says how it moves channels (None: not its family).

def _convolution(operation, call):
    if keras_class(operation, CONV) or keras_class(operation, CONV_TRANSPOSE):
        if not _channels_last(operation):
            return BARRIER, "channels_first data"
        groups = getattr(operation, "groups", 1)
        if groups != 1:
            if call is not None and groups == operation.filters == call.inputs[0].shape[-1]:
                return CHANNELWISE, ""  # a depthwise convolution written as a grouped one: one filter per channel
            return BARRIER, f"grouped convolution (groups={groups})"
        return SOURCE, ""
    if keras_class(operation, ("Dense",)):
        return SOURCE, ""
    return None


def _depthwise_family(operation, call):
    """SeparableConv creates channels (its pointwise part); DepthwiseConv keeps them, one filter each."""
    for names, kind in ((SEPARABLE, SOURCE), (DEPTHWISE, CHANNELWISE)):
        if keras_class(operation, names):
            if not _channels_last(operation):
                return BARRIER, "channels_first data"
            if operation.depth_multiplier != 1:
                return BARRIER, f"depth_multiplier={operation.depth_multiplier}"
            return kind, ""
    return None


def _recurrent(operation, call):
    """LSTM/GRU/SimpleRNN units are channels; a unit is cut as all its gate columns and its state row."""
    if keras_class(operation, ("LSTM", "GRU", "SimpleRNN", "RNN")):
        if recurrent_cell(operation) is None:
            return BARRIER, f"a recurrent layer over {type(operation.cell).__name__}, which keraffe cannot cut"
        if operation.stateful:
            return BARRIER, "a stateful recurrent layer keeps states shaped by its units between batches"
        return SOURCE, ""
    if keras_class(operation, ("Bidirectional",)):
        if recurrent_cell(operation.forward_layer) is None or recurrent_cell(operation.backward_layer) is None:
            return BARRIER, f"Bidirectional over {type(operation.forward_layer).__name__}"
        if operation.forward_layer.cell.units != operation.backward_layer.cell.units:
            return BARRIER, "Bidirectional with directions of different widths"
        if operation.merge_mode not in ("concat", "sum", "ave", "mul"):
            return BARRIER, f"Bidirectional with merge_mode={operation.merge_mode!r}"
        if operation.forward_layer.stateful:
            return BARRIER, "a stateful recurrent layer keeps states shaped by its units between batches"
        return SOURCE, ""
    if keras_class(operation, ("Embedding",)):
        return SOURCE, ""
    return None


def _time_distributed(operation, call):
    """TimeDistributed applies its layer at every step: it moves channels as that layer does."""
    if not keras_class(operation, ("TimeDistributed",)):
        return None
    kind, reason = classify(operation.layer, None)
    if kind in (SOURCE, CHANNELWISE) and not keras_class(operation.layer, ("LSTM", "GRU", "SimpleRNN", "RNN",
                                                                          "Bidirectional", "Embedding")):
        return kind, ""
    return BARRIER, f"TimeDistributed over {type(operation.layer).__name__}" + (f": {reason}" if reason else "")


def _normalisation_and_activation(operation, call):
    if keras_class(operation, ("BatchNormalization",)):
        rank = _rank(call)
        axis = operation.axis if isinstance(operation.axis, int) else None
        return (CHANNELWISE, "") if axis == -1 or (axis is not None and axis == (rank or 0) - 1) \
            else (BARRIER, f"normalises over axis {operation.axis}, not the channel axis")
    if keras_class(operation, ("Activation",)):
        return (CHANNELWISE, "") if elementwise_activation(operation) else (
            BARRIER, f"activation {_activation_name(operation.activation)!r} mixes channels")
    if keras_class(operation, ("PReLU",)):
        return CHANNELWISE, ""
    if keras_class(operation, ("Rescaling",)):
        scalar = np.ndim(operation.scale) == 0 and np.ndim(operation.offset) == 0
        return (CHANNELWISE, "") if scalar else (BARRIER, "per-channel Rescaling factors")
    return None


def _per_channel(operation, call):
    if keras_class(operation, _PASS_THROUGH) or _keraffe_class(operation, _KERAFFE_PASS_THROUGH):
        return (CHANNELWISE, "") if _channels_last(operation) else (BARRIER, "channels_first data")
    if _keraffe_class(operation, ("AxisSlice",)):  # Caffe's Slice: a crop when it cuts a spatial axis
        rank = _rank(call) or 0
        return (CHANNELWISE, "") if operation.axis not in (-1, rank - 1) else (BARRIER, "slices the channel axis")
    return None


def _merge_concat_reshape(operation, call):
    if keras_class(operation, _MERGES) or _keraffe_class(operation, ("WeightedSum",)):
        return MERGE, ""
    if keras_class(operation, ("Concatenate",)):
        return CONCAT, ""
    if keras_class(operation, ("Flatten",)):
        return (RESHAPE, "") if _channels_last(operation) else (BARRIER, "channels_first data")
    if keras_class(operation, ("Reshape",)):
        return RESHAPE, ""
    return None


def _ssd(operation, call):
    """SSD's PriorBox computes its boxes from its inputs' spatial sizes alone: their channels do not matter.

    DetectionOutput reads each head's channels as priors x 4 box offsets and
    priors x classes scores, so the heads feeding it keep every channel.
    """
    if _keraffe_class(operation, ("PriorBox",)):
        return SHAPE, ""
    if _keraffe_class(operation, ("DetectionOutput",)):
        return BARRIER, "SSD's DetectionOutput reads its inputs as priors x 4 box offsets and priors x classes scores"
    return None


_RULES = (_convolution, _depthwise_family, _recurrent, _time_distributed, _normalisation_and_activation,
          _per_channel, _merge_concat_reshape, _ssd)


# --- raw keras.ops calls recorded in functional graphs (and traced composite layers) ------------------

def _ops_arithmetic(operation, call):
    if keras_class(operation, _OPS_MERGES):
        return MERGE, ""
    if keras_class(operation, _OPS_ELEMENTWISE):
        if call is not None and len(call.inputs) != 1:
            return BARRIER, f"keras.ops.{type(operation).__name__} of {len(call.inputs)} tensors"
        return CHANNELWISE, ""
    return None


def _ops_reductions_and_padding(operation, call):
    rank = _rank(call)
    if keras_class(operation, _OPS_REDUCTIONS):
        axes = operation.axis
        axes = () if axes is None else (axes,) if isinstance(axes, int) else tuple(axes)
        if not axes or rank is None or any(_is_last_axis(a, rank) for a in axes):
            return BARRIER, f"keras.ops.{type(operation).__name__} reduces over the channel axis"
        return CHANNELWISE, ""
    if keras_class(operation, ("Pad",)):
        widths = np.asarray(operation.pad_width, dtype=object)
        if rank is None or widths.ndim != 2 or len(widths) != rank or tuple(widths[-1]) != (0, 0):
            return BARRIER, "keras.ops.pad pads the channel axis"
        return CHANNELWISE, ""
    return None


def _ops_layout(operation, call):
    rank = _rank(call)
    if keras_class(operation, ("Concatenate",)):
        return CONCAT, ""
    if keras_class(operation, ("Reshape",)):
        return RESHAPE, ""
    if keras_class(operation, ("Split",)):
        if rank is None or not isinstance(operation.axis, int):
            return BARRIER, "keras.ops.split along an unknown axis"
        return SPLIT, ""
    if keras_class(operation, ("GetItem",)):
        return (SPLIT, "") if channel_slice(call) is not None else (
            BARRIER, "indexing that does not keep the channel axis as a plain slice")
    return None


_OPS_RULES = (_ops_arithmetic, _ops_reductions_and_padding, _ops_layout)


def channel_slice(call) -> slice | None:
    """For ``x[key]``: the slice it takes of the channel axis (``slice(None)`` when untouched), or None.

    Only keys made of slices and one Ellipsis qualify: integers, None and
    arrays drop or add axes, and then the channel axis may move.
    """
    if call is None or not call.inputs:
        return None
    args, _ = call.arguments()
    if len(args) != 2:
        return None
    key = args[1] if isinstance(args[1], tuple) else (args[1],)
    rank = len(call.inputs[0].shape)
    if any(not isinstance(k, slice) and k is not Ellipsis for k in key) or sum(k is Ellipsis for k in key) > 1:
        return None
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key = key[:at] + (slice(None),) * (rank - len(key) + 1) + key[at + 1:]
    key = key + (slice(None),) * (rank - len(key))
    if len(key) != rank or key[0] != slice(None):
        return None
    last = key[-1]
    if last.step not in (None, 1):
        return None
    return last
