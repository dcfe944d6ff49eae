"""Mask computation: which weights to zero, from their magnitudes, in ``keras.ops`` only.

Everything here is a pure function of tensors, so it runs inside compiled train
steps on TensorFlow, JAX and PyTorch.  Sizes that decide array shapes (how many
blocks, group length) are static; the sparsity may be a traced scalar, so the
number of weights to prune is computed as a tensor and applied by ranking rather
than by slicing (JAX cannot slice to a traced length).

Each function takes ``xp``, the array namespace: ``keras.ops`` (the default),
inside compiled train steps, or :data:`NUMPY`, for masks recomputed between
batches by :class:`~keraffe.pruning.UpdatePruningStep`, where NumPy needs no
compilation at all (JAX compiles every eager op on first use, which cost more
than the pruning it serves).

Every weight tensor is seen through its *channel plane*: the input-channel axis
and the output-channel axis that :mod:`keraffe.pruning.prunable` names for each
layer type.  Blocks span ``block_size = (along input channels, along output
channels)`` in that plane, at every other index (for a conv kernel: at every
spatial tap), which for a Dense kernel ``(in, out)`` is exactly tfmot's
``(rows, cols)`` block.  m:n groups run along the input-channel axis, which is
the reduction axis of the matrix multiply that sparse tensor cores accelerate.
"""

from __future__ import annotations

import dataclasses
import math
import types

import numpy as np
from keras import ops

from keraffe.errors import PruningError

__all__ = [
    "NUMPY",
    "SparsityPattern",
    "magnitude_mask",
    "m_by_n_mask",
    "update_mask",
]

BLOCK_POOLING_TYPES = ("AVG", "MAX")


def _scatter_update(inputs, indices, updates):
    out = np.array(inputs, copy=True)
    out[tuple(np.asarray(indices).T)] = updates
    return out


#: NumPy under the names of the keras.ops functions this module uses.
NUMPY = types.SimpleNamespace(
    **{name: getattr(np, name) for name in ("abs", "reshape", "round", "maximum", "greater_equal", "arange",
                                            "zeros", "expand_dims", "moveaxis", "pad", "max", "sum", "repeat",
                                            "squeeze")},
    argsort=lambda x, axis=-1: np.argsort(x, axis=axis, kind="stable"),
    cast=lambda x, dtype: np.asarray(x).astype(dtype),
    convert_to_tensor=lambda x, dtype=None: np.asarray(x, dtype=dtype),
    scatter_update=_scatter_update,
)


