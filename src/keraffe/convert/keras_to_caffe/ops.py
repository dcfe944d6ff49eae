"""Raw keras.ops calls in functional graphs (and in the traced calls of composite layers).

Code that writes ``keras.ops.mean(x, axis=(1, 2), keepdims=True)`` or
``x[:, 1:]`` on a Keras tensor records an op, not a layer. Every op that Caffe
1.0 computes exactly converts here:

* elementwise math: arithmetic with tensors or constants (broadcast through
  Caffe's Scale/Bias, or Tile where no run of axes lines up), abs, negation,
  square, sqrt, reciprocal, power by a constant, exp, log, clip, maximum and
  minimum, and the activations (relu ... softmax);
* reductions: mean, sum, max and min over any axes, with or without keepdims
  (Reduction over trailing axes, global or one-axis Pooling elsewhere);
* shapes: transpose (the recorded layout changes, no data moves), reshape,
  expand_dims, squeeze, concatenate, stack;
* slicing (``x[...]``, with steps) and split: Caffe's Slice;
* matmul and dot by a constant matrix: InnerProduct (or a 1x1 convolution
  over channels-first blobs, as Dense).

The product of two activations (attention's scores), erf, and anything whose
shape depends on values has no exact Caffe form and is refused with the reason.
"""

from __future__ import annotations

import math

import numpy as np

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.convert.keras_to_caffe.activations import ActivationBuilder, emit_activation
from keraffe.convert.keras_to_caffe.building import concat, eltwise, reshape, scaled, slice_axis
from keraffe.convert.keras_to_caffe.context import CaffeValue
from keraffe.errors import ConversionError
from keraffe.host_memory import weight_array
from keraffe.layout import Layout, identity, transposed, with_unit_axis, without_axes

def _arguments(call) -> list:
    return list(call.arguments()[0])


def _is_tensor(value) -> bool:
    import keras

    return isinstance(value, keras.KerasTensor)


def constant_array(value) -> np.ndarray:
    """A constant operand (a number, an array, a layer's weight) as float32 NumPy."""
    import keras

    if isinstance(value, keras.Variable):
        return np.asarray(weight_array(value), np.float32)
    return np.asarray(value, np.float32)


def _plain(ctx, value: CaffeValue, name: str) -> CaffeValue:
    """The value with a per-axis layout: a flattened NHWC blob is put in Keras' order first."""
    if value.layout.flattened_from is None:
        return value
    rank = len(value.shape)
    return CaffeValue(ctx.blob_in(value, identity(rank), name), identity(rank), value.shape, value.non_negative)


def _emit(ctx, operation, call, blob, layout, index=0, non_negative=False):
    return ctx.emit(operation, call, index, call.outputs[index], blob, layout, non_negative=non_negative)


# ------------------------------------------------------------------ arithmetic


@keras_layer("ops.Add", "ops.Subtract", "ops.Multiply", "ops.Divide", "ops.TrueDivide")
def arithmetic(ctx, operation, call):
    args = _arguments(call)
    if len(args) != 2:
        raise ConversionError("expected a binary operation")
    kind = {"Add": "sum", "Subtract": "subtract", "Multiply": "prod"}.get(type(operation).__name__, "divide")
    tensors = [i for i, a in enumerate(args) if _is_tensor(a)]
    if len(tensors) == 2:
        _two_tensors(ctx, operation, call, kind, [ctx.value(a) for a in args])
        return
    tensor_first = tensors[0] == 0
    value = ctx.value(args[tensors[0]])
    constant = constant_array(args[1 - tensors[0]])
    name = ctx.layer_name(operation, call)
    if kind == "divide" and not tensor_first:
        # c / x = c * x^-1: Caffe's Power computes the reciprocal (one rounding), then the constant scales it.
        inverse = scaled(ctx, ctx.unique(f"{name}/reciprocal"), value.blob, power=-1.0)
        value = CaffeValue(inverse, value.layout, value.shape)
        kind, tensor_first = "prod", True
    if kind == "subtract" and not tensor_first:
        negated = scaled(ctx, ctx.unique(f"{name}/negate"), value.blob, scale=-1.0)
        value = CaffeValue(negated, value.layout, value.shape)
        kind = "sum"
    elif kind == "subtract":
        constant, kind = -constant, "sum"
    elif kind == "divide":
        constant, kind = (1.0 / constant.astype(np.float64)).astype(np.float32), "prod"
    _with_constant(ctx, operation, call, value, constant, kind, name)


