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
              divisor_at_most: int | None) -> AxisPlan | None:
    """Caffe pad and rounding whose windows contain Keras' windows (starting at -pad_before)."""
    candidates = []
    pad = pad_before
    while pad < kernel:
        skip = (pad - pad_before) // stride
        for ceil in (True, False) if can_floor else (True,):
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


def _pool2d(ctx, operation, node, method):
    value = ctx.value(node.input_tensors[0], allow_pending=True)
    name = ctx.layer_name(operation, node)
    if getattr(operation, "data_format", "channels_last") != "channels_last":
        raise ConversionError(f"'{name}': only channels_last pooling converts")
    bottom = ctx.blob_nchw(value, name)
    kernel = tuple(int(k) for k in operation.pool_size)
    stride = tuple(int(s) for s in operation.strides)
    pending = getattr(value, "pending_padding", None)
    out_hw = ctx.caffe_shape(node.outputs[0], NHWC)[2:]
    excludes_padding = operation.padding == "same"
    pads = []
    for axis in range(2):
        size = value.shape[2 + axis]
        if operation.padding == "same":
            from keraffe.convert.keras_to_caffe.conv import same_padding

            before, after = same_padding(size, kernel[axis], stride[axis])
        else:
            before, after = 0, 0
        if pending:
            before, after = before + pending[axis][0], after + pending[axis][1]
        pads.append((before, after))
    if pending:
        if operation.padding == "same":
            raise ConversionError(f"'{name}': ZeroPadding2D before 'same' pooling has no exact Caffe form")
        if method == "max" and not value.non_negative:
            raise ConversionError(
                f"'{name}': MAX pooling over ZeroPadding2D lets the zeros win over negative values, and Caffe's "
                "padding never wins; exact only when the input is non-negative (after ReLU), which keraffe cannot "
                "show here"
            )
        excludes_padding = False
    can_floor = ctx.target.floor_pooling
    plans = []
    for axis in range(2):
        size = value.shape[2 + axis]
        need_divisor = method == "ave" and not excludes_padding and any(pads[axis])
        plan = plan_axis(size, kernel[axis], stride[axis], pads[axis][0], out_hw[axis], can_floor,
                         kernel[axis] if need_divisor else None)
        if plan is None:
            raise ConversionError(f"'{name}': no Caffe pooling window layout matches Keras' on axis {axis}")
        plans.append(plan)
    caffe_types_before = len(ctx.net.layer)
    final_top = name
    sliced = any(p.skip_start or p.skip_end for p in plans)
    ave_fix = method == "ave" and excludes_padding and any(p.pad for p in plans)
    pool_top = ctx.unique(f"{name}/caffe") if (sliced or ave_fix) else final_top
    _pool_layer(ctx, name, bottom, pool_top, method, kernel, stride, plans)
    current = pool_top
    if ave_fix:
        ones = ctx.add("Power", ctx.unique(f"{name}/ones"), [bottom])
        ones.power_param.scale = 0.0
        ones.power_param.shift = 1.0
        coverage_top = ctx.unique(f"{name}/coverage")
        _pool_layer(ctx, coverage_top, ones.top[0], coverage_top, "ave", kernel, stride, plans)
        inverse = ctx.add("Power", ctx.unique(f"{name}/inverse_coverage"), [coverage_top])
        inverse.power_param.power = -1.0
        product_top = final_top if not sliced else ctx.unique(f"{name}/exact")
        product = ctx.add("Eltwise", ctx.unique(f"{name}/divide"), [pool_top, inverse.top[0]], [product_top])
        product.eltwise_param.operation = product.eltwise_param.PROD
        current = product_top
    if sliced:
        unused: list[str] = []
        axes = [axis for axis in range(2) if plans[axis].skip_start or plans[axis].skip_end]
        for n, axis in enumerate(axes):
            size = plans[axis].skip_start + out_hw[axis] + plans[axis].skip_end
            kept = final_top if n == len(axes) - 1 else ctx.unique(f"{name}/crop{axis + 2}_kept")
            current = _slice_axis(ctx, name, current, axis + 2, plans[axis], size, unused, kept)
        ctx.add("Silence", ctx.unique(f"{name}/discard"), unused, [])
    types = ctx.caffe_types(caffe_types_before)
    if len(types) > 1:
        ctx.note(operation, types, "Keras' pooling windows placed exactly in Caffe's")
    ctx.emit(operation, node, 0, node.outputs[0], current, NHWC, non_negative=value.non_negative)


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

