"""Mask math: exact counts, magnitude order, blocks and m:n groups, checked element by element."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keraffe.errors import PruningError
from keraffe.pruning import SparsityPattern
from keraffe.pruning.masks import m_by_n_mask, magnitude_mask, update_mask

from ._helpers import numpy

pytestmark = pytest.mark.backends


def random_weights(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def mask_of(function, weights, *args, **kwargs):
    return numpy(function(keras.ops.convert_to_tensor(weights), *args, **kwargs))


@pytest.mark.parametrize("shape", [(40, 30), (3, 3, 4, 16), (5, 7)])
@pytest.mark.parametrize("sparsity", [0.0, 0.35, 0.8])
def test_unstructured_prunes_exact_count_of_smallest(shape, sparsity):
    weights = random_weights(shape)
    mask = mask_of(magnitude_mask, weights, sparsity)
    size = weights.size
    expected_zeros = size - max(1, int(np.round(size * (1 - sparsity))))
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert int((mask == 0).sum()) == expected_zeros
    if 0 < expected_zeros < size:
        assert np.abs(weights[mask == 0]).max() <= np.abs(weights[mask == 1]).min()


def test_ties_at_zero_still_give_the_requested_count():
    weights = random_weights((10, 10))
    weights[:4] = 0.0  # 40 exact zeros, as after an earlier pruning step
    mask = mask_of(magnitude_mask, weights, 0.6)
    assert int((mask == 0).sum()) == 60
    assert (mask[:4] == 0).all()


def blocks_of(mask_plane, rows, cols):
    """Every (rows x cols) tile of a 2-D array, edges included."""
    for r in range(0, mask_plane.shape[0], rows):
        for c in range(0, mask_plane.shape[1], cols):
            yield mask_plane[r:r + rows, c:c + cols]


@pytest.mark.parametrize("pooling", ["AVG", "MAX"])
def test_block_mask_is_constant_on_every_block_of_a_dense_kernel(pooling):
    weights = random_weights((12, 10))  # rows = input channels, cols = output channels
    pattern = SparsityPattern(block_size=(4, 5), block_pooling_type=pooling)
    mask = mask_of(magnitude_mask, weights, 0.5, 0, 1, pattern)
    tiles = list(blocks_of(mask, 4, 5))
    assert len(tiles) == 6
    assert all(tile.min() == tile.max() for tile in tiles)
    assert sum(tile.max() == 0 for tile in tiles) == 3


def test_block_mask_runs_in_channel_plane_of_every_conv_tap():
    weights = random_weights((3, 3, 8, 6))
    pattern = SparsityPattern(block_size=(4, 2))
    mask = mask_of(magnitude_mask, weights, 0.5, -2, -1, pattern)
    zero_blocks = 0
    for tap in np.ndindex(3, 3):
        for tile in blocks_of(mask[tap], 4, 2):
            assert tile.min() == tile.max()
            zero_blocks += tile.max() == 0
    assert zero_blocks == 3 * 3 * 2 * 3 // 2


def test_block_mask_of_transposed_conv_uses_its_channel_axes():
    weights = random_weights((2, 2, 6, 8))  # Conv2DTranspose: (kh, kw, out, in)
    pattern = SparsityPattern(block_size=(4, 3))  # 4 input channels x 3 output channels
    mask = mask_of(magnitude_mask, weights, 0.5, -1, -2, pattern)
    for tap in np.ndindex(2, 2):
        plane = mask[tap].T  # (in, out)
        for tile in blocks_of(plane, 4, 3):
            assert tile.min() == tile.max()


def test_block_pooling_avg_and_max_choose_different_blocks():
    # Block A: one large and one tiny weight (max 10, mean 5.05); block B: two 6s (max 6, mean 6).
    weights = np.array([[10.0, 0.1, 6.0, 6.0]], dtype="float32").T  # (in=4, out=1), blocks of 2 rows
    avg = mask_of(magnitude_mask, weights, 0.5, 0, 1, SparsityPattern(block_size=(2, 1)))
    max_ = mask_of(
        magnitude_mask, weights, 0.5, 0, 1, SparsityPattern(block_size=(2, 1), block_pooling_type="MAX")
    )
    assert avg.ravel().tolist() == [0, 0, 1, 1]
    assert max_.ravel().tolist() == [1, 1, 0, 0]


def test_partial_edge_block_is_scored_by_its_real_entries():
    # 5 input rows in blocks of 2: the last block holds one real row.  Its mean
    # (3.0) beats the first block's (2.0) only if padding is not averaged in.
    weights = np.array([[2.0], [2.0], [1.0], [1.0], [3.0]], dtype="float32")
    mask = mask_of(magnitude_mask, weights, 0.34, 0, 1, SparsityPattern(block_size=(2, 1)))
    assert mask.ravel().tolist() == [1, 1, 0, 0, 1]


@pytest.mark.parametrize(
    "shape, axis",
    [((16, 6), 0), ((3, 3, 8, 4), -2), ((2, 2, 5, 12), -1), ((7, 3, 4, 2), -2)],
    ids=["dense", "conv", "conv-transpose", "depthwise"],
)
@pytest.mark.parametrize("m_by_n", [(2, 4), (1, 4), (3, 4)])
def test_m_by_n_has_exactly_m_zeros_in_every_group_at_the_smallest(shape, axis, m_by_n):
    weights = random_weights(shape, seed=3)
    zeros, group = m_by_n
    mask = mask_of(m_by_n_mask, weights, m_by_n, axis)
    moved_mask = np.moveaxis(mask, axis, -1)
    moved_weights = np.abs(np.moveaxis(weights, axis, -1))
    groups_mask = moved_mask.reshape(-1, group)
    groups_weights = moved_weights.reshape(-1, group)
    assert len(groups_mask) == weights.size // group
    for group_mask, group_weights in zip(groups_mask, groups_weights):
        assert int((group_mask == 0).sum()) == zeros
        assert group_weights[group_mask == 0].max() <= group_weights[group_mask == 1].min()


def test_m_by_n_refuses_an_axis_that_is_not_whole_groups():
    with pytest.raises(PruningError, match=r"length 6"):
        mask_of(m_by_n_mask, random_weights((6, 8)), (2, 4), 0)


def test_update_never_revives_a_pruned_weight_even_if_sparsity_falls():
    weights = random_weights((20, 20))
    pattern = SparsityPattern()
    ones = keras.ops.ones((20, 20))
    first = update_mask(keras.ops.convert_to_tensor(weights), ones, 0.7, 0, 1, pattern)
    # The optimizer may have grown the stored values of pruned weights meanwhile.
    grown = np.where(numpy(first) == 0, 100.0, weights).astype("float32")
    second = numpy(update_mask(keras.ops.convert_to_tensor(grown), first, 0.3, 0, 1, pattern))
    assert (second[numpy(first) == 0] == 0).all()
    assert int((second == 0).sum()) == 280


def test_update_extends_the_pruned_set_as_sparsity_rises():
    weights = random_weights((10, 30))
    pattern = SparsityPattern()
    first = update_mask(keras.ops.convert_to_tensor(weights), keras.ops.ones((10, 30)), 0.4, 0, 1, pattern)
    second = numpy(update_mask(keras.ops.convert_to_tensor(weights), first, 0.8, 0, 1, pattern))
    assert int((second == 0).sum()) == 240
    assert (second[numpy(first) == 0] == 0).all()


@pytest.mark.parametrize(
    "arguments, argument_name",
    [
        ({"block_size": (0, 1)}, "block_size"),
        ({"block_size": (2,)}, "block_size"),
        ({"block_pooling_type": "MEAN"}, "block_pooling_type"),
        ({"m_by_n": (4, 4)}, "sparsity_m_by_n"),
        ({"m_by_n": (2, 4), "block_size": (2, 2)}, "block_size"),
    ],
)
def test_pattern_validation_names_the_argument(arguments, argument_name):
    with pytest.raises(PruningError, match=argument_name):
        SparsityPattern(**arguments)


def test_rank_uses_round_half_to_keep_like_tfmot():
    # tfmot keeps round(size * (1 - sparsity)) weights; 288 conv weights at 80% keep 58.
    mask = mask_of(magnitude_mask, random_weights((3, 3, 1, 32)), 0.8)
    assert int(mask.sum()) == round(288 * 0.2)
    assert 1 - mask.mean() >= 0.795
    assert float(1 - mask.mean()) == pytest.approx(230 / 288)


@pytest.mark.parametrize("pattern", [SparsityPattern(), SparsityPattern(block_size=(2, 3)),
                                     SparsityPattern(block_size=(2, 2), block_pooling_type="MAX"),
                                     SparsityPattern(m_by_n=(2, 4))], ids=["unstructured", "avg", "max", "2:4"])
def test_numpy_namespace_gives_the_masks_keras_ops_give(pattern):
    """UpdatePruningStep recomputes masks in NumPy between batches: the same masks the train step computes."""
    from keraffe.pruning.masks import NUMPY

    weights = random_weights((3, 3, 8, 10))
    old = (random_weights((3, 3, 8, 10), seed=1) > -1.0).astype("float32")
    in_ops = mask_of(update_mask, weights, keras.ops.convert_to_tensor(old), 0.6, -2, -1, pattern)
    in_numpy = update_mask(weights, old, 0.6, -2, -1, pattern, NUMPY)
    assert isinstance(in_numpy, np.ndarray)
    np.testing.assert_array_equal(in_numpy, in_ops)
