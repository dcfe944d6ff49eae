"""Dense, Flatten, Reshape, Permute, Embedding and the inference-time identities.

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



@keras_layer("Dense")
def dense(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    kernel = weight_array(operation.kernel)
    bias = weight_array(operation.bias) if operation.use_bias else None
    affine(ctx, operation, call, value, kernel, bias, activation_name(operation.activation),
           ctx.layer_name(operation, call))


def affine(ctx, operation, call, value, kernel, bias, act, name):
    """x @ kernel (+ bias) over the last Keras axis, then activation ``act``: Dense, and matmul by a constant.

    InnerProduct where the last Keras axis is the blob's last (or the rows of
    a channels-last flattening, reordered); a 1x1 convolution where it is the
    blob's channel axis (images, (N, C, L) sequences), so nothing is transposed.
    """
    rank = len(value.shape)
    top = name if act == "linear" else f"{name}/linear"
    layout = value.layout
    if layout.flattened_from is not None:
        weight = dense_rows_nhwc_to_nchw(kernel, layout.flattened_from).T
        layer = ctx.add("InnerProduct", name, [value.blob], [top])
        ctx.note(operation, ["InnerProduct"], "weight rows reordered from (H, W, C) to Caffe's (C, H, W) flatten order")
        out_layout = identity(2)
    elif rank > 2 and layout.perm[-1] == 1:
        # Channels first in Caffe (an image, an (N, C, L) sequence, a volume): a 1x1 convolution, no transpose.
        image = rank == 4
        bottom = value.blob
        if not image:
            flat = ctx.add("Reshape", ctx.unique(f"{name}/as_image"), [bottom])
            flat.reshape_param.shape.dim.extend([0, value.shape[1], -1, 1])
            bottom = flat.top[0]
        conv_top = top if image else ctx.unique(f"{name}/image")
        layer = ctx.add("Convolution", name, [bottom], [conv_top])
        layer.convolution_param.kernel_size.append(1)
        layer.convolution_param.num_output = kernel.shape[1]
        if bias is None:
            layer.convolution_param.bias_term = False
        ctx.weights[name] = [kernel.T.reshape(kernel.shape[1], kernel.shape[0], 1, 1)] + ([bias] if bias is not None else [])
        if not image:
            back = ctx.add("Reshape", ctx.unique(f"{name}/as_input"), [conv_top], [top])
            back.reshape_param.shape.dim.extend((0, kernel.shape[1]) + tuple(value.shape[2:]))
        ctx.note(operation, ctx.caffe_types(len(ctx.net.layer) - (1 if image else 3)),
                 "Dense over the channels of a channels-first blob is a 1x1 convolution")
        _finish(ctx, operation, call, name, top, act, layout)
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
    target = tuple(int(d) for d in call.outputs[0].shape[1:])
    reshape_value(ctx, operation, call, ctx.value(call.inputs[0]), target, ctx.layer_name(operation, call))


def reshape_value(ctx, operation, call, value, target, name):
    """The Keras values in Keras' order, reshaped to ``target`` (without the batch axis): Reshape and Reshape ops."""
    out = call.outputs[0]
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
    layer.reshape_param.shape.dim.extend((0,) + tuple(target))
    ctx.emit(operation, call, 0, out, name, identity(len(target) + 1))


@keras_layer("Permute")
def permute(ctx, operation, call):
    """No Caffe layer: the Keras output is the same blob read in another axis order."""
    value = ctx.value(call.inputs[0])
    rank = len(value.shape)
    if value.layout.flattened_from is not None:
        value = CaffeValue(ctx.blob_in(value, identity(rank), ctx.scoped(operation.name)), identity(rank),
                           value.shape, value.non_negative)
    order = (0,) + tuple(int(d) for d in operation.dims)
    layout = Layout(tuple(value.layout.perm[order[i]] for i in range(rank)))
    ctx.alias(call.outputs[0], CaffeValue(value.blob, layout, value.shape, value.non_negative))


@keras_layer("Embedding")
def embedding(ctx, operation, call):
    """Caffe's Embed: the same (input_dim, output_dim) table, looked up by the index values of a float blob.

    A mask (mask_zero) is not part of the values: the layers that would read
    it are refused where they do.
    """
    if getattr(operation, "quantization_mode", None):
        raise ConversionError(f"a {operation.quantization_mode}-quantized Embedding is not converted")
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    rank = len(value.shape)
    blob = ctx.blob_in(value, identity(rank), name)
    table = weight_array(operation.embeddings)
    layer = ctx.add("Embed", name, [blob])
    param = layer.embed_param
    param.input_dim, param.num_output = table.shape
    param.bias_term = False
    ctx.weights[name] = [table]
    ctx.emit(operation, call, 0, call.outputs[0], name, identity(rank + 1))


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
