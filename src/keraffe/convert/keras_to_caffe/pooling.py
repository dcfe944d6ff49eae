"""MaxPooling2D, AveragePooling2D, their 3-D forms and the global poolings.

Caffe 1.0 pooling always rounds up and pads symmetrically; Keras rounds down
and pads 'same' unevenly. The handlers here write a draft pooling with Keras'
own semantics, and the pass :mod:`keraffe.passes.pooling_windows` places its
windows exactly in Caffe's. Global pooling is Caffe's global pooling.
"""

from __future__ import annotations

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.errors import ConversionError
from keraffe.layout import NHWC, identity
from keraffe.passes.pooling_windows import KERAS_POOLING
from keraffe.windows import same_padding


def _pool2d(ctx, operation, call, method):
    """A draft Keras pooling (Keras' windows, rounding and padding), placed in Caffe's by a pass."""
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError(f"'{name}': only channels_last pooling converts")
    bottom = ctx.blob_nchw(value, name)
    if value.non_negative:
        ctx.non_negative.add(bottom)
    kernel = tuple(int(k) for k in operation.pool_size)
    stride = tuple(int(s) for s in operation.strides)
    if method == "ave" and operation.padding == "same":
        refuse_uneven_same_average_on_torch(operation, name, value.shape[2:4], kernel, stride)
    out = ctx.caffe_shape(call.outputs[0], NHWC)
    draft_pooling(ctx, name, bottom, method, kernel, stride, operation.padding, ctx.shapes[bottom], out)
    ctx.emit(operation, call, 0, call.outputs[0], name, NHWC, non_negative=value.non_negative)


def draft_pooling(ctx, name, bottom, method, kernel, stride, padding, shape, out_shape, top=None):
    """A draft ``keraffe.KerasPooling`` of NCHW ``bottom`` (of ``shape``) into ``out_shape``, with Keras' windows."""
    top = top or name
    draft = ctx.add_draft(KERAS_POOLING, name, [bottom], [top])
    param = draft.pooling_param
    if method == "max":
        param.pool = param.MAX
    else:
        param.pool = param.AVE_EXC_PAD if padding == "same" else param.AVE
    param.kernel_h, param.kernel_w = kernel
    param.stride_h, param.stride_w = stride
    param.round_mode = param.FLOOR
    if padding == "same":
        (param.pad_t, param.pad_b), (param.pad_l, param.pad_r) = (
            same_padding(shape[2 + axis], kernel[axis], stride[axis]) for axis in range(2))
    ctx.shapes[top] = tuple(out_shape)
    if bottom in ctx.non_negative:
        ctx.non_negative.add(top)
    return top


def _pool3d(ctx, operation, call, method):
    """A 3-D pooling as two 2-D ones: over (H, W) of every depth plane, then over D.

    Both the maximum and the average of a box are the same taken axis by axis
    (an average over 'same' padding leaves the padding out along each axis, and
    the box's real cells are the product of the axes' counts), so the two
    Keras poolings, each placed exactly in Caffe's windows by the pooling pass,
    compute the 3-D one.
    """
    from keraffe.convert.keras_to_caffe.building import reshape
    from keraffe.layout import NDHWC

    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError("only channels_last 3-D pooling converts")
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    blob = ctx.blob_in(value, NDHWC, name)
    n, c, d, h, w = NDHWC.caffe_shape(value.layout.keras_shape(value.shape))
    _, _, d2, h2, w2 = ctx.caffe_shape(call.outputs[0], NDHWC)
    kd, kh, kw = (int(k) for k in operation.pool_size)
    sd, sh, sw = (int(s) for s in operation.strides)
    start = len(ctx.net.layer)
    planes = reshape(ctx, ctx.unique(f"{name}/planes"), blob, [0, c * d, h, w])
    ctx.shapes[planes] = (n, c * d, h, w)
    if value.non_negative:
        ctx.non_negative.add(planes)
    pooled = draft_pooling(ctx, ctx.unique(f"{name}/hw"), planes, method, (kh, kw), (sh, sw), operation.padding,
                           ctx.shapes[planes], (n, c * d, h2, w2))
    depth = reshape(ctx, ctx.unique(f"{name}/depth"), pooled, [0, c, d, h2 * w2])
    ctx.shapes[depth] = (n, c, d, h2 * w2)
    if value.non_negative:
        ctx.non_negative.add(depth)
    along = draft_pooling(ctx, ctx.unique(f"{name}/d"), depth, method, (kd, 1), (sd, 1), operation.padding,
                          (n, c, d, 1), (n, c, d2, h2 * w2))
    reshape(ctx, name, along, [0, c, d2, h2, w2])
    ctx.note(operation, ["Reshape", "Pooling", "Reshape", "Pooling", "Reshape"],
             "3-D pooling as a 2-D pooling of every depth plane, then a pooling along the depth")
    ctx.emit(operation, call, 0, call.outputs[0], name, NDHWC, non_negative=value.non_negative)


@keras_layer("MaxPooling3D", "AveragePooling3D")
def pooling3d(ctx, operation, call):
    _pool3d(ctx, operation, call, "max" if type(operation).__name__ == "MaxPooling3D" else "ave")


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
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError(f"'{name}': only channels_last pooling converts")
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

