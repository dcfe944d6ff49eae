"""AxisSlice, Tile, Reduction, ArgMax and Subsample2D against Caffe's semantics.

ArgMax and Reduction work in Caffe's axis order (the converter feeds them
Caffe-ordered tensors), so their references run on the same arrays. ArgMax
follows BVLC's argmax_layer.cpp: without an axis, (N, 1, top_k) indices over
each item's flattened values, or (N, 2, top_k) indices then values, padded to
at least 3 axes with trailing ones; with an axis, top_k indices (or values)
along it. Tile repeats the whole block from its axis on (tile_layer.cpp).
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.keras_layers import ArgMax, AxisSlice, Reduction, Subsample2D, Tile

from ._common import check_layer, rng

pytestmark = pytest.mark.backends

X = rng(7).standard_normal((2, 5, 4, 3)).astype(np.float32)


@pytest.mark.parametrize("axis, begin, end", [(1, 1, 4), (3, 0, 2), (2, 3, 4), (-1, 1, 3)])
def test_axis_slice(axis, begin, end, tmp_path):
    index = [slice(None)] * 4
    index[axis] = slice(begin, end)
    check_layer(AxisSlice(axis, begin, end), X, X[tuple(index)], tmp_path)


def caffe_tile(x, axis, tiles):
    outer = int(np.prod(x.shape[:axis]))
    block = x.reshape(outer, -1)
    out = np.concatenate([block] * tiles, axis=1)
    shape = list(x.shape)
    shape[axis] *= tiles
    return out.reshape(shape)


@pytest.mark.parametrize("axis, tiles", [(1, 3), (2, 2), (3, 2)])
def test_tile(axis, tiles, tmp_path):
    check_layer(Tile(axis, tiles), X, caffe_tile(X, axis, tiles), tmp_path)


@pytest.mark.parametrize("operation, axis, coeff", [
    ("sum", 1, 1.0), ("asum", 2, 1.0), ("sumsq", 1, 0.5), ("mean", 3, -2.0), ("mean", 1, 1.0)])
def test_reduction(operation, axis, coeff, tmp_path):
    x = X.astype(np.float64)
    flat = x.reshape(x.shape[:axis] + (-1,))
    value = {"sum": flat, "mean": flat, "asum": np.abs(flat), "sumsq": flat ** 2}[operation]
    reduced = value.mean(axis=-1) if operation == "mean" else value.sum(axis=-1)
    check_layer(Reduction(operation, axis, coeff), X, coeff * reduced, tmp_path)


def caffe_argmax(x, top_k, axis, out_max_val):
    """argmax_layer.cpp: sort (value, index) pairs descending and keep top_k."""
    if axis is None:
        flat = x.reshape(x.shape[0], -1)
        order = np.argsort(-flat, axis=1, kind="stable")[:, :top_k]
        values = np.take_along_axis(flat, order, axis=1)
        top = np.stack([order, values], axis=1) if out_max_val else order[:, None, :]
        return top.reshape(top.shape + (1,) * (max(3, x.ndim) - 3)).astype(np.float64)
    moved = np.moveaxis(x, axis, -1)
    order = np.argsort(-moved, axis=-1, kind="stable")[..., :top_k]
    result = np.take_along_axis(moved, order, axis=-1) if out_max_val else order
    return np.moveaxis(result, -1, axis).astype(np.float64)


@pytest.mark.parametrize("shape, top_k, axis, out_max_val", [
    ((2, 5, 4, 3), 1, None, False),
    ((2, 5, 4, 3), 3, None, True),
    ((2, 9), 2, None, False),
    ((2, 9), 4, None, True),
    ((2, 5, 4, 3), 1, 1, False),
    ((2, 5, 4, 3), 2, 1, True),
    ((2, 5, 4, 3), 2, 3, False),
    ((2, 5, 4), 3, 2, True),
], ids=lambda v: str(v).replace(" ", ""))
def test_argmax(shape, top_k, axis, out_max_val, tmp_path):
    x = rng(8).permutation(int(np.prod(shape))).reshape(shape).astype(np.float32)  # no ties
    check_layer(ArgMax(top_k, axis, out_max_val), x, caffe_argmax(x, top_k, axis, out_max_val), tmp_path,
                tolerance=0)


@pytest.mark.parametrize("strides", [(2, 2), (3, 2), (1, 3)])
def test_subsample(strides, tmp_path):
    x = rng(9).standard_normal((2, 7, 8, 3)).astype(np.float32)
    check_layer(Subsample2D(strides), x, x[:, :: strides[0], :: strides[1], :], tmp_path)


def _space_to_batch(x, blocks, pads):
    """TF's space_to_batch_nd, element by element: out[(b1 * B2 + b2) * N + n, y1, y2, ...] = padded[n, y1*B1+b1, ...]."""
    padded = np.pad(x, [(0, 0)] + list(pads) + [(0, 0)] * (x.ndim - 1 - len(blocks)))
    n = x.shape[0]
    sizes = [padded.shape[1 + i] // b for i, b in enumerate(blocks)]
    out = np.zeros((n * int(np.prod(blocks)), *sizes, *padded.shape[1 + len(blocks):]), x.dtype)
    for offsets in np.ndindex(*blocks):
        block = int(np.ravel_multi_index(offsets, blocks))
        index = tuple(slice(o, None, b) for o, b in zip(offsets, blocks))
        out[block * n:(block + 1) * n] = padded[(slice(None),) + index]
    return out


def test_space_to_batch_and_back(tmp_path):
    """The Synopsys fork's SpaceToBatchND and BatchToSpaceND (TF's), with its crop after."""
    from keraffe.keras_layers import BatchToSpaceND, SpaceToBatchND

    x = rng(2).standard_normal((2, 5, 4, 3)).astype(np.float32)
    blocks, pads, crops = (3, 2), ((1, 0), (0, 2)), ((1, 0), (0, 2))
    batched = _space_to_batch(x, blocks, pads)
    check_layer(SpaceToBatchND(blocks, pads, name="s2b"), x, batched, tmp_path, batched=False)
    check_layer(BatchToSpaceND(blocks, crops, name="b2s"), batched, x, tmp_path, batched=False)


def test_constant_blob_ignores_its_input(tmp_path):
    from keraffe.keras_layers import ConstantBlob

    value = rng(3).standard_normal((1, 4, 3)).astype(np.float32)
    check_layer(ConstantBlob((1, 4, 3), name="blob"), np.zeros((2, 5), np.float32), value, tmp_path,
                weights=[value])