@dataclasses.dataclass(frozen=True)
class SparsityPattern:
    """The shape of the zeros: unstructured, blocks, or m:n groups.

    ``block_size``: ``(along input channels, along output channels)``; ``(1, 1)``
    prunes single weights.  ``block_pooling_type``: how a block's magnitude is
    scored, ``"AVG"`` or ``"MAX"`` of its absolute values.  ``m_by_n``: ``(m, n)``
    means m zeros in every n consecutive weights along the input-channel axis
    (tfmot's meaning; ``(2, 4)`` is the 2:4 pattern of sparse tensor cores).  With
    m:n the schedule decides *when* to prune and the pattern fixes the sparsity
    at m/n, as in tfmot.
    """

    block_size: tuple[int, int] = (1, 1)
    block_pooling_type: str = "AVG"
    m_by_n: tuple[int, int] | None = None

    def __post_init__(self):
        block_size = self.block_size
        if (
            not isinstance(block_size, (tuple, list))
            or len(block_size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in block_size)
        ):
            raise PruningError(
                f"`block_size` must be two positive ints (along input channels, along "
                f"output channels), received {block_size!r}."
            )
        object.__setattr__(self, "block_size", tuple(block_size))
        if self.block_pooling_type not in BLOCK_POOLING_TYPES:
            raise PruningError(
                f"`block_pooling_type` must be one of {BLOCK_POOLING_TYPES}, "
                f"received {self.block_pooling_type!r}."
            )
        m_by_n = self.m_by_n
        if m_by_n is not None:
            if (
                not isinstance(m_by_n, (tuple, list))
                or len(m_by_n) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in m_by_n)
                or not 0 < m_by_n[0] < m_by_n[1]
            ):
                raise PruningError(
                    "`sparsity_m_by_n` must be (m, n) with 0 < m < n: m zeros in every n "
                    f"consecutive weights, received {m_by_n!r}."
                )
            object.__setattr__(self, "m_by_n", tuple(m_by_n))
            if self.block_size != (1, 1):
                raise PruningError(
                    f"`sparsity_m_by_n`={self.m_by_n} and `block_size`={self.block_size} "
                    "cannot be combined; use one structure at a time."
                )

    @property
    def is_unstructured(self) -> bool:
        return self.m_by_n is None and self.block_size == (1, 1)

    def describe(self) -> str:
        """A short human-readable name for reports."""
        if self.m_by_n is not None:
            m, n = self.m_by_n
            return f"{m}:{n} (m zeros per n)"
        if self.block_size != (1, 1):
            return f"block {self.block_size[0]}x{self.block_size[1]} {self.block_pooling_type}"
        return "unstructured"

    def check_fits(self, shape, input_axis: int, where: str) -> None:
        """m:n needs whole groups along the input-channel axis; say so before training."""
        if self.m_by_n is None:
            return
        n = self.m_by_n[1]
        length = shape[input_axis]
        if length % n:
            raise PruningError(
                f"sparsity_m_by_n={self.m_by_n} needs the input-channel axis of {where} "
                f"(axis {input_axis} of shape {tuple(shape)}) to be a multiple of {n}, "
                f"but it has length {length}."
            )

    def fits(self, shape, input_axis: int) -> bool:
        return self.m_by_n is None or shape[input_axis] % self.m_by_n[1] == 0


def _normalize_axis(axis: int, rank: int) -> int:
    return axis % rank


def _rank_mask(scores, sparsity, xp=ops):
    """1 for all but the ``round(size * sparsity)`` smallest scores, 0 for those.

    Ranking (sort, then scatter the keep flags back) prunes exactly the requested
    count even when scores tie, e.g. at the zeros of already-pruned weights, where
    a magnitude threshold would keep every tied weight.  At least one score is kept.
    """
    shape = tuple(scores.shape)
    size = math.prod(shape)
    flat = xp.reshape(scores, (size,))
    keep = xp.round(float(size) * (1.0 - xp.cast(sparsity, "float32")))
    keep = xp.maximum(xp.cast(keep, "int32"), 1)
    prune_count = size - keep
    order = xp.argsort(flat)
    keep_in_sorted_order = xp.cast(
        xp.greater_equal(xp.arange(size, dtype="int32"), prune_count), scores.dtype
    )
    # scatter_update, not scatter: PyTorch's xp.scatter loops in Python per element.
    mask = xp.scatter_update(
        xp.zeros((size,), dtype=scores.dtype), xp.expand_dims(order, -1), keep_in_sorted_order
    )
    return xp.reshape(mask, shape)


