"""Convolution, Deconvolution and the forks' depthwise convolutions."""

from __future__ import annotations

import dataclasses

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.shapes import LayerShapes, Shape, canonical_axis, count, div_toward_zero, shape_rule
from keraffe.errors import ShapeError


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """The resolved numbers of a convolution_param, as BaseConvolutionLayer reads them."""

    axis: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    #: Padding before and after, per spatial axis.
    pad_begin: tuple[int, ...]
    pad_end: tuple[int, ...]
    num_output: int
    group: int
    bias_term: bool


def _per_axis(values, count_: int, default: int, what: str) -> tuple[int, ...]:
    values = list(values)
    if not values:
        return (default,) * count_
    if len(values) == 1:
        return (int(values[0]),) * count_
    if len(values) != count_:
        raise ShapeError(f"{what} has {len(values)} values for {count_} spatial axes")
    return tuple(int(v) for v in values)


def conv_geometry(layer: pb.LayerParameter, bottom: Shape) -> ConvGeometry:
    """Read a convolution_param against its input shape (Caffe's rules, fork padding included)."""
    param = layer.convolution_param
    axis = canonical_axis(param.axis, len(bottom))
    spatial = len(bottom) - axis - 1
    if spatial < 1:
        raise ShapeError(f"input of shape {bottom} has no spatial axes after channel axis {axis}")
    if param.HasField("kernel_h") or param.HasField("kernel_w"):
        if spatial != 2 or not (param.HasField("kernel_h") and param.HasField("kernel_w")):
            raise ShapeError("kernel_h and kernel_w must both be given, for 2-D inputs only")
        kernel = (param.kernel_h, param.kernel_w)
    else:
        if not len(param.kernel_size):
            raise ShapeError("convolution_param needs kernel_size or kernel_h/kernel_w")
        kernel = _per_axis(param.kernel_size, spatial, 0, "kernel_size")
    if param.HasField("stride_h") or param.HasField("stride_w"):
        stride = (param.stride_h or 1, param.stride_w or 1)
    else:
        stride = _per_axis(param.stride, spatial, 1, "stride")
    if param.HasField("pad_h") or param.HasField("pad_w"):
        pad = (param.pad_h, param.pad_w)
    else:
        pad = _per_axis(param.pad, spatial, 0, "pad")
    dilation = _per_axis(param.dilation, spatial, 1, "dilation")
    pad_begin, pad_end = tuple(pad), tuple(pad)
    if any(param.HasField(f) for f in ("pad_l", "pad_r", "pad_t", "pad_b")):
        if spatial != 2:
            raise ShapeError("pad_l/pad_r/pad_t/pad_b apply to 2-D inputs only")
        pad_begin = (param.pad_t, param.pad_l)
        pad_end = (param.pad_b, param.pad_r)
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride) or any(d <= 0 for d in dilation):
        raise ShapeError(f"kernel {kernel}, stride {stride} and dilation {dilation} must be positive")
    channels = bottom[axis]
    group = param.group
    num_output = param.num_output
    if layer.type == "ConvolutionDepthwise":
        # farmingyard's layer: one filter per input channel, num_output ignored.
        group, num_output = channels, channels
    elif layer.type == "DepthwiseConvolution" and not param.HasField("group"):
        group = channels
    if num_output <= 0:
        raise ShapeError("convolution_param.num_output must be positive")
    if group <= 0 or channels % group or num_output % group:
        raise ShapeError(
            f"group {group} must divide both the input channels ({channels}) and num_output ({num_output})"
        )
    return ConvGeometry(axis, tuple(kernel), tuple(stride), dilation, pad_begin, pad_end,
                        num_output, group, param.bias_term)


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int) -> int:
    extent = dilation * (kernel - 1) + 1
    return div_toward_zero(size + pad_begin + pad_end - extent, stride) + 1


def deconv_output_size(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int) -> int:
    extent = dilation * (kernel - 1) + 1
    return stride * (size - 1) + extent - pad_begin - pad_end


@shape_rule("Convolution", "ConvolutionDepthwise", "DepthwiseConvolution")
def convolution(layer, bottoms):
    if not bottoms:
        raise ShapeError("needs at least one bottom")
    g = conv_geometry(layer, bottoms[0])
    spatial_in = bottoms[0][g.axis + 1:]
    spatial_out = tuple(
        conv_output_size(spatial_in[i], g.kernel[i], g.stride[i], g.dilation[i], g.pad_begin[i], g.pad_end[i])
        for i in range(len(spatial_in))
    )
    channels = bottoms[0][g.axis]
    tops = []
    for bottom in bottoms:
        if bottom != bottoms[0]:
            raise ShapeError(f"all bottoms must share one shape, got {bottom} and {bottoms[0]}")
        tops.append(bottom[: g.axis] + (g.num_output,) + spatial_out)
    params = [(g.num_output, channels // g.group) + g.kernel]
    if g.bias_term:
        params.append((g.num_output,))
    macs = sum(count(top) for top in tops) * (channels // g.group) * count(g.kernel)
    return LayerShapes(tuple(tops), tuple(params), macs)


@shape_rule("Deconvolution")
def deconvolution(layer, bottoms):
    if not bottoms:
        raise ShapeError("needs at least one bottom")
    g = conv_geometry(layer, bottoms[0])
    spatial_in = bottoms[0][g.axis + 1:]
    spatial_out = tuple(
        deconv_output_size(spatial_in[i], g.kernel[i], g.stride[i], g.dilation[i], g.pad_begin[i], g.pad_end[i])
        for i in range(len(spatial_in))
    )
    channels = bottoms[0][g.axis]
    tops = tuple(bottom[: g.axis] + (g.num_output,) + spatial_out for bottom in bottoms)
    params = [(channels, g.num_output // g.group) + g.kernel]
    if g.bias_term:
        params.append((g.num_output,))
    macs = sum(count(bottom) for bottom in bottoms) * (g.num_output // g.group) * count(g.kernel)
    return LayerShapes(tops, tuple(params), macs)
