"""Keras -> Caffe: Keras' pooling windows placed exactly in Caffe 1.0's.

The MaxPooling2D and AveragePooling2D handlers write a draft
``keraffe.KerasPooling`` layer with Keras' own semantics: outputs rounded
down, 'same' padding side by side (``pad_t``... ; AVE_EXC_PAD when an average
leaves the padding out), and whatever zero padding (ZeroPadding2D) it reads,
whose zeros count. Caffe 1.0 pooling always rounds up and pads both sides
alike. This pass chooses a Caffe pad and rounding whose windows contain Keras'
(:func:`keraffe.windows.plan_axis`) and slices off the extra output rows and
columns (Slice + Silence); where an average must leave padding out, it divides
by Caffe's average of a ones tensor; a MAX pooling over zero padding whose
input may be negative gets the zeros back (max(m, 0) = m + ReLU(-m) in windows
that touch them); an average over zero padding wider than Caffe allows becomes
a depthwise convolution of 1/(kH*kW).

Given::

    pool = keraffe.KerasPooling(x)     MAX, kernel 3, stride 2, round_mode FLOOR; x is 12x12

Result::

    pool/exact = Pooling(x)            MAX, kernel 3, stride 2   (Caffe rounds up: 6x6)
    pool/crop2 = Slice(pool/exact)     axis 2: keep rows 0..4, pool/crop2_end silenced
    pool = Slice(...)                  axis 3: keep columns 0..4
    pool/discard = Silence(...)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.errors import ConversionError
from keraffe.passes.absorb_zero_padding import (cut_negative_padding, padding_fill, resolve_zero_padding,
                                                write_zero_padding)
from keraffe.passes.drafting import eltwise, keep_range, power
from keraffe.windows import AxisPlan, padded_kernel, plan_axis, set_conv_param

#: The draft layer type the Keras pooling handlers write.
KERAS_POOLING = "keraffe.KerasPooling"


def place_pooling_windows(ctx) -> list:
    """Rewrite every draft Keras pooling as Caffe 1.0 layers (or the target's FLOOR pooling)."""
    problems = []
    with ctx.rewriting() as layers:
        for layer in layers:
            if layer.type != KERAS_POOLING:
                ctx.keep(layer)
                continue
            ctx.operation = ctx.origin[layer.name]
            try:
                _place(ctx, layer)
            except ConversionError as error:
                problems.append((layer.name, error))
    return problems


@dataclasses.dataclass(frozen=True)
class _KerasPooling:
    """What a draft pooling asks for, its zero padding resolved: the input is ``source``, unpadded."""

    name: str
    method: str
    #: Keras 'same' pooling leaves its padding out (AVE divides by real pixels); ZeroPadding2D's zeros count.
    excludes_padding: bool
    kernel: tuple[int, int]
    stride: tuple[int, int]
    #: (before, after) per spatial axis: the zero padding read, or else the layer's own 'same' padding.
    pads: list
    #: The layer's own 'same' padding, (0, 0) per axis for 'valid'.
    own: list
    zeros_count: bool
    non_negative: bool
    source: str
    shape: tuple[int, ...]
    out_hw: tuple[int, int]


def _read(ctx, draft) -> _KerasPooling:
    param = draft.pooling_param
    name = draft.name
    source, zeros = resolve_zero_padding(ctx, draft.bottom[0])
    own = [(param.pad_t, param.pad_b), (param.pad_l, param.pad_r)]
    if zeros is not None:
        source, zeros = cut_negative_padding(ctx, name, source, zeros)
        if padding_fill(ctx, draft.bottom[0]) != 0.0:
            # Padding with -inf before MAX pooling is what Caffe's own pooling padding does: no window sees it.
            if param.pool != pb.PoolingParameter.MAX:
                raise ConversionError(f"'{name}': padding with -inf before an average pooling has no Caffe form")
            own = [(a[0] + b[0], a[1] + b[1]) for a, b in zip(own, zeros)]
            zeros = None
        elif not any(map(any, zeros)):
            zeros = None
    return _KerasPooling(
        name, "max" if param.pool == pb.PoolingParameter.MAX else "ave",
        param.pool == pb.PoolingParameter.AVE_EXC_PAD, (param.kernel_h, param.kernel_w),
        (param.stride_h, param.stride_w), list(zeros) if zeros else own, own, zeros is not None,
        draft.bottom[0] in ctx.non_negative, source, ctx.shapes[source], ctx.shapes[name][2:])


def _zeros_written_out(ctx, pool: _KerasPooling) -> _KerasPooling:
    """The pooling reading its zero padding written out as a blob (exact, one convolution): Keras' own windows."""
    name = ctx.unique(f"{pool.name}/zero_padded")
    padded = write_zero_padding(ctx, name, pool.source, pool.pads, name)
    return dataclasses.replace(pool, source=padded, shape=ctx.shapes[padded], pads=pool.own, zeros_count=False)


def _place(ctx, draft) -> None:
    pool = _read(ctx, draft)
    if pool.zeros_count and any(map(any, pool.own)):
        # ZeroPadding2D, then 'same' pooling: the zeros count, the pooling's own padding does not.
        pool = _zeros_written_out(ctx, pool)
    need_divisor = pool.method == "ave" and pool.zeros_count
    sizes = pool.shape[2:]
    plans = _plans(ctx, sizes, pool.kernel, pool.stride, pool.pads, pool.out_hw, need_divisor)
    if plans is None and pool.method == "max" and pool.zeros_count:
        # Padding as wide as the window: Caffe's pooling pad must stay below the kernel.
        pool = _zeros_written_out(ctx, pool)
        plans = _plans(ctx, pool.shape[2:], pool.kernel, pool.stride, pool.pads, pool.out_hw, False)
        sizes = pool.shape[2:]
    if plans is not None:
        _write(ctx, pool, plans)
    elif need_divisor:
        _average_as_convolution(ctx, pool.name, pool.source, pool.shape[1], pool.kernel, pool.stride, pool.pads)
    else:
        raise _no_plan(ctx, pool.name, sizes, pool.kernel, pool.stride, pool.pads, pool.out_hw, need_divisor)


def _write(ctx, pool: _KerasPooling, plans) -> None:
    """Caffe's pooling on the planned windows, then the fixes: divisor, slices, the zeros MAX must see."""
    name = pool.name
    start = len(ctx.net.layer)
    sliced = any(p.skip_start or p.skip_end for p in plans)
    ave_fix = pool.method == "ave" and pool.excludes_padding and any(p.pad for p in plans)
    max_fix = pool.method == "max" and pool.zeros_count and not pool.non_negative
    final = name if not max_fix else ctx.unique(f"{name}/without_zeros")
    exact_top = final if not sliced else ctx.unique(f"{name}/exact")
    pool_top = exact_top if not ave_fix else ctx.unique(f"{name}/caffe")
    _pool_layer(ctx, name, pool.source, pool_top, pool.method, pool.kernel, pool.stride, plans)
    if ave_fix:
        coverage = _coverage(ctx, name, pool.source, pool.kernel, pool.stride, plans)
        inverse = power(ctx, f"{name}/inverse_coverage", coverage, power=-1.0)
        eltwise(ctx, f"{name}/divide", [pool_top, inverse], "prod", top=exact_top)
    current = exact_top
    if sliced:
        unused: list[str] = []
        axes = [axis for axis in range(2) if plans[axis].skip_start or plans[axis].skip_end]
        for n, axis in enumerate(axes):
            size = plans[axis].skip_start + pool.out_hw[axis] + plans[axis].skip_end
            kept = final if n == len(axes) - 1 else ctx.unique(f"{name}/crop{axis + 2}_kept")
            current = keep_range(ctx, ctx.unique(f"{name}/crop{axis + 2}"), current, axis + 2, size,
                                 plans[axis].skip_start, plans[axis].skip_end, kept, f"{name}/crop{axis + 2}", unused)
        ctx.add("Silence", ctx.unique(f"{name}/discard"), unused, [])
    if max_fix:
        _max_with_zeros(ctx, name, pool.source, current, pool.shape[1], pool.kernel, pool.stride, pool.pads)
    types = ctx.caffe_types(start)
    if len(types) > 1:
        ctx.note_layer(name, types, "Keras' pooling windows placed exactly in Caffe's")


def _plans(ctx, sizes, kernel, stride, pads, out_hw, need_divisor) -> list[AxisPlan] | None:
    """Caffe rounds both axes of one pooling layer the same way: plan them together, per rounding mode."""
    can_floor = ctx.target.floor_pooling
    plans = None
    for ceil in (True, False) if can_floor else (True,):
        candidate = [plan_axis(sizes[axis], kernel[axis], stride[axis], pads[axis][0], out_hw[axis], can_floor,
                               kernel[axis] if need_divisor else None, rounding=(ceil,))
                     for axis in range(2)]
        if any(plan is None for plan in candidate):
            continue
        if plans is None or sum(p.skip_start + p.skip_end for p in candidate) < sum(
                p.skip_start + p.skip_end for p in plans):
            plans = candidate
    return plans


def _no_plan(ctx, name, sizes, kernel, stride, pads, out_hw, need_divisor) -> ConversionError:
    can_floor = ctx.target.floor_pooling
    axis = next((axis for axis in range(2)
                 if plan_axis(sizes[axis], kernel[axis], stride[axis], pads[axis][0], out_hw[axis], can_floor,
                              kernel[axis] if need_divisor else None) is None), None)
    if axis is None:
        return ConversionError(f"'{name}': Keras' windows need Caffe to round one axis up and the other down")
    return ConversionError(f"'{name}': no Caffe pooling window layout matches Keras' on axis {axis}")




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






def _coverage(ctx, name, bottom, kernel, stride, plans):
    """Caffe's AVE pooling of a ones tensor: real pixels / Caffe's divisor, per window."""
    ones = power(ctx, f"{name}/ones", bottom, scale=0.0, shift=1.0)
    coverage = ctx.unique(f"{name}/coverage")
    _pool_layer(ctx, coverage, ones, coverage, "ave", kernel, stride, plans)
    return coverage


def _max_with_zeros(ctx, name, bottom, pooled, channels, kernel, stride, pads):
    """MAX pooling over ZeroPadding2D: in windows that touch the zeros, max(m, 0) = m + ReLU(-m).

    A depthwise convolution of a ones tensor with weights 1, placed on Keras'
    windows, counts each window's real pixels exactly; windows short of kH*kW
    touch padding. border = clip(2 * (kH*kW - count), 0, 1) is exactly 0 or 1.
    """
    ones = power(ctx, f"{name}/ones", bottom, scale=0.0, shift=1.0)
    weight, caffe_pad = padded_kernel(np.ones((channels, 1) + kernel, np.float32), pads, (1, 1), name)
    count = ctx.add("Convolution", ctx.unique(f"{name}/count"), [ones])
    set_conv_param(count.convolution_param, channels, weight.shape[2:], stride, caffe_pad, (1, 1), channels, False)
    ctx.weights[count.name] = [weight]
    area = float(kernel[0] * kernel[1])
    spread = power(ctx, f"{name}/border_spread", count.top[0], scale=-2.0, shift=2.0 * area)
    positive = ctx.add("ReLU", ctx.unique(f"{name}/border_relu"), [spread]).top[0]
    excess = power(ctx, f"{name}/border_excess", spread, shift=-1.0)
    excess = ctx.add("ReLU", ctx.unique(f"{name}/border_excess_relu"), [excess]).top[0]
    border = eltwise(ctx, f"{name}/border", [positive, excess], coeff=[1.0, -1.0])
    negative = power(ctx, f"{name}/negate", pooled, scale=-1.0)
    negative = ctx.add("ReLU", ctx.unique(f"{name}/negative_part"), [negative]).top[0]
    lift = eltwise(ctx, f"{name}/lift", [border, negative], "prod")
    return eltwise(ctx, f"{name}/with_zeros", [pooled, lift], top=name)


def _average_as_convolution(ctx, name, bottom, channels, kernel, stride, pads):
    """AVE pooling over ZeroPadding2D as a depthwise convolution with weights 1/(kH*kW).

    Caffe's pooling pad must stay below the kernel size; a convolution's may
    not, and zero rows in the kernel place its windows exactly as Keras'.
    """
    weight = np.full((channels, 1) + kernel, 1.0 / (kernel[0] * kernel[1]), np.float32)
    weight, caffe_pad = padded_kernel(weight, pads, (1, 1), name)
    layer = ctx.add("Convolution", name, [bottom])
    set_conv_param(layer.convolution_param, channels, weight.shape[2:], stride, caffe_pad, (1, 1), channels, False)
    ctx.weights[name] = [weight]
    ctx.note_layer(name, ["Convolution"], "average over zero padding as a depthwise convolution of 1/(kH*kW)")