def _block_counts(length: int, block: int) -> np.ndarray:
    """How many real (unpadded) entries each block holds along one axis."""
    blocks = -(-length // block)
    counts = np.full((blocks,), block, dtype="float32")
    counts[-1] = length - block * (blocks - 1)
    return counts


def magnitude_mask(weights, sparsity, input_axis=-2, output_axis=-1, pattern=None, xp=ops):
    """Mask that zeros the ``sparsity`` fraction of smallest-magnitude weights or blocks.

    Blocks are pooled over ``pattern.block_size`` in the channel plane; partial
    blocks at the edges are padded, and ``"AVG"`` averages their real entries only,
    so an edge block is not pruned just for being small.
    """
    pattern = pattern or SparsityPattern()
    magnitudes = xp.abs(weights)
    if pattern.block_size == (1, 1):
        return xp.cast(_rank_mask(magnitudes, sparsity, xp), weights.dtype)

    rank = len(weights.shape)
    if rank == 1:
        plane = xp.expand_dims(magnitudes, -1)
    else:
        in_axis, out_axis = _normalize_axis(input_axis, rank), _normalize_axis(output_axis, rank)
        plane = xp.moveaxis(magnitudes, (in_axis, out_axis), (-2, -1))
    lead = tuple(plane.shape[:-2])
    rows, cols = plane.shape[-2], plane.shape[-1]
    block_rows, block_cols = pattern.block_size
    pad_rows, pad_cols = (-rows) % block_rows, (-cols) % block_cols
    if pad_rows or pad_cols:
        plane = xp.pad(plane, [(0, 0)] * len(lead) + [(0, pad_rows), (0, pad_cols)])
    row_blocks, col_blocks = (rows + pad_rows) // block_rows, (cols + pad_cols) // block_cols
    blocked = xp.reshape(plane, lead + (row_blocks, block_rows, col_blocks, block_cols))
    if pattern.block_pooling_type == "MAX":
        scores = xp.max(blocked, axis=(-3, -1))
    else:
        counts = np.outer(_block_counts(rows, block_rows), _block_counts(cols, block_cols))
        scores = xp.sum(blocked, axis=(-3, -1)) / xp.convert_to_tensor(counts, plane.dtype)
    block_mask = _rank_mask(scores, sparsity, xp)
    mask = xp.repeat(xp.repeat(block_mask, block_rows, axis=-2), block_cols, axis=-1)
    mask = mask[..., :rows, :cols]
    if rank == 1:
        mask = xp.squeeze(mask, -1)
    else:
        mask = xp.moveaxis(mask, (-2, -1), (in_axis, out_axis))
    return xp.cast(mask, weights.dtype)


def m_by_n_mask(weights, m_by_n=(2, 4), input_axis=-2, xp=ops):
    """Mask with exactly m zeros in every n consecutive weights along ``input_axis``.

    The zeros go to the m smallest magnitudes of each group.  The axis length must
    be a multiple of n (:meth:`SparsityPattern.check_fits` says so up front).
    """
    zeros_per_group, group = m_by_n
    rank = len(weights.shape)
    axis = _normalize_axis(input_axis, rank)
    length = weights.shape[axis]
    if length % group:
        raise PruningError(
            f"sparsity_m_by_n={tuple(m_by_n)} needs axis {input_axis} of shape "
            f"{tuple(weights.shape)} to be a multiple of {group}, but it has length {length}."
        )
    moved = xp.moveaxis(xp.abs(weights), axis, -1)
    moved_shape = tuple(moved.shape)
    groups = xp.reshape(moved, moved_shape[:-1] + (length // group, group))
    order = xp.argsort(groups, axis=-1)
    rank_in_group = xp.argsort(order, axis=-1)
    mask = xp.cast(xp.greater_equal(rank_in_group, zeros_per_group), weights.dtype)
    mask = xp.reshape(mask, moved_shape)
    return xp.moveaxis(mask, -1, axis)


def update_mask(weights, old_mask, sparsity, input_axis, output_axis, pattern, xp=ops):
    """The next mask: rank the weights as the network sees them, and never revive one.

    Scoring ``weights * old_mask`` ranks pruned weights as zeros, so a rising
    sparsity extends the pruned set; multiplying by ``old_mask`` keeps a pruned
    weight pruned even if a schedule's sparsity falls, since the optimizer may
    have moved its stored value while it was masked out.
    """
    effective = weights * old_mask
    if pattern.m_by_n is not None:
        new_mask = m_by_n_mask(effective, pattern.m_by_n, input_axis, xp)
    else:
        new_mask = magnitude_mask(effective, sparsity, input_axis, output_axis, pattern, xp)
    return new_mask * old_mask
