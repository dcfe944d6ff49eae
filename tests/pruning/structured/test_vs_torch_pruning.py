"""bench/vs_torch_pruning.py compares like with like: the same model, weights and criterion on both sides.

The bench's numbers are measured, never asserted; this checks what makes them
a fair comparison: the Keras and PyTorch CNNs compute the same function from
the same weights, the MAC formula agrees with keraffe's count, and with the
same L1 criterion the two pruners remove the very same channels.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.pruning.conftest import load_script

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/vs_torch_pruning.py", "keraffe_bench_vs_torch_pruning")


def _pair(bench, seed=0):
    widths = bench.Widths()
    weights = bench.initial_weights(widths, seed)
    rng = np.random.default_rng(seed)
    for name in ("bn1", "bn2"):  # trained-looking statistics, so the transfer of every BN array is checked
        size = weights[name][0].shape
        weights[name] = [rng.uniform(0.5, 1.5, size).astype("float32"), rng.normal(0, 0.1, size).astype("float32"),
                         rng.normal(0, 0.1, size).astype("float32"), rng.uniform(0.5, 1.5, size).astype("float32")]
    keras_model, torch_model = bench.keras_model(widths), bench.torch_model(widths)
    bench.set_keras_weights(keras_model, weights)
    bench.to_torch(weights, torch_model)
    torch_model.eval()
    return keras_model, torch_model


def _torch_predict(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


def test_both_models_compute_the_same_function_and_count_the_same_macs(bench):
    from keraffe.pruning.structured import model_macs

    keras_model, torch_model = _pair(bench)
    x = np.random.default_rng(1).normal(size=(3, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(keras_model.predict(x, verbose=0), _torch_predict(torch_model, x), rtol=1e-4,
                               atol=1e-4)
    assert model_macs(keras_model) == bench.Widths().macs() == 1_385_728
    again = bench.keras_copy_of_torch(torch_model)
    for name in ("conv1", "bn2", "fc1", "fc2"):
        for a, b in zip(again.get_layer(name).get_weights(), keras_model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_the_same_criterion_removes_the_same_channels_on_both_sides(bench):
    """At one uniform ratio, keraffe's l1 and the bench's Torch-Pruning importance pick the same filters, so the
    two pruned models still compute one function."""
    import copy

    import torch_pruning as tp

    from keraffe.pruning.structured import plan_channels

    keras_model, torch_model = _pair(bench, seed=3)
    keras_pruned = plan_channels(keras_model, 0.5, importance="l1").apply().model
    torch_pruned = copy.deepcopy(torch_model)
    tp.pruner.MetaPruner(torch_pruned, torch.randn(1, 1, 16, 16), importance=bench.filter_l1_importance(),
                         pruning_ratio=0.5, ignored_layers=[torch_pruned[11]]).step()
    assert bench.torch_widths(torch_pruned) == bench.Widths(16, 32, 64)
    for name in ("conv1", "conv2", "fc1"):
        assert keras_pruned.get_layer(name).get_weights()[0].shape[-1] == getattr(
            bench.torch_widths(torch_pruned), {"conv1": "conv1", "conv2": "conv2", "fc1": "hidden"}[name])
    rebuilt = bench.keras_copy_of_torch(torch_pruned)
    np.testing.assert_array_equal(rebuilt.get_layer("conv2").get_weights()[0],
                                  keras_pruned.get_layer("conv2").get_weights()[0])
    np.testing.assert_array_equal(rebuilt.get_layer("fc1").get_weights()[0],
                                  keras_pruned.get_layer("fc1").get_weights()[0])
