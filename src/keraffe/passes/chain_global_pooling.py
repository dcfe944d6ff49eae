"""A Caffe -> Caffe pass for toolchains that limit pooling kernels: a global pooling as a chain of smaller ones.

The maximum of maxima over blocks that cover the image is the maximum; the
mean of means over equal blocks that tile the image is the mean. So a global
pooling whose kernel (the whole H x W) is more than a toolchain takes is
written as poolings whose kernels it does take:

* MAX: each stage takes ``m`` windows of ``k`` positions ``s`` apart that
  cover the axis exactly ((n - k) % s == 0, s <= k, so they may overlap and
  rounding up or down gives the same size); the result is bit for bit the
  global maximum.
* AVE: each stage takes blocks that divide the axis (kernel = stride = a
  divisor, no padding), so every window averages real pixels only; the
  result is the global mean up to float32 summation order.

``fits(kernel, stride, input_hw, global_pooling)`` says which poolings the
toolchain takes; stages are chosen greedily (the most reduction that fits),
the last one written as ``global_pooling``. A global pooling with no such
chain (an AVE over a prime size no stage may take whole) is left as it was.

Given (x is 1x64x8x8, a toolchain that takes kernels and global inputs up to 7)::

    pool = Pooling(x)                  AVE, global_pooling

Result::

    pool/stage1 = Pooling(x)           AVE, kernel 4, stride 4      -> 2x2
    pool = Pooling(pool/stage1)        AVE, global_pooling         -> 1x1
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from keraffe.caffe.net import CaffeNet
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.passes.caffe_rewrite import NetRewrite, Rewritten

#: fits(kernel_hw, stride_hw, input_hw, global_pooling) -> whether the toolchain takes that pooling.
Fits = Callable[[tuple[int, int], tuple[int, int], tuple[int, int], bool], bool]


@dataclasses.dataclass(frozen=True)
class Stage:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    output: tuple[int, int]

    @property
    def global_pooling(self) -> bool:
        return self.output == (1, 1)


def _axis_steps(size: int, method: str) -> list[tuple[int, int, int]]:
    """(kernel, stride, output) steps along one axis that cover it exactly, from most to least reduction."""
    if size == 1:
        return [(1, 1, 1)]
    steps = {(d, d, size // d) for d in range(2, size + 1) if size % d == 0}
    if method == "max":
        for out in range(2, size):
            stride = size // out
            steps.add((size - (out - 1) * stride, stride, out))
    return sorted(steps, key=lambda step: (step[2], step[0]))


def plan_chain(size_hw: tuple[int, int], method: str, fits: Fits, max_stages: int = 8) -> list[Stage] | None:
    """Stages from ``size_hw`` down to 1x1, each one the toolchain takes, or None when there is none."""
    stages: list[Stage] = []
    current = tuple(size_hw)
    while current != (1, 1):
        if len(stages) == max_stages:
            return None
        best = None
        for kh, sh, oh in _axis_steps(current[0], method):
            for kw, sw, ow in _axis_steps(current[1], method):
                if (oh, ow) == current:
                    continue
                stage = Stage((kh, kw), (sh, sw), (oh, ow))
                if not fits(stage.kernel, stage.stride, current, stage.global_pooling):
                    continue
                key = (oh * ow, kh * kw)
                if best is None or key < best[0]:
                    best = (key, stage)
        if best is None:
            return None
        stages.append(best[1])
        current = best[1].output
    return stages


def is_global(layer: pb.LayerParameter, bottom) -> bool:
    """A pooling over the whole image: global_pooling, or a kernel the input's size with no padding."""
    param = layer.pooling_param
    if param.global_pooling:
        return True
    kernel = (param.kernel_h, param.kernel_w) if param.HasField("kernel_h") else (param.kernel_size,) * 2
    padded = param.pad or param.pad_h or param.pad_w
    return len(bottom) == 4 and tuple(kernel) == tuple(bottom[2:]) and not padded


def chain_global_pooling(net: CaffeNet, fits: Fits) -> Rewritten:
    """Write each global pooling that ``fits`` refuses as a chain of poolings it takes (see the module)."""
    rewrite = NetRewrite(net)
    for node, layer in rewrite.layers():
        if node.type != "Pooling" or len(layer.top) != 1 or layer.pooling_param.pool not in (
                pb.PoolingParameter.MAX, pb.PoolingParameter.AVE):
            rewrite.keep(layer)
            continue
        bottom = net.shapes.get(node.inputs[0])
        if bottom is None or not is_global(layer, bottom) or fits(tuple(bottom[2:]), (1, 1), tuple(bottom[2:]), True):
            rewrite.keep(layer)
            continue
        method = "max" if layer.pooling_param.pool == pb.PoolingParameter.MAX else "ave"
        stages = plan_chain(tuple(bottom[2:]), method, fits)
        if stages is None:
            rewrite.keep(layer)
            continue
        current = layer.bottom[0]
        for index, stage in enumerate(stages, start=1):
            last = index == len(stages)
            name = node.name if last else rewrite.unique(f"{node.name}/stage{index}")
            top = layer.top[0] if last else name
            step = rewrite.add("Pooling", name, [current], [top])
            step.pooling_param.pool = layer.pooling_param.pool
            if stage.global_pooling:
                step.pooling_param.global_pooling = True
            else:
                step.pooling_param.kernel_h, step.pooling_param.kernel_w = stage.kernel
                step.pooling_param.stride_h, step.pooling_param.stride_w = stage.stride
            current = top
        shown = " -> ".join("global" if s.global_pooling else f"{s.kernel[0]}x{s.kernel[1]}/{s.stride[0]}x{s.stride[1]}"
                            for s in stages)
        rewrite.note(node, f"global {method.upper()} pooling over {bottom[2]}x{bottom[3]} chained as {shown}")
    return rewrite.done()
