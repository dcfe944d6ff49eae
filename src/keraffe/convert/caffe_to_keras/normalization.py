"""BatchNorm (alone or fused with Scale), Scale, Bias, the forks' BN, LRN, MVN and SSD's Normalize.

Batch normalisation becomes Keras' BatchNormalization, which also trains as
Caffe's does (batch statistics in training). A learned scale or shift without
statistics (Scale, Bias, SegNet's inference BN) becomes keraffe's AxisScale:
BatchNormalization would normalise with batch statistics once fine-tuning
starts, which Caffe's Scale never does.
"""

from __future__ import annotations

import keras
import numpy as np

from keraffe import keras_layers
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.shapes import canonical_axis
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.errors import ConversionError
from keraffe.layout import NHWC, identity


def _per_channel(value, array):
    """A per-channel (axis 1) parameter vector in the order of the Keras axis that holds it."""
    array = np.asarray(array, np.float32).reshape(-1)
    if value.layout.flattened_from is not None:
        return value.layout.to_keras(array[None])[0]
    return array


def _channel_axis(value) -> int:
    return 1 if value.layout.flattened_from is not None else value.layout.keras_axis(1)


def batch_norm(ctx, node, name, value, *, mean, variance, epsilon, gamma=None, beta=None, use_gamma, use_beta):
    """Emit one Keras BatchNormalization; statistics and factors may be None (no weights)."""
    layer = keras.layers.BatchNormalization(axis=_channel_axis(value), epsilon=epsilon, center=use_beta,
                                            scale=use_gamma, name=name)
    y = layer(value.tensor)
    if mean is not None:
        arrays = ([_per_channel(value, gamma)] if use_gamma else []) + ([_per_channel(value, beta)] if use_beta else [])
        arrays += [_per_channel(value, mean), _per_channel(value, variance)]
        ctx.set_weights(node, layer, arrays)
    ctx.emit(node, 0, y, value.layout)


def _caffe_statistics(node, weights):
    if weights is None:
        return None, None
    mean, variance, factor = weights[:3]
    stored = float(np.asarray(factor).reshape(-1)[0])
    scale = 0.0 if stored == 0 else 1.0 / stored
    return np.asarray(mean) * np.float32(scale), np.asarray(variance) * np.float32(scale)


def _check_global_stats(node):
    param = node.param.batch_norm_param
    if param.HasField("use_global_stats") and not param.use_global_stats:
        raise ConversionError(
            f"layer '{node.name}' (BatchNorm) sets use_global_stats: false, so Caffe normalises each test batch "
            "with its own statistics; only the stored statistics (use_global_stats: true) convert exactly"
        )


@caffe_layer("BatchNorm")
def batch_norm_layer(ctx, node):
    _check_global_stats(node)
    mean, variance = _caffe_statistics(node, ctx.weights(node))
    batch_norm(ctx, node, ctx.blob_name(node), ctx.value(node), mean=mean, variance=variance,
               epsilon=node.param.batch_norm_param.eps, use_gamma=False, use_beta=False)


@caffe_layer("keraffe.BatchNormScale")
def batch_norm_scale(ctx, node):
    """BatchNorm and its Scale, fused by keraffe.passes.fuse_batchnorm_scale."""
    _check_global_stats(node)
    weights = ctx.weights(node)
    mean, variance = _caffe_statistics(node, weights)
    use_beta = node.param.scale_param.bias_term
    gamma = weights[3] if weights is not None else None
    beta = weights[4] if weights is not None and use_beta else None
    batch_norm(ctx, node, ctx.blob_name(node), ctx.value(node), mean=mean, variance=variance,
               epsilon=node.param.batch_norm_param.eps, gamma=gamma, beta=beta, use_gamma=True, use_beta=use_beta)


