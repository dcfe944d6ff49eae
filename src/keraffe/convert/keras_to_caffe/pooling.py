"""MaxPooling2D, AveragePooling2D and the global poolings.

Caffe 1.0 pooling always rounds up and pads symmetrically; Keras rounds down
and pads 'same' unevenly. The handlers here write a draft pooling with Keras'
own semantics, and the pass :mod:`keraffe.passes.pooling_windows` places its
windows exactly in Caffe's. Global pooling is Caffe's global pooling.
"""

from __future__ import annotations

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.errors import ConversionError
from keraffe.layout import NHWC, identity
from keraffe.passes.absorb_zero_padding import resolve_zero_padding
from keraffe.passes.pooling_windows import KERAS_POOLING
from keraffe.windows import same_padding


def _pool2d(ctx, operation, call, method):
    """A draft Keras pooling (Keras' windows, rounding and padding), placed in Caffe's by a pass."""
    value = ctx.value(call.inputs[0], allow_pending=True)
    name = ctx.layer_name(operation, call)
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError(f"'{name}': only channels_last pooling converts")
    _, zeros = resolve_zero_padding(ctx, value.blob)
    if zeros is not None and any(p > 0 for pair in zeros for p in pair) and operation.padding == "same":
        raise ConversionError(f"'{name}': ZeroPadding2D before 'same' pooling has no exact Caffe form")
    bottom = ctx.blob_nchw(value, name)
    if value.non_negative:
        ctx.non_negative.add(bottom)
    kernel = tuple(int(k) for k in operation.pool_size)
    stride = tuple(int(s) for s in operation.strides)
    same = [same_padding(value.shape[2 + axis], kernel[axis], stride[axis]) for axis in range(2)]
    if method == "ave" and operation.padding == "same":
        refuse_uneven_same_average_on_torch(operation, name, value.shape[2:4], kernel, stride)
    draft = ctx.add_draft(KERAS_POOLING, name, [bottom], [name])
    param = draft.pooling_param
    if method == "max":
        param.pool = param.MAX
    else:
        param.pool = param.AVE_EXC_PAD if operation.padding == "same" else param.AVE
    param.kernel_h, param.kernel_w = kernel
    param.stride_h, param.stride_w = stride
    param.round_mode = param.FLOOR
    if operation.padding == "same":
        (param.pad_t, param.pad_b), (param.pad_l, param.pad_r) = same
    ctx.emit(operation, call, 0, call.outputs[0], name, NHWC, non_negative=value.non_negative)


def refuse_uneven_same_average_on_torch(operation, name: str, sizes, kernel, strides) -> None:
    """Keras' PyTorch backend gives uneven 'same' AVE padding another meaning than TensorFlow, JAX and Caffe.

    Where some axis pads unevenly, its pooling pads every axis with copies of
    the edge pixels ('replicate') and averages them; TensorFlow and JAX average
    the real pixels only, which is what keraffe exports. The two agree only
    where each window that reaches into the padding holds one real pixel (the
    copies then equal it). Otherwise the export could not match what the model
    computes on PyTorch: refused, naming the backends that convert it.
    """
    import keras

    pads = [same_padding(size, k, s) for size, k, s in zip(sizes, kernel, strides)]
    if keras.backend.backend() != "torch" or all(before == after for before, after in pads):
        return
    for size, k, s, (before, _) in zip(sizes, kernel, strides, pads):
        for start in range(-before, size - before, s)[: -(-size // s)]:
            real = min(start + k, size) - max(start, 0)
            if (start < 0 or start + k > size) and real > 1:
                raise ConversionError(
                    f"'{name}': {type(operation).__name__}(padding='same') pads unevenly here, and on the PyTorch "
                    "backend Keras fills that padding with copies of the edge pixels and averages them, where "
                    "TensorFlow and JAX average the real pixels only; keraffe exports the latter, so the Caffe net "
                    "would not compute what this model computes on PyTorch. Convert it with KERAS_BACKEND=tensorflow "
                    "or jax")


@keras_layer("MaxPooling2D")
def max_pooling2d(ctx, operation, call):
    _pool2d(ctx, operation, call, "max")


@keras_layer("AveragePooling2D")
def average_pooling2d(ctx, operation, call):
    _pool2d(ctx, operation, call, "ave")


def _global(ctx, operation, call, method):
    value = ctx.value(call.inputs[0], allow_pending=True)
    name = ctx.layer_name(operation, call)
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError(f"'{name}': only channels_last pooling converts")
    if ctx.is_padding(value):
        raise ConversionError(f"'{name}': ZeroPadding2D before global pooling has no exact Caffe form")
    bottom = ctx.blob_nchw(value, name)
    keepdims = bool(getattr(operation, "keepdims", False))
    top = name if keepdims else ctx.unique(f"{name}/pooled")
    layer = ctx.add("Pooling", name, [bottom], [top])
    layer.pooling_param.pool = layer.pooling_param.MAX if method == "max" else layer.pooling_param.AVE
    layer.pooling_param.global_pooling = True
    if keepdims:
        ctx.emit(operation, call, 0, call.outputs[0], top, NHWC, non_negative=value.non_negative)
        return
    ctx.add("Flatten", ctx.unique(f"{name}/flatten"), [top], [name])
    ctx.emit(operation, call, 0, call.outputs[0], name, identity(2), non_negative=value.non_negative)


@keras_layer("GlobalAveragePooling2D")
def global_average_pooling2d(ctx, operation, call):
    _global(ctx, operation, call, "ave")


@keras_layer("GlobalMaxPooling2D")
def global_max_pooling2d(ctx, operation, call):
    _global(ctx, operation, call, "max")

