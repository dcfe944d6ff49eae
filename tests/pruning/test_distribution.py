"""Pruning under data parallelism: tf.distribute on TensorFlow, keras.distribution on JAX.

The CPU is split into two devices in a child process (distributed_fit.py), since
that has to happen before the backend starts.  PyTorch has no Keras
distribution API, so there is nothing to run there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

pytestmark = pytest.mark.backends

BACKEND = keras.backend.backend()
SCRIPT = Path(__file__).with_name("distributed_fit.py")


@pytest.mark.skipif(
    BACKEND == "torch", reason="Keras has no data-parallel training for the PyTorch backend (no keras.distribution support)"
)
def test_two_replicas_prune_to_target_with_one_step_per_global_batch():
    environment = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    facts = json.loads(completed.stdout.strip().splitlines()[-1])
    assert facts["replicas"] == 2
    # Each global batch is one step, not one per replica.
    assert facts["steps"] == [facts["expected_step"]] * 2
    assert facts["sparsity"] == {"conv2d": facts["target"], "dense": facts["target"]}
    assert facts["output_gap"] < 1e-5
    if BACKEND == "tensorflow":
        assert facts["replica_masks_compared"] == 2
        assert facts["replica_masks_differ"] == []