@caffe_layer("BN")
def fork_bn(ctx, node):
    """PSPNet/brocolli BN (slope, bias, mean, variance) or SegNet BN in inference mode (scale, shift)."""
    param = node.param.bn_param
    weights = ctx.weights(node)
    value = ctx.value(node)
    name = ctx.blob_name(node)
    if weights is not None and len(weights) == 4:
        slope, bias, mean, variance = weights
        batch_norm(ctx, node, name, value, mean=mean, variance=variance, epsilon=param.eps, gamma=slope, beta=bias,
                   use_gamma=True, use_beta=True)
        return
    # SegNet's bn_mode defaults to LEARN, which normalises with batch statistics even at test time.
    if param.bn_mode != pb.BNParameter.INFERENCE:
        raise ConversionError(
            f"layer '{node.name}' (BN) is in bn_mode LEARN (SegNet's default), which normalises with batch "
            "statistics; SegNet deploy nets use bn_mode: INFERENCE after compute_bn_statistics.py"
        )
    _learned_affine(ctx, node, scale_weight=None if weights is None else weights[0],
                    bias_weight=None if weights is None else weights[1], axis=1, num_axes=1,
                    use_scale=True, use_bias=True)


def _broadcast_param_shape(value, caffe_shape, axis, param_shape):
    """Shape (without batch) that broadcasts a parameter over the Keras tensor as Caffe broadcasts it."""
    rank = len(caffe_shape)
    full = [1] * rank
    for i, d in enumerate(param_shape):
        full[axis + i] = d
    return tuple(full[p] for p in value.layout.perm)[1:]


def _learned_affine(ctx, node, *, scale_weight, bias_weight, axis, num_axes, use_scale, use_bias):
    """y = x * scale + bias with learned factors over Caffe axes [axis, axis + num_axes)."""
    value = ctx.value(node)
    caffe_shape = ctx.in_shape(node)
    rank = len(caffe_shape)
    axis = canonical_axis(axis, rank)
    num_axes = rank - axis if num_axes == -1 else num_axes
    if axis == 0:
        raise ConversionError(f"layer '{node.name}' ({node.type}): a learned parameter over the batch axis "
                              "does not convert")
    if value.layout.flattened_from is not None:
        value = type(value)(ctx.input(node, 0, identity(rank)), identity(rank))
    covered = caffe_shape[axis: axis + num_axes]
    param_shape = _broadcast_param_shape(value, caffe_shape, axis, covered)
    layer = keras_layers.AxisScale(param_shape, use_scale=use_scale, use_bias=use_bias, name=ctx.blob_name(node))
    y = layer(value.tensor)
    if scale_weight is not None or bias_weight is not None:
        arrays = []
        for weight, used in ((scale_weight, use_scale), (bias_weight, use_bias)):
            if used:
                full = np.asarray(weight, np.float32).reshape([1] * axis + list(covered) + [1] * (rank - axis - num_axes))
                arrays.append(np.ascontiguousarray(value.layout.axes_to_keras(full)[0]))
        ctx.set_weights(node, layer, arrays)
    ctx.emit(node, 0, y, value.layout)


def _second_bottom_like_first(ctx, node, axis):
    """Bottom 1 of Scale/Bias reshaped (or permuted) so it broadcasts over bottom 0's Keras tensor."""
    first = ctx.value(node, 0)
    first_shape = ctx.in_shape(node, 0)
    second_shape = ctx.in_shape(node, 1)
    axis = canonical_axis(axis, len(first_shape)) if len(second_shape) else 0
    padded = [1] * len(first_shape)
    for i, d in enumerate(second_shape):
        padded[axis + i] = d
    if first.layout.flattened_from is not None:
        raise ConversionError(f"layer '{node.name}' ({node.type}) on a flattened image tensor is not supported")
    target = tuple(padded[p] for p in first.layout.perm)[1:]
    if axis == 0:
        # The second bottom has the batch axis. With the first one's rank it has its shape: take it in
        # that layout. Shorter, it gets trailing unit axes in Caffe's order, then the first one's axis order.
        if len(second_shape) == len(first_shape):
            return first, ctx.input(node, 1, first.layout)
        second = ctx.input(node, 1, identity(len(second_shape)))
        moved = [a for a in first.layout.perm if padded[a] != 1]
        if moved == sorted(moved):
            return first, keras.layers.Reshape(target, name=ctx.helper_name(node, "broadcast"))(second)
        expanded = keras.layers.Reshape(tuple(padded[1:]), name=ctx.helper_name(node, "expand"))(second)
        return first, keras.layers.Permute(tuple(first.layout.perm[1:]),
                                           name=ctx.helper_name(node, "broadcast"))(expanded)
    raise ConversionError(f"layer '{node.name}' ({node.type}): a second bottom that starts after the batch axis "
                          "(axis >= 1) is not supported")


