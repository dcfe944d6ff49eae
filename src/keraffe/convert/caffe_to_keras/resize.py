"""Upsample (SegNet unpooling or nearest upsampling), Interp (align-corners bilinear), the Synopsys fork's resizes."""

from __future__ import annotations

import keras

from keraffe import keras_layers
from keraffe.caffe.shapes.pooling import pool_geometry
from keraffe.caffe.shapes.resize import interp_output
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.errors import ConversionError
from keraffe.layout import NHWC, identity


@caffe_layer("Upsample")
def upsample(ctx, node):
    param = node.param.upsample_param
    out_hw = ctx.out_shape(node)[2:]
    name = ctx.blob_name(node)
    if len(node.inputs) == 2:
        in_hw = ctx.in_shape(node)[2:]
        scale = tuple(-(-o // i) for o, i in zip(out_hw, in_hw))
        _check_unpooling_blocks(ctx, node, scale)
        layer = keras_layers.MaxUnpooling2D(scale, out_hw, name=name)
        ctx.emit(node, 0, layer([ctx.input_nhwc(node, 0), ctx.input_nhwc(node, 1)]), NHWC)
        return
    if param.dims_num != 4:
        raise ConversionError(f"layer '{node.name}' (Upsample): only 4-axis (dims_num 4) upsampling converts")
    size = param.scale
    if param.HasField("stride"):  # Huawei ATC's spelling: `stride` is the factor, `scale` multiplies values
        if param.scale != 1:
            raise ConversionError(f"layer '{node.name}' (Upsample): Huawei's form with scale {param.scale} "
                                  "(values multiplied) does not convert; only scale 1 does")
        size = param.stride
    layer = keras.layers.UpSampling2D(size=size, interpolation="nearest", name=name)
    ctx.emit(node, 0, layer(ctx.input_nhwc(node)), NHWC)


def _check_unpooling_blocks(ctx, node, scale):
    """MaxUnpooling2D puts each value in its own scale x scale block: the mask's pooling must tile so."""
    producer = next((n for n in ctx.net.layers if node.inputs[1] in n.outputs), None)
    if producer is None or producer.type != "Pooling":
        return
    g = pool_geometry(producer.param, ctx.net.shapes[producer.inputs[0]])
    if any(k > s for k, s in zip(g.kernel, g.stride)) or any(g.pad_begin) or tuple(scale) != tuple(g.stride):
        raise ConversionError(
            f"layer '{node.name}' (Upsample) unpools the mask of '{producer.name}' (kernel {g.kernel}, stride "
            f"{g.stride}, pad {g.pad_begin}) to a {scale[0]}x{scale[1]} scale; only masks of unpadded pooling "
            "whose windows do not overlap and whose stride is the scale (as in SegNet) convert exactly"
        )


@caffe_layer("Interp")
def interp(ctx, node):
    shapes = [ctx.in_shape(node, i) for i in range(len(node.inputs))]
    size = interp_output(node.param, shapes)
    p = node.param.interp_param
    layer = keras_layers.Interp(size, p.pad_beg, p.pad_end, name=ctx.blob_name(node))
    ctx.emit(node, 0, layer(ctx.input_nhwc(node)), NHWC)


@caffe_layer("ResizeNearestNeighbor")
def resize_nearest_neighbor(ctx, node):
    """TF's nearest resize as converted by the Synopsys fork: source pixel floor(dst * in / out).

    With an integer scale and TF's defaults (no align_corners, no half-pixel
    centres) that is Keras' nearest UpSampling2D, exactly; other settings pick
    other source pixels and are refused rather than approximated.
    """
    param = node.param.resize_nearest_neighbor_param
    nhwc = param.data_format.upper() == "NHWC"
    in_hw = ctx.in_shape(node)[1:3] if nhwc else ctx.in_shape(node)[2:]
    out_hw = ctx.out_shape(node)[1:3] if nhwc else ctx.out_shape(node)[2:]
    factors = tuple(o // i for o, i in zip(out_hw, in_hw))
    reasons = []
    if param.data_format.upper() not in ("NCHW", "NHWC"):
        reasons.append(f"data_format {param.data_format!r} (only NCHW and NHWC blobs convert)")
    if param.align_corners or param.half_pixel_centers:
        reasons.append("align_corners or half_pixel_centers set")
    if any(f * i != o for f, i, o in zip(factors, in_hw, out_hw)):
        reasons.append(f"output {out_hw} not an integer multiple of the input {in_hw}")
    if reasons:
        raise ConversionError(f"layer '{node.name}' (ResizeNearestNeighbor) has {'; '.join(reasons)}; only integer "
                              "upscaling with TF's default pixel choice is exactly Keras' nearest UpSampling2D")
    layer = keras.layers.UpSampling2D(size=factors, interpolation="nearest", name=ctx.blob_name(node))
    if nhwc:  # the blob is (N, H, W, C) already: Keras' order is Caffe's
        ctx.emit(node, 0, layer(ctx.input(node, 0, identity(4))), identity(4))
    else:
        ctx.emit(node, 0, layer(ctx.input_nhwc(node)), NHWC)


@caffe_layer("ResizeBilinear")
def resize_bilinear(ctx, node):
    """TF's resize_bilinear as the Synopsys fork computes it, on NCHW or NHWC blobs."""
    param = node.param.resize_bilinear_param
    data_format = param.data_format.upper()
    flags = [f for f in ("align_corners", "half_pixel_centers", "pytorch_half_pixel") if getattr(param, f)]
    if len(flags) > 1:
        raise ConversionError(f"layer '{node.name}' (ResizeBilinear) sets {' and '.join(flags)}; the fork refuses "
                              "more than one")
    if data_format not in ("NCHW", "NHWC"):
        raise ConversionError(f"layer '{node.name}' (ResizeBilinear): data_format {param.data_format!r} (3-D "
                              "resizing) does not convert; only NCHW and NHWC do")
    out = ctx.out_shape(node)
    if data_format == "NCHW":
        x, size, layout = ctx.input_nhwc(node), out[2:], NHWC
    else:  # the blob is (N, H, W, C) already: Keras' order is Caffe's
        x, size, layout = ctx.input(node, 0, identity(4)), out[1:3], identity(4)
    layer = keras_layers.ResizeBilinear(size, param.align_corners, param.half_pixel_centers,
                                        param.pytorch_half_pixel, name=ctx.blob_name(node))
    ctx.emit(node, 0, layer(x), layout)
