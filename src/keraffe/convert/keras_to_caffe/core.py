"""Dense, Flatten, Reshape, Permute, the inference-time identities, and raw keras.ops arithmetic.

Dense after a channels-last Flatten reads its weight rows in Caffe's (C, H, W)
order instead of moving data. Permute changes only the recorded layout. Layers
that are identities at inference (Dropout's relatives, Identity) add nothing;
Dropout becomes Caffe's Dropout so the net still trains as the model did.
"""

from __future__ import annotations

import numpy as np

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.convert.keras_to_caffe.activations import activation_name, emit_activation
from keraffe.convert.keras_to_caffe.context import CaffeValue
from keraffe.errors import ConversionError
from keraffe.host_memory import weight_array
from keraffe.layout import NHWC, NLC, Layout, dense_rows_nhwc_to_nchw, flattened_nhwc, identity
from keraffe.passes.drafting import set_power



@keras_layer("Dense")
def dense(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    kernel = weight_array(operation.kernel)
    bias = weight_array(operation.bias) if operation.use_bias else None
    rank = len(value.shape)
    act = activation_name(operation.activation)
    top = name if act == "linear" else f"{name}/linear"
    layout = value.layout
    if layout.flattened_from is not None:
        weight = dense_rows_nhwc_to_nchw(kernel, layout.flattened_from).T
        layer = ctx.add("InnerProduct", name, [value.blob], [top])
        ctx.note(operation, ["InnerProduct"], "weight rows reordered from (H, W, C) to Caffe's (C, H, W) flatten order")
        out_layout = identity(2)
    elif rank == 4 and layout == NHWC:
        layer = ctx.add("Convolution", name, [value.blob], [top])
        layer.convolution_param.kernel_size.append(1)
        layer.convolution_param.num_output = kernel.shape[1]
        if bias is None:
            layer.convolution_param.bias_term = False
        ctx.weights[name] = [kernel.T.reshape(kernel.shape[1], kernel.shape[0], 1, 1)] + ([bias] if bias is not None else [])
        ctx.note(operation, ["Convolution"], "Dense on channels of an image is a 1x1 convolution")
        _finish(ctx, operation, call, name, top, act, NHWC)
        return
    elif layout.perm[-1] == rank - 1:
        layer = ctx.add("InnerProduct", name, [value.blob], [top])
        if rank - 1 != 1:
            layer.inner_product_param.axis = rank - 1
        weight = kernel.T
        out_layout = layout
    else:
        blob = ctx.blob_in(value, identity(rank), name)
        layer = ctx.add("InnerProduct", name, [blob], [top])
        if rank - 1 != 1:
            layer.inner_product_param.axis = rank - 1
        weight = kernel.T
        out_layout = identity(rank)
    layer.inner_product_param.num_output = kernel.shape[1]
    if bias is None:
        layer.inner_product_param.bias_term = False
    ctx.weights[name] = [weight] + ([bias] if bias is not None else [])
    _finish(ctx, operation, call, name, top, act, out_layout)


def _finish(ctx, operation, call, name, top, act, layout):
    out = call.outputs[0]
    if act == "linear":
        ctx.emit(operation, call, 0, out, top, layout)
        return
    linear = CaffeValue(top, layout, ctx.caffe_shape(out, layout))
    emit_activation(ctx, operation, call, out, name, linear, act, standalone=False)


@keras_layer("Flatten")
def flatten(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    rank = len(value.shape)
    if value.layout in (NHWC, NLC):
        ctx.add("Flatten", name, [value.blob])
        c, h, w = tuple(value.shape[1:]) + ((1,) if value.layout == NLC else ())
        layout = flattened_nhwc((c, h, w)) if c > 1 and h * w > 1 else identity(2)
        ctx.emit(operation, call, 0, call.outputs[0], name, layout)
        return
    blob = ctx.blob_in(value, identity(rank), name)
    ctx.add("Flatten", name, [blob])
    ctx.emit(operation, call, 0, call.outputs[0], name, identity(2))


@keras_layer("Reshape")
def reshape(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    out = call.outputs[0]
    target = tuple(int(d) for d in out.shape[1:])
    rank = len(value.shape)
    blob = ctx.blob_in(value, identity(rank), name)
    direct_nhwc = len(target) == 3 and (target[0] * target[1] == 1 or target[2] == 1)
    if direct_nhwc:
        # Image of one pixel (or one channel): Keras' order and NCHW's coincide.
        h, w, c = target
        source = ctx.caffe_shape(call.inputs[0], identity(rank))
        if source[1:] == (c, h, w):
            # The NCHW blob itself, read as NHWC (how caffe_to_keras hands a one-channel blob to Keras): no layer.
            ctx.alias(out, CaffeValue(blob, NHWC, source, value.non_negative))
            return
        layer = ctx.add("Reshape", name, [blob])
        layer.reshape_param.shape.dim.extend([0, c, h, w])
        ctx.emit(operation, call, 0, out, name, NHWC)
        return
    layer = ctx.add("Reshape", name, [blob])
    layer.reshape_param.shape.dim.extend((0,) + target)
    ctx.emit(operation, call, 0, out, name, identity(len(target) + 1))


@keras_layer("Permute")
def permute(ctx, operation, call):
    """No Caffe layer: the Keras output is the same blob read in another axis order."""
    value = ctx.value(call.inputs[0])
    rank = len(value.shape)
    if value.layout.flattened_from is not None:
        value = CaffeValue(ctx.blob_in(value, identity(rank), operation.name), identity(rank),
                           value.shape, value.non_negative)
    order = (0,) + tuple(int(d) for d in operation.dims)
    layout = Layout(tuple(value.layout.perm[order[i]] for i in range(rank)))
    ctx.alias(call.outputs[0], CaffeValue(value.blob, layout, value.shape, value.non_negative))


@keras_layer("Dropout")
def dropout(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    layer = ctx.add("Dropout", name, [value.blob])
    layer.dropout_param.dropout_ratio = float(operation.rate)
    ctx.emit(operation, call, 0, call.outputs[0], name, value.layout, non_negative=value.non_negative)


@keras_layer("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
             "AlphaDropout", "ActivityRegularization", "Identity")
def inference_identity(ctx, operation, call):
    """Identities at inference: the Keras output is the input blob itself."""
    ctx.alias(call.outputs[0], ctx.value(call.inputs[0]))
    ctx.note(operation, [], "identity at inference: no Caffe layer")


# ------------------------------------------------------------------ keras.ops arithmetic in functional graphs

def _scalar_and_tensor(call):
    import keras

    args = list(call.arguments()[0])
    if len(args) != 2:
        raise ConversionError("expected a binary operation")
    tensors = [i for i, a in enumerate(args) if isinstance(a, keras.KerasTensor)]
    return args, tensors


def _power(ctx, operation, call, scale=1.0, shift=0.0):
    value = ctx.value(call.inputs[0])
    name = ctx.unique(operation.name)
    layer = ctx.add("Power", name, [value.blob])
    set_power(layer.power_param, scale=scale, shift=shift)
    non_negative = value.non_negative and scale >= 0 and shift >= 0
    ctx.emit(operation, call, 0, call.outputs[0], name, value.layout, non_negative=non_negative)


@keras_layer("ops.Add", "ops.Subtract", "ops.Multiply", "ops.Divide", "ops.TrueDivide")
def arithmetic(ctx, operation, call):
    args, tensors = _scalar_and_tensor(call)
    kind = type(operation).__name__
    if len(tensors) == 2:
        from keraffe.convert.keras_to_caffe.merging import elementwise

        elementwise(ctx, operation, call, {"Add": "sum", "Subtract": "subtract", "Multiply": "prod"}.get(kind, "?"))
        return
    constant = args[1 - tensors[0]]
    if np.ndim(constant) != 0:
        raise ConversionError(f"{kind} with a non-scalar constant has no Caffe form")
    constant = float(constant)
    tensor_first = tensors[0] == 0
    if kind == "Add":
        _power(ctx, operation, call, shift=constant)
    elif kind == "Multiply":
        _power(ctx, operation, call, scale=constant)
    elif kind == "Subtract":
        _power(ctx, operation, call, scale=1.0 if tensor_first else -1.0, shift=-constant if tensor_first else constant)
    elif tensor_first:
        _power(ctx, operation, call, scale=1.0 / constant)
    else:
        raise ConversionError("a constant divided by a tensor has no exact Caffe form")
    ctx.note(operation, ["Power"], f"keras.ops {kind.lower()} with a constant")
