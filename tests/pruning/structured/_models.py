"""Small seeded models with every coupling the channel planner knows, for the structured pruning tests."""

from __future__ import annotations

import keras
import numpy as np


def randomise_batchnorm(model, seed: int = 0, beta_std: float = 0.5) -> None:
    """Non-trivial BN statistics, so removed channels leave non-zero constants behind.

    Deep nets (keras.applications) take a smaller ``beta_std`` so their activations stay moderate.
    """
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            values = [rng.uniform(0.5, 1.5, shapes[0]), rng.normal(0, beta_std, shapes[1]),
                      rng.normal(0, 0.1, shapes[2]), rng.uniform(0.5, 1.5, shapes[3])]
            layer.set_weights([v.astype(np.float32) for v in values])


def residual_concat_model():
    """Conv-BN-ReLU, a residual Add, a 'valid' 3x3 conv, Concatenate, Flatten -> Dense."""
    inputs = keras.Input((10, 10, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.Conv2D(8, 1, name="branch")(x)
    y = keras.layers.BatchNormalization(name="branch_bn")(y)
    x = keras.layers.Add(name="add")([x, y])
    z = keras.layers.Conv2D(6, 3, padding="valid", name="valid3x3")(x)
    z = keras.layers.BatchNormalization(name="valid_bn")(z)
    cropped = keras.layers.Cropping2D(1, name="crop")(x)
    x = keras.layers.Concatenate(name="concat")([z, cropped])
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(4, name="logits")(x)
    model = keras.Model(inputs, outputs, name="residual_concat")
    randomise_batchnorm(model)
    return model


def zero_filters(model, layer_name: str, filters) -> None:
    """Zero the given output filters (kernel slices and bias) of a Conv, Dense or SeparableConv layer."""
    layer = model.get_layer(layer_name)
    filters = list(filters)
    values = []
    for variable, value in zip(layer.weights, layer.get_weights()):
        if variable.name in ("kernel", "pointwise_kernel"):
            axis = value.ndim - 2 if "Transpose" in type(layer).__name__ else value.ndim - 1
            index = [slice(None)] * value.ndim
            index[axis] = filters
            value[tuple(index)] = 0.0
        elif variable.name == "bias":
            value[filters] = 0.0
        values.append(value)
    layer.set_weights(values)


def squeeze_excite_model():
    """MobileNetV2/EfficientNet style: expand, depthwise, squeeze-excite gate (broadcast Multiply), project."""
    inputs = keras.Input((8, 8, 4), name="image")
    x = keras.layers.Conv2D(12, 1, use_bias=False, name="expand")(inputs)
    x = keras.layers.BatchNormalization(name="expand_bn")(x)
    x = keras.layers.Activation("swish", name="expand_act")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    se = keras.layers.GlobalAveragePooling2D(name="se_squeeze")(x)
    se = keras.layers.Reshape((1, 1, 12), name="se_reshape")(se)
    se = keras.layers.Conv2D(3, 1, activation="swish", name="se_reduce")(se)
    se = keras.layers.Conv2D(12, 1, activation="sigmoid", name="se_expand")(se)
    x = keras.layers.Multiply(name="se_excite")([x, se])
    x = keras.layers.SeparableConv2D(6, 3, padding="same", name="sep")(x)
    x = keras.layers.Conv2DTranspose(5, 2, strides=2, name="up")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="squeeze_excite")
    randomise_batchnorm(model)
    return model


def nested_model():
    """A functional block used inside an outer model, with a residual Add across the boundary."""
    block_in = keras.Input((6, 6, 8), name="block_in")
    b = keras.layers.Conv2D(8, 3, padding="same", name="inner_conv")(block_in)
    b = keras.layers.BatchNormalization(name="inner_bn")(b)
    block = keras.Model(block_in, b, name="block")
    inputs = keras.Input((6, 6, 3), name="image")
    x = keras.layers.Conv2D(8, 1, name="outer_conv")(inputs)
    x = keras.layers.Add(name="outer_add")([x, block(x)])
    x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="logits")(x)
    model = keras.Model(inputs, outputs, name="nested")
    randomise_batchnorm(model)
    return model


@keras.saving.register_keras_serializable(package="keraffe_tests")
class ChannelShuffle(keras.layers.Layer):
    """A layer the planner has never heard of: it reverses the channels."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=-1)


def barrier_model():
    inputs = keras.Input((6, 6, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="before_barrier")(inputs)
    x = ChannelShuffle(name="shuffle")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="after_barrier")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="logits")(x)
    return keras.Model(inputs, outputs, name="barrier")


def images(shape, count: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, *shape)).astype(np.float32)