def _with_constant(ctx, operation, call, value, constant, kind, name):
    """x + c or x * c for a constant c that broadcasts over x: Power for a scalar, Scale for an array."""
    value = _plain(ctx, value, name)
    keras_shape = value.layout.keras_shape(value.shape)
    if constant.ndim > len(keras_shape) or (constant.ndim == len(keras_shape) and constant.shape[0] != 1):
        raise ConversionError(f"a constant of shape {constant.shape} would broadcast over the batch axis")
    full = np.broadcast_to(constant, (1,) + tuple(keras_shape[1:]))
    caffe = value.layout.axes_to_caffe(full)[0]
    varying = [axis for axis in range(caffe.ndim) if not np.all(caffe == caffe.take([0], axis=axis))]
    if not varying:
        c = float(caffe.reshape(-1)[0])
        top = scaled(ctx, name, value.blob, scale=c if kind == "prod" else 1.0, shift=c if kind == "sum" else 0.0)
        ctx.note(operation, ["Power"], f"keras.ops {type(operation).__name__.lower()} with a constant")
        non_negative = value.non_negative and c >= 0
        _emit(ctx, operation, call, top, value.layout, non_negative=non_negative)
        return
    first, last = varying[0], varying[-1]
    index = tuple(slice(None) if first <= axis <= last else slice(0, 1) for axis in range(caffe.ndim))
    segment = np.ascontiguousarray(caffe[index].reshape(caffe.shape[first:last + 1]), np.float32)
    layer = ctx.add("Scale", name, [value.blob])
    param = layer.scale_param
    if first + 1 != 1:
        param.axis = first + 1
    param.num_axes = last - first + 1
    if kind == "prod":
        ctx.weights[name] = [segment]
    else:
        param.bias_term = True
        ctx.weights[name] = [np.ones_like(segment), segment]
    ctx.note(operation, ["Scale"], f"keras.ops {type(operation).__name__.lower()} with a constant array: Caffe's "
             f"Scale{' with a bias' if kind == 'sum' else ''} over blob axes {first + 1}..{last + 1}")
    _emit(ctx, operation, call, name, value.layout)


def _two_tensors(ctx, operation, call, kind, values):
    """A binary op of two tensors: Eltwise, the operands broadcast where their shapes differ."""
    from keraffe.convert.keras_to_caffe.merging import elementwise

    name = ctx.layer_name(operation, call)
    if kind == "divide":
        inverse = scaled(ctx, ctx.unique(f"{name}/reciprocal"), values[1].blob, power=-1.0)
        values = [values[0], CaffeValue(inverse, values[1].layout, values[1].shape)]
        kind = "prod"
    elementwise(ctx, operation, call, kind, values=values, name=name)


# ------------------------------------------------------------------ elementwise functions


_POWER_OPS = {"ops.Negative": dict(scale=-1.0), "ops.Sqrt": dict(power=0.5), "ops.Reciprocal": dict(power=-1.0)}


@keras_layer(*_POWER_OPS)
def power_function(ctx, operation, call):
    from keraffe.convert.keras_to_caffe import operation_kind

    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    parameters = _POWER_OPS[operation_kind(operation)]
    top = scaled(ctx, name, value.blob, **parameters)
    _emit(ctx, operation, call, top, value.layout, non_negative=operation_kind(operation) == "ops.Sqrt")


@keras_layer("ops.Square")
def square(ctx, operation, call):
    """x * x: an Eltwise product of the blob with itself (exact, where pow(x, 2) might not be)."""
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    top = eltwise(ctx, name, [value.blob, value.blob], "prod")
    _emit(ctx, operation, call, top, value.layout, non_negative=True)


