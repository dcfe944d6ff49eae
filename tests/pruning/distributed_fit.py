"""Prune under a two-replica data-parallel setup of the current backend; print JSON facts.

Run as a subprocess by test_distribution.py, because the CPU must be split into
two devices before the backend initialises (TensorFlow: two logical CPUs under a
``tf.distribute.MirroredStrategy``; JAX: two host devices under
``keras.distribution.DataParallel``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

BACKEND = os.environ["KERAS_BACKEND"]
if BACKEND == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"


def distribution_scope():
    """Enter the backend's data-parallel setup; returns (scope, replica count)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        return strategy.scope(), strategy.num_replicas_in_sync
    if BACKEND == "jax":
        import keras

        devices = keras.distribution.list_devices("cpu")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return contextlib.nullcontext(), len(devices)
    raise SystemExit(f"no data-parallel setup for backend {BACKEND}")


def compare_replica_masks(wrappers) -> tuple[int, list[str]]:
    """How many masks have per-replica copies, and which of those disagree.

    TensorFlow mirrors one copy of each variable per device; JAX keeps one
    replicated array, so there is nothing to compare there.
    """
    compared, differing = 0, []
    for wrapper in wrappers:
        for mask in wrapper.masks:
            copies = getattr(mask.value, "values", None)
            if BACKEND != "tensorflow" or copies is None:
                continue
            compared += 1
            first = copies[0].numpy()
            if any((copy.numpy() != first).any() for copy in copies[1:]):
                differing.append(mask.path)
    return compared, differing


def main() -> None:
    scope, replicas = distribution_scope()
    import keras
    import numpy as np

    from keraffe import pruning

    target = 0.75
    batch_size, samples, epochs = 32, 256, 2
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 4, size=samples).astype("int32")
    with scope:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 1))
        hidden = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
        hidden = keras.layers.Flatten()(hidden)
        outputs = keras.layers.Dense(4)(hidden)
        model = keras.Model(inputs, outputs)
        pruned = pruning.prune_low_magnitude(
            model, pruning_schedule=pruning.ConstantSparsity(target, begin_step=3, frequency=5)
        )
        pruned.compile(
            optimizer="adam",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    pruned.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
               callbacks=[pruning.UpdatePruningStep()])

    stripped = pruning.strip_pruning(pruned)
    probe = x[:16]
    output_gap = float(np.max(np.abs(
        keras.ops.convert_to_numpy(pruned(probe)) - keras.ops.convert_to_numpy(stripped(probe))
    )))
    wrappers = pruning.pruning_wrappers(pruned)
    compared, differing = compare_replica_masks(wrappers)
    print(json.dumps({
        "replica_masks_compared": compared,
        "replica_masks_differ": differing,
        "replicas": replicas,
        "target": target,
        "expected_step": epochs * (samples // batch_size) - 1,
        "steps": [w.current_step() for w in wrappers],
        "sparsity": pruning.layer_sparsities(pruned),
        "output_gap": output_gap,
    }))


if __name__ == "__main__":
    sys.exit(main())
