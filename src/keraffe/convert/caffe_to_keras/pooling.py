"""Pooling: standard Keras pooling wherever its windows are Caffe's, keraffe's otherwise; ROI pooling."""

from __future__ import annotations

import keras

from keraffe import keras_layers
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.shapes.pooling import pool_geometry, spp_levels
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.convert.caffe_to_keras.conv import plan_padding
from keraffe.errors import ConversionError
from keraffe.layout import NHWC, identity


@caffe_layer("Pooling")
def pooling(ctx, node):
    in_shape = ctx.in_shape(node)
    g = pool_geometry(node.param, in_shape)
    method = node.param.pooling_param.pool
    if method == pb.PoolingParameter.STOCHASTIC:
        raise ConversionError(f"layer '{node.name}' (Pooling): STOCHASTIC pooling is not supported")
    if g.pad_begin != g.pad_end:
        raise ConversionError(f"layer '{node.name}' (Pooling): per-side pooling padding (pad_l/pad_r/...) "
                              "is not supported")
    x = ctx.input_nhwc(node)
    name = ctx.blob_name(node)
    is_max = method == pb.PoolingParameter.MAX
    if len(node.outputs) == 2:
        if not is_max:
            raise ConversionError(f"layer '{node.name}' (Pooling): only MAX pooling has a mask top")
        values, mask = keras_layers.MaxPoolingWithMask(g.kernel, g.stride, g.pad_begin, g.output, name=name)(x)
        ctx.emit(node, 0, values, NHWC)
        ctx.emit(node, 1, mask, NHWC)
        return
    ctx.emit(node, 0, _pool(ctx, node, g, is_max, x, name), NHWC)


def _pool(ctx, node, g, is_max: bool, x, name: str, role: str = ""):
    """One pooling of an NHWC tensor with Caffe's geometry ``g``: Keras' own layers where exact, keraffe's otherwise."""
    in_shape = (None, None) + tuple(x.shape[1:3])
    if g.global_pooling or (g.kernel == tuple(in_shape[2:]) and g.output == (1, 1) and not any(g.pad_begin)):
        cls = keras.layers.GlobalMaxPooling2D if is_max else keras.layers.GlobalAveragePooling2D
        return cls(keepdims=True, name=name)(x)
    mode, explicit = plan_padding(in_shape[2:], g.kernel, g.stride, g.pad_begin, g.output)
    if not is_max and mode == "same":
        # Keras' 'same' average leaves the padding out of the divisor; Caffe's counts it: pad explicitly.
        explicit = tuple((p, max(0, (o - 1) * s + k - size - p))
                         for size, k, s, p, o in zip(in_shape[2:], g.kernel, g.stride, g.pad_begin, g.output))
    if explicit is None and (is_max or mode == "valid"):
        cls = keras.layers.MaxPooling2D if is_max else keras.layers.AveragePooling2D
        return cls(g.kernel, g.stride, padding=mode, name=name)(x)
    if not is_max and explicit is not None and all(end <= begin for begin, end in explicit):
        # Caffe's AVE divisor counts padding up to the declared pad: zero padding + valid pooling.
        padded = keras.layers.ZeroPadding2D(explicit, name=ctx.helper_name(node, f"{role}pad"))(x)
        return keras.layers.AveragePooling2D(g.kernel, g.stride, padding="valid", name=name)(padded)
    layer = keras_layers.CaffePooling2D("max" if is_max else "ave", g.kernel, g.stride, g.pad_begin, g.output,
                                        name=name)
    return layer(x)


@caffe_layer("SPP")
def spp(ctx, node):
    """BVLC's spatial pyramid pooling: each level is a Caffe Pooling (keraffe.caffe.shapes.pooling.spp_levels).

    With more than one level, each level's (N, C, b, b) is flattened in Caffe's
    order (c, y, x) and the levels are concatenated; with one level, the top is
    that pooling's output.
    """
    in_shape = ctx.in_shape(node)
    if node.param.spp_param.pool == pb.SPPParameter.STOCHASTIC:
        raise ConversionError(f"layer '{node.name}' (SPP): STOCHASTIC pooling is not supported (random in Caffe)")
    is_max = node.param.spp_param.pool == pb.SPPParameter.MAX
    x = ctx.input_nhwc(node)
    levels = spp_levels(node.param, in_shape)
    if len(levels) == 1:
        g = pool_geometry(levels[0], in_shape)
        ctx.emit(node, 0, _pool(ctx, node, g, is_max, x, ctx.blob_name(node)), NHWC)
        return
    flat = []
    for index, level in enumerate(levels):
        g = pool_geometry(level, in_shape)
        pooled = _pool(ctx, node, g, is_max, x, ctx.helper_name(node, f"level{index}"), f"level{index}_")
        chw = keras.layers.Permute((3, 1, 2), name=ctx.helper_name(node, f"level{index}_chw"))(pooled)
        flat.append(keras.layers.Flatten(name=ctx.helper_name(node, f"level{index}_flat"))(chw))
    ctx.emit(node, 0, keras.layers.Concatenate(axis=1, name=ctx.blob_name(node))(flat), identity(2))


def _rois(ctx, node):
    """The rois bottom as (R, 5) rows in Caffe's order (the forks also take (R, 5, 1, 1))."""
    shape = ctx.in_shape(node, 1)
    rois = ctx.input(node, 1, identity(len(shape)))
    if len(shape) != 2:
        rois = keras.layers.Reshape((5,), name=ctx.helper_name(node, "rois"))(rois)
    return rois


@caffe_layer("ROIPooling")
def roi_pooling(ctx, node):
    """py-faster-rcnn's max ROI pooling; its rows follow the rois' (keraffe.layout.PROPOSALS)."""
    p = node.param.roi_pooling_param
    layer = keras_layers.ROIPooling((p.pooled_h, p.pooled_w), p.spatial_scale, name=ctx.blob_name(node))
    ctx.emit(node, 0, layer([ctx.input_nhwc(node, 0), _rois(ctx, node)]), NHWC)


@caffe_layer("PSROIPooling")
def psroi_pooling(ctx, node):
    """R-FCN's position-sensitive average ROI pooling."""
    p = node.param.psroi_pooling_param
    layer = keras_layers.PSROIPooling(p.output_dim, p.group_size, p.spatial_scale, name=ctx.blob_name(node))
    ctx.emit(node, 0, layer([ctx.input_nhwc(node, 0), _rois(ctx, node)]), NHWC)