@caffe_layer("Scale")
def scale(ctx, node):
    param = node.param.scale_param
    weights = ctx.weights(node)
    if len(node.inputs) == 2:
        first, factor = _second_bottom_like_first(ctx, node, param.axis)
        if param.bias_term:
            raise ConversionError(f"layer '{node.name}' (Scale): two bottoms with bias_term is not supported")
        y = keras.layers.Multiply(name=ctx.blob_name(node))([first.tensor, factor])
        ctx.emit(node, 0, y, first.layout)
        return
    _learned_affine(ctx, node, scale_weight=None if weights is None else weights[0],
                    bias_weight=None if weights is None or not param.bias_term else weights[1],
                    axis=param.axis, num_axes=param.num_axes, use_scale=True, use_bias=param.bias_term)


@caffe_layer("Bias")
def bias(ctx, node):
    param = node.param.bias_param
    if len(node.inputs) == 2:
        first, shift = _second_bottom_like_first(ctx, node, param.axis)
        ctx.emit(node, 0, keras.layers.Add(name=ctx.blob_name(node))([first.tensor, shift]), first.layout)
        return
    weights = ctx.weights(node)
    _learned_affine(ctx, node, scale_weight=None, bias_weight=None if weights is None else weights[0],
                    axis=param.axis, num_axes=param.num_axes, use_scale=False, use_bias=True)


@caffe_layer("LRN")
def lrn(ctx, node):
    p = node.param.lrn_param
    region = "across_channels" if p.norm_region == pb.LRNParameter.ACROSS_CHANNELS else "within_channel"
    layer = keras_layers.LRN(p.local_size, p.alpha, p.beta, p.k, region, name=ctx.blob_name(node))
    ctx.emit(node, 0, layer(ctx.input_nhwc(node)), NHWC)


@caffe_layer("MVN")
def mvn(ctx, node):
    p = node.param.mvn_param
    value = ctx.value(node)
    rank = value.layout.rank
    if value.layout.flattened_from is not None:
        value = type(value)(ctx.input(node, 0, identity(rank)), identity(rank))
    caffe_axes = range(1 if p.across_channels else 2, rank)
    axes = tuple(sorted(value.layout.keras_axis(a) for a in caffe_axes))
    if not axes:
        raise ConversionError(f"layer '{node.name}' (MVN) on a {rank}-axis blob has nothing to normalise over")
    if rank == 4:
        layer = keras_layers.MVN(axes, p.normalize_variance, p.eps, name=ctx.blob_name(node))
        ctx.emit(node, 0, layer(value.tensor), value.layout)
        return
    # Caffe's top is the input padded to 4 axes with ones (N, C, L) -> (N, C, L, 1).
    x = ctx.input(node, 0, identity(rank))
    normalised = keras_layers.MVN(tuple(caffe_axes), p.normalize_variance, p.eps,
                                  name=ctx.blob_name(node) + "_mvn")(x)
    out_shape = tuple(ctx.out_shape(node))
    ctx.emit(node, 0, keras.layers.Reshape(out_shape[1:], name=ctx.blob_name(node))(normalised), identity(4))


@caffe_layer("Normalize")
def normalize(ctx, node):
    p = node.param.norm_param
    layer = keras_layers.L2Normalize(p.across_spatial, p.channel_shared, p.eps, name=ctx.blob_name(node))
    y = layer(ctx.input_nhwc(node))
    weights = ctx.weights(node)
    if weights is not None:
        ctx.set_weights(node, layer, [np.asarray(weights[0], np.float32).reshape(-1)])
    ctx.emit(node, 0, y, NHWC)
