"""The issue's acceptance check: digits CNN pruned to 80% keeps its accuracy on every backend.

Runs the demo's own steps (examples/simple_classifier.py) on scikit-learn's digits
upsampled to 16x16: a Conv-Conv-Dense CNN trained dense, then pruned with a
PolynomialDecay schedule to 80% and fine-tuned.
"""

from __future__ import annotations

import keras
import pytest

pytestmark = pytest.mark.backends


def test_every_kernel_reaches_target_and_accuracy_stays_within_one_point(demo):
    config = demo.DemoConfig(dataset="digits", sparsity=0.8, seed=0)
    data = demo.load_digits_16x16()
    dense = demo.train_dense(data, config)
    pruned = demo.prune_and_strip(dense, data, config)

    kernels = demo.kernel_sparsities(pruned)
    assert sorted(kernels) == ["classes", "conv1", "conv2"]
    assert min(kernels.values()) >= 0.795, kernels
    dense_accuracy = demo.accuracy(dense, data.x_test, data.y_test)
    pruned_accuracy = demo.accuracy(pruned, data.x_test, data.y_test)
    assert dense_accuracy >= 0.95, f"dense model undertrained on {keras.backend.backend()}"
    assert pruned_accuracy >= dense_accuracy - 0.01, (dense_accuracy, pruned_accuracy)
