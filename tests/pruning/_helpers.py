"""Small models and data shared by the pruning tests."""

from __future__ import annotations

import keras
import numpy as np


def numpy(value) -> np.ndarray:
    return keras.ops.convert_to_numpy(value)


def small_conv_model(input_shape=(8, 8, 2), classes=4, filters=8):
    """Conv-Flatten-Dense with known layer names, built."""
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Conv2D(filters, 3, activation="relu", name="conv")(inputs)
    hidden = keras.layers.Flatten(name="flatten")(hidden)
    outputs = keras.layers.Dense(classes, name="dense")(hidden)
    return keras.Model(inputs, outputs, name="small")


def random_classification(samples=64, input_shape=(8, 8, 2), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, *input_shape)).astype("float32")
    y = rng.integers(0, classes, size=samples).astype("int32")
    return x, y


def compile_for_test(model, learning_rate=1e-2, **kwargs):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **kwargs,
    )
    return model
