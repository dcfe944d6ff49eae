"""On scikit-learn's digits, a small ResNet-style CNN pruned to at most half its MACs and fine-tuned
stays within 1 point of its dense accuracy.

The data ship with scikit-learn (no download); the split and every seed are fixed.
"""

from __future__ import annotations

import numpy as np
import pytest

DENSE_EPOCHS = 20
FINE_TUNE_EPOCHS = 15


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return train_test_split(x, digits.target, test_size=0.25, random_state=0, stratify=digits.target)


def small_resnet():
    import keras
    from keras import layers

    def conv_bn(x, filters, name, strides=1, relu=True):
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x) if relu else x

    inputs = keras.Input((8, 8, 1), name="digit")
    x = conv_bn(inputs, 32, "stem")
    y = conv_bn(x, 32, "block1_a")
    y = conv_bn(y, 32, "block1_b", relu=False)
    x = layers.ReLU(name="block1_out")(layers.Add(name="block1_add")([x, y]))
    x = conv_bn(x, 64, "down", strides=2)
    y = conv_bn(x, 64, "block2_a")
    y = conv_bn(y, 64, "block2_b", relu=False)
    x = layers.ReLU(name="block2_out")(layers.Add(name="block2_add")([x, y]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="digits_resnet")


def train(model, x, y, epochs, learning_rate):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=32, shuffle=True, verbose=0)


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=-1) == y) * 100)


@pytest.mark.slow
def test_digits_resnet_pruned_to_half_the_macs_keeps_its_accuracy():
    import keras

    from keraffe.pruning.structured import model_macs, plan_channels

    keras.utils.set_random_seed(0)
    x_train, x_test, y_train, y_test = digits_split()
    dense = small_resnet()
    train(dense, x_train, y_train, DENSE_EPOCHS, 1e-3)
    dense_accuracy = accuracy(dense, x_test, y_test)

    plan = plan_channels(dense, target_macs=0.5, importance="l1")
    pruned = plan.apply().model
    assert model_macs(pruned) <= 0.5 * model_macs(dense)
    train(pruned, x_train, y_train, FINE_TUNE_EPOCHS, 5e-4)
    pruned_accuracy = accuracy(pruned, x_test, y_test)

    assert dense_accuracy >= 95.0
    assert pruned_accuracy >= dense_accuracy - 1.0, (dense_accuracy, pruned_accuracy, plan.summary())
