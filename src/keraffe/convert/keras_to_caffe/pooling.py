"""MaxPooling2D, AveragePooling2D and the global poolings.

Caffe 1.0 pooling always rounds up and pads symmetrically. Keras windows are
placed exactly in Caffe by choosing a pad whose windows include Keras' own,
then slicing off the extra rows and columns Caffe computes (Slice + Silence).
MAX pooling ignores padding in both. AVE 'same' in Keras divides by the number
of real pixels, Caffe by the window size up to its pad: the exact form divides
Caffe's average of the input by Caffe's average of a ones tensor.
"""

from __future__ import annotations

import dataclasses
import math

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.errors import ConversionError
from keraffe.layout import NHWC, identity


@dataclasses.dataclass(frozen=True)
class AxisPlan:
    pad: int
    ceil: bool
    #: Caffe output positions to drop at the start and the end.
    skip_start: int
    skip_end: int


def caffe_pool_output(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    span = float(size + 2 * pad - kernel) / stride
    out = (math.ceil(span) if ceil else math.floor(span)) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def plan_axis(size: int, kernel: int, stride: int, pad_before: int, out: int, can_floor: bool,
              divisor_at_most: int | None, rounding: tuple[bool, ...] | None = None) -> AxisPlan | None:
    """Caffe pad and rounding whose windows contain Keras' windows (starting at -pad_before).

    ``rounding`` limits the rounding modes tried (True: ceil): one Caffe
    pooling layer rounds both its axes the same way.
    """
    candidates = []
    pad = pad_before
    modes = rounding if rounding is not None else ((True, False) if can_floor else (True,))
    while pad < kernel:
        skip = (pad - pad_before) // stride
        for ceil in modes:
            caffe_out = caffe_pool_output(size, kernel, stride, pad, ceil)
            if caffe_out < skip + out:
                continue
            if divisor_at_most is not None:
                last_start = (skip + out - 1) * stride - pad
                if last_start + kernel > size + pad:
                    continue
            candidates.append(AxisPlan(pad, ceil, skip, caffe_out - skip - out))
        pad += stride
    if not candidates:
        return None
    return min(candidates, key=lambda p: (p.skip_start + p.skip_end, not p.ceil, p.pad))


def _slice_axis(ctx, name, bottom, axis, plan: AxisPlan, size, unused, kept):
    """Keep Caffe positions [skip_start, size - skip_end) of ``axis`` in blob ``kept``; the rest go to ``unused``."""
    layer = ctx.add("Slice", ctx.unique(f"{name}/crop{axis}"), [bottom], [])
    layer.slice_param.axis = axis
    tops = []
    if plan.skip_start:
        layer.slice_param.slice_point.append(plan.skip_start)
        tops.append(ctx.unique(f"{name}/crop{axis}_start"))
        unused.append(tops[-1])
    tops.append(kept)
    if plan.skip_end:
        layer.slice_param.slice_point.append(size - plan.skip_end)
        tops.append(ctx.unique(f"{name}/crop{axis}_end"))
        unused.append(tops[-1])
    layer.top.extend(tops)
    return kept


def _pool_layer(ctx, name, bottom, top, method, kernel, stride, plans):
    layer = ctx.add("Pooling", name, [bottom], [top])
    param = layer.pooling_param
    param.pool = param.MAX if method == "max" else param.AVE
    if kernel[0] == kernel[1]:
        param.kernel_size = kernel[0]
    else:
        param.kernel_h, param.kernel_w = kernel
    if stride[0] == stride[1]:
        param.stride = stride[0]
    else:
        param.stride_h, param.stride_w = stride
    if plans[0].pad == plans[1].pad:
        if plans[0].pad:
            param.pad = plans[0].pad
    else:
        param.pad_h, param.pad_w = plans[0].pad, plans[1].pad
    if not plans[0].ceil:
        param.round_mode = param.FLOOR
    return layer


def _power(ctx, name, bottom, power=1.0, scale=1.0, shift=0.0):
    layer = ctx.add("Power", ctx.unique(name), [bottom])
    if power != 1.0:
        layer.power_param.power = power
    if scale != 1.0:
        layer.power_param.scale = scale
    if shift != 0.0:
        layer.power_param.shift = shift
    return layer.top[0]


def _eltwise(ctx, name, bottoms, operation=None, coeff=None, top=None):
    layer = ctx.add("Eltwise", ctx.unique(name), bottoms, [top] if top else None)
    if operation == "prod":
        layer.eltwise_param.operation = layer.eltwise_param.PROD
    if coeff:
        layer.eltwise_param.coeff.extend(coeff)
    return layer.top[0]


def _coverage(ctx, name, bottom, kernel, stride, plans):
    """Caffe's AVE pooling of a ones tensor: real pixels / Caffe's divisor, per window."""
    ones = _power(ctx, f"{name}/ones", bottom, scale=0.0, shift=1.0)
    coverage = ctx.unique(f"{name}/coverage")
    _pool_layer(ctx, coverage, ones, coverage, "ave", kernel, stride, plans)
    return coverage


def _max_with_zeros(ctx, name, bottom, pooled, value, kernel, stride, pads):
    """MAX pooling over ZeroPadding2D: in windows that touch the zeros, max(m, 0) = m + ReLU(-m).

    A depthwise convolution of a ones tensor with weights 1, placed on Keras'
    windows, counts each window's real pixels exactly; windows short of kH*kW
    touch padding. border = clip(2 * (kH*kW - count), 0, 1) is exactly 0 or 1.
    """
    import numpy as np

    from keraffe.convert.keras_to_caffe.conv import padded_kernel, set_conv_param

    channels = value.shape[1]
    ones = _power(ctx, f"{name}/ones", bottom, scale=0.0, shift=1.0)
    weight, caffe_pad = padded_kernel(np.ones((channels, 1) + kernel, np.float32), pads, (1, 1), name)
    count = ctx.add("Convolution", ctx.unique(f"{name}/count"), [ones])
    set_conv_param(count.convolution_param, channels, weight.shape[2:], stride, caffe_pad, (1, 1), channels, False)
    ctx.weights[count.name] = [weight]
    area = float(kernel[0] * kernel[1])
    spread = _power(ctx, f"{name}/border_spread", count.top[0], scale=-2.0, shift=2.0 * area)
    positive = ctx.add("ReLU", ctx.unique(f"{name}/border_relu"), [spread]).top[0]
    excess = _power(ctx, f"{name}/border_excess", spread, shift=-1.0)
    excess = ctx.add("ReLU", ctx.unique(f"{name}/border_excess_relu"), [excess]).top[0]
    border = _eltwise(ctx, f"{name}/border", [positive, excess], coeff=[1.0, -1.0])
    negative = _power(ctx, f"{name}/negate", pooled, scale=-1.0)
    negative = ctx.add("ReLU", ctx.unique(f"{name}/negative_part"), [negative]).top[0]
    lift = _eltwise(ctx, f"{name}/lift", [border, negative], "prod")
    return _eltwise(ctx, f"{name}/with_zeros", [pooled, lift], top=name)


def absorb_crop(ctx, value, name):
    """Apply the negative part of pending padding (a crop, from Cropping2D after ZeroPadding2D) with Slice."""
    pending = value.pending_padding
    if not pending or all(p >= 0 for pair in pending for p in pair):
        return value
    blob = value.blob
    unused = []
    shape = list(value.shape)
    for axis in range(2):
        before, after = pending[axis]
        cut_before, cut_after = max(0, -before), max(0, -after)
        if not cut_before and not cut_after:
            continue
        size = shape[2 + axis]
        layer = ctx.add("Slice", ctx.unique(f"{name}/precrop{axis + 2}"), [blob], [])
        layer.slice_param.axis = axis + 2
        tops = []
        if cut_before:
            layer.slice_param.slice_point.append(cut_before)
            tops.append(ctx.unique(f"{name}/precrop{axis + 2}_start"))
            unused.append(tops[-1])
        blob = ctx.unique(f"{name}/precrop{axis + 2}_kept")
        tops.append(blob)
        if cut_after:
            layer.slice_param.slice_point.append(size - cut_after)
            tops.append(ctx.unique(f"{name}/precrop{axis + 2}_end"))
            unused.append(tops[-1])
        layer.top.extend(tops)
        shape[2 + axis] = size - cut_before - cut_after
    ctx.add("Silence", ctx.unique(f"{name}/precrop_discard"), unused, [])
    kept = tuple((max(0, b), max(0, a)) for b, a in pending)
    return dataclasses.replace(value, blob=blob, shape=tuple(shape), pending_padding=kept)


def _pool2d(ctx, operation, node, method):
    value = ctx.value(node.input_tensors[0], allow_pending=True)
    name = ctx.layer_name(operation, node)
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError(f"'{name}': only channels_last pooling converts")
    value = absorb_crop(ctx, value, name)
    bottom = ctx.blob_nchw(value, name)
    kernel = tuple(int(k) for k in operation.pool_size)
    stride = tuple(int(s) for s in operation.strides)
    pending = value.pending_padding if value.pending_padding and any(map(any, value.pending_padding)) else None
    out_hw = ctx.caffe_shape(node.outputs[0], NHWC)[2:]
    if pending and operation.padding == "same":
        raise ConversionError(f"'{name}': ZeroPadding2D before 'same' pooling has no exact Caffe form")
    pads = []
    for axis in range(2):
        if operation.padding == "same":
            from keraffe.convert.keras_to_caffe.conv import same_padding

            pads.append(same_padding(value.shape[2 + axis], kernel[axis], stride[axis]))
        else:
            pads.append(pending[axis] if pending else (0, 0))
    # Keras 'same' pooling ignores its padding (AVE divides by real pixels); ZeroPadding2D's zeros count.
    excludes_padding = operation.padding == "same"
    zeros_count = bool(pending)
    can_floor = ctx.target.floor_pooling
    need_divisor = method == "ave" and zeros_count
    # Caffe rounds both axes of one pooling layer the same way: plan them together, per rounding mode.
    plans = None
    for ceil in (True, False) if can_floor else (True,):
        candidate = [plan_axis(value.shape[2 + axis], kernel[axis], stride[axis], pads[axis][0], out_hw[axis],
                               can_floor, kernel[axis] if need_divisor else None, rounding=(ceil,))
                     for axis in range(2)]
        if any(plan is None for plan in candidate):
            continue
        if plans is None or sum(p.skip_start + p.skip_end for p in candidate) < sum(
                p.skip_start + p.skip_end for p in plans):
            plans = candidate
    if plans is None:
        if method == "ave" and zeros_count:
            _average_as_convolution(ctx, operation, node, value, bottom, name, kernel, stride, pads)
            return
        axis = next((axis for axis in range(2)
                     if plan_axis(value.shape[2 + axis], kernel[axis], stride[axis], pads[axis][0], out_hw[axis],
                                  can_floor, kernel[axis] if need_divisor else None) is None), None)
        if axis is None:
            raise ConversionError(f"'{name}': Keras' windows need Caffe to round one axis up and the other down")
        raise ConversionError(f"'{name}': no Caffe pooling window layout matches Keras' on axis {axis}")
    start = len(ctx.net.layer)
    sliced = any(p.skip_start or p.skip_end for p in plans)
    ave_fix = method == "ave" and excludes_padding and any(p.pad for p in plans)
    max_fix = method == "max" and zeros_count and not value.non_negative
    final = name if not max_fix else ctx.unique(f"{name}/without_zeros")
    exact_top = final if not sliced else ctx.unique(f"{name}/exact")
    pool_top = exact_top if not ave_fix else ctx.unique(f"{name}/caffe")
    _pool_layer(ctx, name, bottom, pool_top, method, kernel, stride, plans)
    if ave_fix:
        coverage = _coverage(ctx, name, bottom, kernel, stride, plans)
        inverse = _power(ctx, f"{name}/inverse_coverage", coverage, power=-1.0)
        _eltwise(ctx, f"{name}/divide", [pool_top, inverse], "prod", top=exact_top)
    current = exact_top
    if sliced:
        unused: list[str] = []
        axes = [axis for axis in range(2) if plans[axis].skip_start or plans[axis].skip_end]
        for n, axis in enumerate(axes):
            size = plans[axis].skip_start + out_hw[axis] + plans[axis].skip_end
            kept = final if n == len(axes) - 1 else ctx.unique(f"{name}/crop{axis + 2}_kept")
            current = _slice_axis(ctx, name, current, axis + 2, plans[axis], size, unused, kept)
        ctx.add("Silence", ctx.unique(f"{name}/discard"), unused, [])
    if max_fix:
        current = _max_with_zeros(ctx, name, bottom, current, value, kernel, stride, pads)
    types = ctx.caffe_types(start)
    if len(types) > 1:
        ctx.note(operation, types, "Keras' pooling windows placed exactly in Caffe's")
    ctx.emit(operation, node, 0, node.outputs[0], current, NHWC, non_negative=value.non_negative)


def _average_as_convolution(ctx, operation, node, value, bottom, name, kernel, stride, pads):
    """AVE pooling over ZeroPadding2D as a depthwise convolution with weights 1/(kH*kW).

    Caffe's pooling pad must stay below the kernel size; a convolution's may
    not, and zero rows in the kernel place its windows exactly as Keras'.
    """
    import numpy as np

    from keraffe.convert.keras_to_caffe.conv import padded_kernel, set_conv_param

    channels = value.shape[1]
    weight = np.full((channels, 1) + kernel, 1.0 / (kernel[0] * kernel[1]), np.float32)
    weight, caffe_pad = padded_kernel(weight, pads, (1, 1), name)
    layer = ctx.add("Convolution", name, [bottom])
    set_conv_param(layer.convolution_param, channels, weight.shape[2:], stride, caffe_pad, (1, 1), channels, False)
    ctx.weights[name] = [weight]
    ctx.note(operation, ["Convolution"], "average over zero padding as a depthwise convolution of 1/(kH*kW)")
    ctx.emit(operation, node, 0, node.outputs[0], name, NHWC, non_negative=value.non_negative)


@keras_layer("MaxPooling2D")
def max_pooling2d(ctx, operation, node):
    _pool2d(ctx, operation, node, "max")


@keras_layer("AveragePooling2D")
def average_pooling2d(ctx, operation, node):
    _pool2d(ctx, operation, node, "ave")


def _global(ctx, operation, node, method):
    value = ctx.value(node.input_tensors[0], allow_pending=True)
    name = ctx.layer_name(operation, node)
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError(f"'{name}': only channels_last pooling converts")
    if getattr(value, "pending_padding", None):
        raise ConversionError(f"'{name}': ZeroPadding2D before global pooling has no exact Caffe form")
    bottom = ctx.blob_nchw(value, name)
    keepdims = bool(getattr(operation, "keepdims", False))
    top = name if keepdims else ctx.unique(f"{name}/pooled")
    layer = ctx.add("Pooling", name, [bottom], [top])
    layer.pooling_param.pool = layer.pooling_param.MAX if method == "max" else layer.pooling_param.AVE
    layer.pooling_param.global_pooling = True
    if keepdims:
        ctx.emit(operation, node, 0, node.outputs[0], top, NHWC, non_negative=value.non_negative)
        return
    ctx.add("Flatten", ctx.unique(f"{name}/flatten"), [top], [name])
    ctx.emit(operation, node, 0, node.outputs[0], name, identity(2), non_negative=value.non_negative)


@keras_layer("GlobalAveragePooling2D")
def global_average_pooling2d(ctx, operation, node):
    _global(ctx, operation, node, "ave")


@keras_layer("GlobalMaxPooling2D")
def global_max_pooling2d(ctx, operation, node):
    _global(ctx, operation, node, "max")

