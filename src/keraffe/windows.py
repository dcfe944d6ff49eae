"""Where Keras' sliding windows fall, and how Caffe 1.0 places the same windows.

Keras pads 'same' convolutions and poolings TensorFlow's way (the odd pixel
at the end) and rounds pooling outputs down; Caffe 1.0 pads both sides alike
and rounds pooling outputs up. This module holds the arithmetic that relates
the two, with no handler and no Keras in it: the Keras -> Caffe handlers
(``keraffe.convert.keras_to_caffe``) and passes (``keraffe.passes``) both use it.

* Convolution: uneven padding becomes symmetric padding with zero rows added
  to the kernel on the short side (:func:`padded_kernel`), dilated kernels
  written out undilated first where that is needed
  (:func:`undilate_for_uneven_padding`).
* Pooling: a Caffe pad and rounding whose windows contain Keras' windows,
  with the extra output positions to slice off (:func:`plan_axis`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from keraffe.errors import ConversionError


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) for one axis."""
    effective = dilation * (kernel - 1) + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def unread_padding_dropped(pads, sizes, kernel, strides, dilation) -> list[tuple[int, int]]:
    """``pads`` with trailing padding no window reads made symmetric, where Caffe's own padding then fits.

    Caffe pads both sides alike. A Caffe net converted to Keras pads (1, 0) where
    Caffe pads 1 but its last window stops short of the bottom padding; padding
    (1, 1) reads the same windows and gives the same output size, so the
    convolution keeps its own kernel rather than one widened with zero rows.
    """
    result = []
    for (before, after), size, k, stride, rate in zip(pads, sizes, kernel, strides, dilation):
        extent = rate * (k - 1) + 1
        out = (size + before + after - extent) // stride + 1
        read_after = max(0, (out - 1) * stride + extent - before - size)  # padding rows the last window reaches
        symmetric_out = (size + 2 * before - extent) // stride + 1
        if after < before and read_after <= after and symmetric_out == out:
            after = before
        result.append((before, after))
    return result


def padded_kernel(weight: np.ndarray, pads, dilation, hint: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Caffe weight (O, I, kH, kW) (or any number of spatial axes) widened with zero rows so symmetric padding
    acts like ``pads``."""
    caffe_pads = []
    widen = []
    for axis, (before, after) in enumerate(pads):
        pad = max(before, after)
        step = dilation[axis]
        # A zero tap of a dilated kernel moves its window by the dilation, not by one pixel.
        if (pad - before) % step or (pad - after) % step:
            raise ConversionError(
                f"'{hint}': uneven padding ({before}, {after}) with dilation {step} has no exact Caffe form"
            )
        widen.append(((pad - before) // step, (pad - after) // step))
        caffe_pads.append(pad)
    if any(w for pair in widen for w in pair):
        weight = np.pad(weight, [(0, 0), (0, 0)] + widen)
    return weight, tuple(caffe_pads)


def undilate_for_uneven_padding(weight: np.ndarray, pads, dilation) -> tuple[np.ndarray, tuple[int, int]]:
    """A dilated kernel written out with its zeros (dilation 1) when the padding is uneven, else unchanged.

    Zero rows shift a dilated kernel by whole dilation steps only; written out
    undilated, a zero row shifts it by one pixel, and the extra zero taps add
    exact zeros.
    """
    if all(before == after for before, after in pads) or all(d == 1 for d in dilation):
        return weight, tuple(dilation)
    rates = [int(d) for d in dilation]
    kernel = weight.shape[2:]
    spread = np.zeros(weight.shape[:2] + tuple((k - 1) * d + 1 for k, d in zip(kernel, rates)), weight.dtype)
    spread[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in rates)] = weight
    return spread, (1,) * len(rates)


def set_conv_param(param, num_output, kernel_hw, stride, pad, dilation, group, bias_term) -> None:
    param.num_output = int(num_output)
    if kernel_hw[0] == kernel_hw[1]:
        param.kernel_size.append(int(kernel_hw[0]))
    else:
        param.kernel_h, param.kernel_w = int(kernel_hw[0]), int(kernel_hw[1])
    if stride[0] == stride[1]:
        if stride[0] != 1:
            param.stride.append(int(stride[0]))
    else:
        param.stride_h, param.stride_w = int(stride[0]), int(stride[1])
    if pad[0] == pad[1]:
        if pad[0]:
            param.pad.append(int(pad[0]))
    else:
        param.pad_h, param.pad_w = int(pad[0]), int(pad[1])
    if any(d != 1 for d in dilation):
        if dilation[0] == dilation[1]:
            param.dilation.append(int(dilation[0]))
        else:
            param.dilation.extend(int(d) for d in dilation)
    if group != 1:
        param.group = int(group)
    if not bias_term:
        param.bias_term = False


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