@keras_layer("ops.Absolute", "ops.Abs")
def absolute(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    ctx.add("AbsVal", name, [value.blob])
    _emit(ctx, operation, call, name, value.layout, non_negative=True)


@keras_layer("ops.Exp", "ops.Log")
def exp_log(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    is_exp = type(operation).__name__ == "Exp"
    ctx.add("Exp" if is_exp else "Log", name, [value.blob])
    _emit(ctx, operation, call, name, value.layout, non_negative=is_exp)


@keras_layer("ops.Power")
def power(ctx, operation, call):
    """x ** c is Caffe's Power; c ** x is Caffe's Exp with base c."""
    base, exponent = _arguments(call)
    name = ctx.layer_name(operation, call)
    if _is_tensor(base) and _is_tensor(exponent):
        raise ConversionError("a tensor raised to a tensor power has no Caffe 1.0 form")
    if _is_tensor(base):
        c = constant_array(exponent)
        if c.size != 1:
            raise ConversionError("a power by a constant array has no Caffe layer (Caffe's Power takes one exponent)")
        value = ctx.value(base)
        top = scaled(ctx, name, value.blob, power=float(c.reshape(-1)[0]))
        _emit(ctx, operation, call, top, value.layout)
        return
    c = constant_array(base)
    if c.size != 1 or float(c.reshape(-1)[0]) <= 0:
        raise ConversionError("a constant raised to a tensor power converts for one positive base only")
    value = ctx.value(exponent)
    layer = ctx.add("Exp", name, [value.blob])
    layer.exp_param.base = float(c.reshape(-1)[0])
    _emit(ctx, operation, call, name, value.layout, non_negative=True)


#: keras.ops activations and the activation names of :mod:`.activations` that build them.
_ACTIVATION_OPS = {"ops.Relu": "relu", "ops.Relu6": "relu6", "ops.Sigmoid": "sigmoid", "ops.Tanh": "tanh",
                   "ops.Softplus": "softplus", "ops.Softsign": "softsign", "ops.Silu": "silu",
                   "ops.HardSigmoid": "hard_sigmoid", "ops.HardSilu": "hard_silu", "ops.Selu": "selu",
                   "ops.LeakyRelu": "leaky_relu", "ops.Elu": "elu", "ops.Softmax": "softmax", "ops.Gelu": "gelu"}


@keras_layer(*_ACTIVATION_OPS)
def activation_op(ctx, operation, call):
    from keraffe.convert.keras_to_caffe import operation_kind

    value = _plain(ctx, ctx.value(call.inputs[0]), operation.name)
    name = ctx.layer_name(operation, call)
    function = _ACTIVATION_OPS[operation_kind(operation)]
    config, axis = {}, None
    if function == "leaky_relu":
        config["negative_slope"] = float(operation.negative_slope)
    if function == "elu" and float(getattr(operation, "alpha", 1.0)) != 1.0:
        top = ActivationBuilder(ctx, name, value.blob, name, final_name=name)
        layer = top._layer("ELU", "elu", [value.blob], final=True)
        layer.elu_param.alpha = float(operation.alpha)
        _emit(ctx, operation, call, name, value.layout)
        return
    if function == "gelu" and getattr(operation, "approximate", True):
        function = "gelu_tanh"
    if function == "softmax":
        axes = operation.axis if isinstance(operation.axis, (list, tuple)) else [operation.axis]
        if len(axes) != 1:
            raise ConversionError("softmax over several axes has no Caffe layer")
        axis = value.layout.perm[axes[0] % len(value.shape)]
    emit_activation(ctx, operation, call, call.outputs[0], name, value, function, config, softmax_axis=axis)


@keras_layer("ops.Clip")
def clip(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    low, high = float(operation.x_min), float(operation.x_max)
    builder = ActivationBuilder(ctx, name, value.blob, name, final_name=name)
    top = builder.clip(value.blob, "clip", low, high, final=True)
    if len(builder.layers) > 1:
        ctx.note(operation, builder.layers, f"clip to [{low:g}, {high:g}] built from Caffe "
                 f"{'/'.join(sorted(set(builder.layers)))}")
    _emit(ctx, operation, call, top, value.layout, non_negative=low >= 0)


@keras_layer("ops.Maximum", "ops.Minimum")
def maximum_minimum(ctx, operation, call):
    """max/min of two tensors (Eltwise MAX); with a constant c, c + ReLU(x - c) and c - ReLU(c - x)."""
    from keraffe.convert.keras_to_caffe.merging import elementwise

    args = _arguments(call)
    is_max = type(operation).__name__ == "Maximum"
    tensors = [a for a in args if _is_tensor(a)]
    if len(tensors) == 2:
        elementwise(ctx, operation, call, "max" if is_max else "min")
        return
    value = ctx.value(tensors[0])
    c = constant_array(next(a for a in args if not _is_tensor(a)))
    if c.size != 1:
        raise ConversionError("max/min with a constant array has no single Caffe form")
    c = float(c.reshape(-1)[0])
    name = ctx.layer_name(operation, call)
    if is_max:
        shifted = scaled(ctx, ctx.unique(f"{name}/shifted"), value.blob, shift=-c)
    else:
        shifted = scaled(ctx, ctx.unique(f"{name}/shifted"), value.blob, scale=-1.0, shift=c)
    positive = ctx.add("ReLU", ctx.unique(f"{name}/relu"), [shifted]).top[0]
    top = scaled(ctx, name, positive, scale=1.0 if is_max else -1.0, shift=c)
    ctx.note(operation, ["Power", "ReLU", "Power"], f"{'max' if is_max else 'min'} with a constant from ReLU")
    _emit(ctx, operation, call, top, value.layout, non_negative=is_max and c >= 0)


@keras_layer("ops.Cast", "ops.ConvertToTensor")
def cast(ctx, operation, call):
    """A cast between float types changes nothing at float32; any other cast would round or wrap."""
    import keras

    if getattr(operation, "sparse", False) or getattr(operation, "ragged", False):
        raise ConversionError("a sparse or ragged tensor has no Caffe form")
    dtype = keras.backend.standardize_dtype(operation.dtype or call.inputs[0].dtype)
    source = keras.backend.standardize_dtype(call.inputs[0].dtype)
    if not dtype.startswith("float") or not source.startswith("float"):
        raise ConversionError(f"a cast from {source} to {dtype} has no Caffe form (Caffe blobs are float)")
    ctx.alias(call.outputs[0], ctx.value(call.inputs[0]))
    ctx.note(operation, [], "a float cast: no Caffe layer")


# ------------------------------------------------------------------ reductions


def _reduced_axes(operation, rank) -> list[int]:
    axis = operation.axis
    if axis is None:  # everything, the batch axis included
        axis = list(range(rank))
    axes = sorted({a % rank for a in (axis if isinstance(axis, (list, tuple)) else [axis])})
    if 0 in axes:
        raise ConversionError("a reduction over the batch axis has no Caffe form (Caffe works per sample)")
    return axes


def _runs(axes) -> list[tuple[int, int]]:
    """Sorted axes grouped into runs of consecutive axes, as (first, last)."""
    runs = []
    for axis in axes:
        if runs and runs[-1][1] == axis - 1:
            runs[-1] = (runs[-1][0], axis)
        else:
            runs.append((axis, axis))
    return runs


@keras_layer("ops.Mean", "ops.Sum", "ops.Max", "ops.Min")
def reduce(ctx, operation, call):
    """A reduction over Keras axes: the blob axes that hold them, one run of consecutive axes at a time.

    A run that ends the blob is Caffe's Reduction (SUM or MEAN) where the
    target has it. Any other run is pooled: the blob reshaped to (N, before, run, after) and pooled with
    a (run x 1) window (MAX, or AVE for a mean, times the run's size for a
    sum); over an image's two spatial axes, global pooling. A minimum is
    minus the maximum of minus x. The reduced axes stay as size 1 and a final
    Reshape drops them without keepdims.
    """
    kind = type(operation).__name__.lower()
    value = _plain(ctx, ctx.value(call.inputs[0]), operation.name)
    name = ctx.layer_name(operation, call)
    rank = len(value.shape)
    axes = _reduced_axes(operation, rank)
    caffe_axes = sorted(value.layout.perm[a] for a in axes)
    start = len(ctx.net.layer)
    blob = value.blob
    shape = list(value.shape)
    if kind == "min":
        blob = scaled(ctx, ctx.unique(f"{name}/negate"), blob, scale=-1.0)
    runs = _runs(caffe_axes)
    for number, (first, last) in enumerate(reversed(runs)):
        part = ctx.unique(f"{name}/axes{first}" if len(runs) > 1 else f"{name}/reduce")
        blob, shape = _reduce_run(ctx, part, blob, shape, first, last, kind)
    keepdims = bool(operation.keepdims)
    if kind == "min":
        blob = scaled(ctx, ctx.unique(f"{name}/negate_back"), blob, scale=-1.0)
    if keepdims:
        layout = value.layout
        final = reshape(ctx, name, blob, shape)
    else:
        layout = without_axes(value.layout, axes)
        kept = [d for axis, d in enumerate(shape) if axis not in caffe_axes]
        final = reshape(ctx, name, blob, kept)
    ctx.note(operation, ctx.caffe_types(start), f"keras.ops {kind} over Keras axes {axes}")
    _emit(ctx, operation, call, final, layout, non_negative=value.non_negative and kind != "min")


def _reduce_run(ctx, name, blob, shape, first, last, kind) -> tuple[str, list]:
    """Reduce blob axes first..last (kept as size 1); returns (blob, shape)."""
    size = int(np.prod(shape[first:last + 1]))
    after_shape = shape[:first] + [1] * (last - first + 1) + shape[last + 1:]
    image = len(shape) == 4 and (first, last) == (2, 3)
    if last == len(shape) - 1 and kind in ("mean", "sum") and not image and ctx.target.allows("Reduction"):
        layer = ctx.add("Reduction", name, [blob])
        layer.reduction_param.operation = getattr(layer.reduction_param, kind.upper())
        layer.reduction_param.axis = first
        return layer.top[0], after_shape
    before = int(np.prod(shape[1:first]))
    after = int(np.prod(shape[last + 1:]))
    bottom = blob if image else reshape(ctx, ctx.unique(f"{name}/as_image"), blob, [0, before, size, after])
    pooled = ctx.unique(f"{name}/pooled")
    layer = ctx.add("Pooling", pooled, [bottom])
    param = layer.pooling_param
    param.pool = param.MAX if kind in ("max", "min") else param.AVE
    if image:
        param.global_pooling = True
    else:
        param.kernel_h, param.kernel_w = size, 1
    top = pooled
    if kind == "sum":
        top = scaled(ctx, ctx.unique(f"{name}/sum"), pooled, scale=float(size))
    return top, after_shape


# ------------------------------------------------------------------ shapes


@keras_layer("ops.Transpose")
def transpose(ctx, operation, call):
    """No Caffe layer: the blob stays, and its layout records the new order of the Keras axes."""
    value = _plain(ctx, ctx.value(call.inputs[0]), operation.name)
    rank = len(value.shape)
    axes = tuple(range(rank))[::-1] if operation.axes is None else tuple(a % rank for a in operation.axes)
    if axes[0] != 0:
        raise ConversionError("a transpose that moves the batch axis has no Caffe form (Caffe works per sample)")
    ctx.alias(call.outputs[0], CaffeValue(value.blob, transposed(value.layout, axes), value.shape,
                                          value.non_negative))
    ctx.note(operation, [], "a transpose: the recorded layout changes, the data does not move")


@keras_layer("ops.Reshape")
def reshape_op(ctx, operation, call):
    from keraffe.convert.keras_to_caffe.core import reshape_value

    shape = tuple(int(d) if d is not None else -1 for d in call.outputs[0].shape)
    new = list(operation.newshape)
    if new and new[0] not in (-1, None) and call.inputs[0].shape[0] is not None and new[0] != call.inputs[0].shape[0]:
        raise ConversionError("a reshape that moves values across the batch axis has no Caffe form")
    reshape_value(ctx, operation, call, ctx.value(call.inputs[0]), shape[1:], ctx.layer_name(operation, call))


@keras_layer("ops.ExpandDims")
def expand_dims(ctx, operation, call):
    """A new size-1 Keras axis, held as a new last axis of the blob: a Reshape, no data moved."""
    value = _plain(ctx, ctx.value(call.inputs[0]), operation.name)
    name = ctx.layer_name(operation, call)
    layout = value.layout
    out_rank = len(call.outputs[0].shape)
    axes = operation.axis if isinstance(operation.axis, (list, tuple)) else [operation.axis]
    for axis in sorted(a % out_rank for a in axes):
        layout = with_unit_axis(layout, axis)
    top = reshape(ctx, name, value.blob, list(value.shape) + [1] * (out_rank - len(value.shape)))
    _emit(ctx, operation, call, top, layout, non_negative=value.non_negative)


@keras_layer("ops.Squeeze")
def squeeze(ctx, operation, call):
    value = _plain(ctx, ctx.value(call.inputs[0]), operation.name)
    name = ctx.layer_name(operation, call)
    keras_shape = value.layout.keras_shape(value.shape)
    rank = len(keras_shape)
    if operation.axis is None:
        axes = [a for a in range(1, rank) if keras_shape[a] == 1]
    else:
        axes = sorted({a % rank for a in (operation.axis if isinstance(operation.axis, (list, tuple))
                                           else [operation.axis])})
    if 0 in axes:
        raise ConversionError("squeezing the batch axis has no Caffe form")
    dropped = {value.layout.perm[a] for a in axes}
    top = reshape(ctx, name, value.blob, [d for i, d in enumerate(value.shape) if i not in dropped])
    _emit(ctx, operation, call, top, without_axes(value.layout, axes), non_negative=value.non_negative)


def _common_layout(ctx, values, name) -> list[CaffeValue]:
    """The values in one layout (the first's, or Keras' order when it is a flattening)."""
    layout = values[0].layout
    if layout.flattened_from is not None or any(v.layout != layout for v in values):
        layout = identity(len(values[0].shape)) if layout.flattened_from is not None else layout
    result = []
    for v in values:
        blob = ctx.blob_in(v, layout, name)
        result.append(CaffeValue(blob, layout, layout.caffe_shape(v.layout.keras_shape(v.shape))
                                 if v.layout.flattened_from is None else v.shape, v.non_negative))
    return result


def _tensor_list(call):
    tensors = _arguments(call)[0]
    if not all(_is_tensor(t) for t in tensors):
        raise ConversionError("joining a constant with tensors has no Caffe 1.0 form (Caffe 1.0 has no constant "
                              "layer that a deploy net can hold)")
    return tensors


@keras_layer("ops.Concatenate")
def concatenate(ctx, operation, call):
    values = _common_layout(ctx, [ctx.value(t) for t in _tensor_list(call)], operation.name)
    name = ctx.layer_name(operation, call)
    rank = len(values[0].shape)
    layout = values[0].layout
    concat(ctx, name, [v.blob for v in values], layout.perm[operation.axis % rank], name)
    _emit(ctx, operation, call, name, layout, non_negative=all(v.non_negative for v in values))


@keras_layer("ops.Stack")
def stack(ctx, operation, call):
    """Each tensor gets a size-1 axis (a Reshape: a new last blob axis), then Concat along it."""
    values = _common_layout(ctx, [ctx.value(t) for t in _tensor_list(call)], operation.name)
    name = ctx.layer_name(operation, call)
    rank = len(values[0].shape)
    axis = operation.axis % (rank + 1)
    layout = with_unit_axis(values[0].layout, axis)
    parts = [reshape(ctx, ctx.unique(f"{name}/part{i}"), v.blob, list(v.shape) + [1]) for i, v in enumerate(values)]
    concat(ctx, name, parts, rank, name)
    ctx.note(operation, ["Reshape"] * len(parts) + ["Concat"], "stack: a size-1 axis for each tensor, then Concat")
    _emit(ctx, operation, call, name, layout, non_negative=all(v.non_negative for v in values))


@keras_layer("ops.Pad")
def pad(ctx, operation, call):
    """Constant padding of an image's spatial axes: the draft zero padding of ZeroPadding2D.

    Padding with 0 is folded into the next convolution or pooling, or written
    out exactly; padding with -inf (keras_hub pads so before MAX pooling)
    becomes that pooling's own padding, which Caffe's MAX pooling skips alike.
    """
    from keraffe.layout import NHWC

    args, kwargs = call.arguments()
    fill = kwargs.get("constant_values", args[1] if len(args) > 1 else None)
    fill = 0.0 if fill is None else float(constant_array(fill).reshape(-1)[0])
    value = ctx.value(call.inputs[0])
    rank = len(value.shape)
    widths = list(operation.pad_width) * (rank if len(operation.pad_width) == 1 else 1)
    widths = [tuple(int(w) for w in pair) for pair in widths]
    if operation.mode != "constant":
        raise ConversionError(f"padding mode '{operation.mode}' has no Caffe 1.0 form")
    if rank != 4 or value.layout != NHWC or any(widths[a] != (0, 0) for a in (0, 3)):
        raise ConversionError("constant padding converts on the spatial axes of an image (N, H, W, C) only")
    if fill not in (0.0, float("-inf")):
        raise ConversionError(f"padding with {fill:g} has no exact Caffe form (zeros, or -inf before MAX pooling)")
    padded = ctx.zero_pad(ctx.scoped(operation.name), value, (widths[1], widths[2]),
                          ctx.caffe_shape(call.outputs[0], NHWC), fill)
    ctx.emit(operation, call, 0, call.outputs[0], padded.blob, NHWC, non_negative=value.non_negative and fill == 0)


# ------------------------------------------------------------------ slicing


def _index_key(key, rank) -> list:
    """A NumPy index as one entry per input axis (slice or int), with the new axes (None) in place."""
    key = list(key) if isinstance(key, tuple) else [key]
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise ConversionError("an index with several ellipses")
    used = sum(1 for k in key if k is not None and k is not Ellipsis)
    expanded = []
    for k in key:
        if k is Ellipsis:
            expanded.extend([slice(None)] * (rank - used))
        else:
            expanded.append(k)
    expanded.extend([slice(None)] * (rank - sum(1 for k in expanded if k is not None)))
    for k in expanded:
        if not (k is None or isinstance(k, (slice, int, np.integer))):
            raise ConversionError("indexing with a tensor or a list is a data-dependent gather, which Caffe lacks")
    return expanded


@keras_layer("ops.GetItem")
def get_item(ctx, operation, call):
    """``x[...]`` with slices, integers and new axes: Caffe's Slice per sliced axis, Reshape for the rest.

    A step s > 1 keeps every s-th element: the axis is cut to a multiple of s,
    split by a Reshape into (n, s) and the first of each s kept.
    """
    value = _plain(ctx, ctx.value(call.inputs[0]), operation.name)
    name = ctx.layer_name(operation, call)
    key = _index_key(_arguments(call)[1], len(value.shape))
    start_layers = len(ctx.net.layer)
    blob, shape, layout = value.blob, list(value.shape), value.layout
    keras_axis = 0
    dropped, new_axes = [], []
    for position, k in enumerate(key):
        if k is None:
            new_axes.append(position)
            continue
        axis = layout.perm[keras_axis]
        size = shape[axis]
        if keras_axis == 0 and not (isinstance(k, slice) and k == slice(None)):
            raise ConversionError("indexing the batch axis has no Caffe form (Caffe works per sample)")
        if isinstance(k, (int, np.integer)):
            index = int(k) % size
            blob = slice_axis(ctx, ctx.unique(f"{name}/axis{keras_axis}"), blob, axis, [(index, index + 1)], size)[0]
            shape[axis] = 1
            dropped.append(keras_axis)
        else:
            blob, shape[axis] = _slice_range(ctx, f"{name}/axis{keras_axis}", blob, shape, axis, k)
        keras_axis += 1
    if dropped:
        dropped_caffe = {layout.perm[a] for a in dropped}
        shape = [d for i, d in enumerate(shape) if i not in dropped_caffe]
        layout = without_axes(layout, dropped)
    for position in new_axes:
        layout = with_unit_axis(layout, position)
        shape.append(1)
    if blob == value.blob and not (dropped or new_axes):
        ctx.alias(call.outputs[0], value)
        return
    top = reshape(ctx, name, blob, shape) if (dropped or new_axes) else blob
    types = ctx.caffe_types(start_layers)
    if len(types) > 1:
        ctx.note(operation, types, "slicing as Caffe Slice (cut parts silenced) and Reshape")
    _emit(ctx, operation, call, top, layout, non_negative=value.non_negative)


def _slice_range(ctx, name, blob, shape, axis, key: slice) -> tuple[str, int]:
    size = shape[axis]
    start, stop, step = key.indices(size)
    if step < 0:
        raise ConversionError("a reversing slice (negative step) is not converted")
    count = len(range(start, stop, step))
    if count == 0:
        raise ConversionError("an empty slice")
    if step == 1:
        if (start, stop) == (0, size):
            return blob, size
        return slice_axis(ctx, ctx.unique(name), blob, axis, [(start, stop)], size)[0], count
    # Whole strides fit before the axis ends: cut them, split the axis into (n, step), keep the first of each.
    whole = min(count, (size - start) // step)
    parts = []
    if whole:
        cut = slice_axis(ctx, ctx.unique(name), blob, axis, [(start, start + step * whole)], size)[0]
        split_blob = reshape(ctx, ctx.unique(f"{name}/steps"), cut, shape[:axis] + [whole, step] + shape[axis + 1:])
        first = slice_axis(ctx, ctx.unique(f"{name}/every{step}"), split_blob, axis + 1, [(0, 1)], step)[0]
        parts.append(reshape(ctx, ctx.unique(f"{name}/strided"), first, shape[:axis] + [whole] + shape[axis + 1:]))
    if whole < count:
        # The last element, whose stride runs past the axis: one more single slice.
        last = start + step * whole
        parts.append(slice_axis(ctx, ctx.unique(f"{name}/last"), blob, axis, [(last, last + 1)], size)[0])
    return concat(ctx, ctx.unique(f"{name}/every{step}_all"), parts, axis), count


@keras_layer("ops.Split")
def split(ctx, operation, call):
    value = _plain(ctx, ctx.value(call.inputs[0]), operation.name)
    name = ctx.layer_name(operation, call)
    rank = len(value.shape)
    keras_axis = operation.axis % rank
    if keras_axis == 0:
        raise ConversionError("splitting the batch axis has no Caffe form")
    axis = value.layout.perm[keras_axis]
    size = value.shape[axis]
    sections = operation.indices_or_sections
    points = [size * i // sections for i in range(1, sections)] if isinstance(sections, int) else list(sections)
    edges = [0] + [int(p) for p in points] + [size]
    tops = [ctx.unique(f"{name}_{i}" if i else name) for i in range(len(edges) - 1)]
    slice_axis(ctx, name, value.blob, axis, list(zip(edges[:-1], edges[1:])), size, tops)
    for index, top in enumerate(tops):
        _emit(ctx, operation, call, top, value.layout, index=index, non_negative=value.non_negative)


# ------------------------------------------------------------------ products


@keras_layer("ops.Matmul", "ops.Dot")
def matmul(ctx, operation, call):
    """x @ W for a constant matrix W: Dense's InnerProduct (or 1x1 convolution). Two activations: refused."""
    from keraffe.convert.keras_to_caffe.core import affine

    left, right = _arguments(call)
    if _is_tensor(left) and _is_tensor(right):
        raise ConversionError("a product of two activations (attention's scores, say) has no Caffe 1.0 layer")
    if not _is_tensor(left):
        raise ConversionError("a constant matrix times a tensor (the constant on the left) is not converted; "
                              "write x @ W")
    weight = constant_array(right)
    if weight.ndim != 2:
        raise ConversionError(f"a product with a constant of rank {weight.ndim} is not converted (a matrix is)")
    value = ctx.value(left)
    if len(value.shape) < 2:
        raise ConversionError("a product of a vector per sample")
    affine(ctx, operation, call, value, weight, None, "linear", ctx.layer_name(operation, call))


__all__ = ["constant_array"]
