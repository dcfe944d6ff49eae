"""Keras -> Caffe -> Keras: the model keraffe.caffe_to_keras reads back computes what the original computed.

Both models take NHWC inputs and give their outputs in Keras' layout, so the
comparison is ``model.predict`` against ``model.predict`` on the same seeded
input, with no layout handling in between. The round-tripped model may build
a function from other Keras layers (relu6 comes back as ReLU - ReLU(x - 6),
for one), so outputs must agree to float rounding, not bit for bit; weights
of layers that map one to one come back bit for bit.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keraffe

from ._harness import randomize

L = keras.layers

#: Relative to the largest output value: float rounding, nothing more.
RTOL = 1e-5


def small_xception():
    x = keras.Input((13, 11, 3), name="image")
    y = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    y = L.BatchNormalization(name="stem_bn")(y)
    y = L.ReLU(name="stem_relu")(y)
    residual = L.Conv2D(12, 1, strides=2, padding="same", name="shortcut")(y)
    y = L.SeparableConv2D(12, 3, padding="same", name="sep1")(y)
    y = L.BatchNormalization(name="sep1_bn")(y)
    y = L.Activation("relu", name="sep1_relu")(y)
    y = L.MaxPooling2D(3, strides=2, padding="same", name="pool")(y)
    y = L.Add(name="add")([y, residual])
    y = L.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, L.Dense(4, activation="softmax", name="prob")(y), name="small_xception")


def small_mobilenet():
    x = keras.Input((12, 10, 3), name="image")
    y = L.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(x)
    y = L.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(y)
    y = L.Conv2D(8, 3, strides=2, name="stem")(y)
    y = L.Activation("hard_silu", name="stem_act")(y)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw")(y)
    gate = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(y)
    gate = L.Conv2D(2, 1, activation="relu", name="reduce")(gate)
    gate = L.Conv2D(8, 1, activation="hard_sigmoid", name="expand")(gate)
    y = L.Multiply(name="excite")([y, gate])
    y = L.Conv2D(6, 1, name="project")(y)
    y = L.AveragePooling2D(2, name="ave")(y)
    return keras.Model(x, L.Conv2D(3, 1, activation="sigmoid", name="head")(y), name="small_mobilenet")


def dense_net():
    x = keras.Input((10,), name="features")
    y = L.Dense(16, name="d1")(x)
    y = L.LayerNormalization(name="ln")(y)
    y = L.LeakyReLU(0.1, name="leaky")(y)
    y = L.Dropout(0.5, name="drop")(y)
    y = L.Dense(8, activation="elu", name="d2")(y)
    y = L.PReLU(name="prelu")(y)
    return keras.Model(x, L.Dense(3, activation="tanh", name="out")(y), name="dense_net")


def two_headed():
    image = keras.Input((9, 11, 3), name="image")
    extra = keras.Input((9, 11, 2), name="extra")
    y = L.Concatenate(name="cat")([image, extra])
    y = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(y)
    up = L.UpSampling2D(2, name="up")(y)
    deconv = L.Conv2DTranspose(2, 3, strides=2, padding="same", name="deconv")(y)
    segmentation = L.Add(name="merge")([L.Conv2D(2, 1, name="up_proj")(up), deconv])
    pooled = L.GlobalMaxPooling2D(name="gmp")(y)
    return keras.Model([image, extra], [segmentation, L.Dense(2, name="cls")(pooled)], name="two_headed")


MODELS = {"small_xception": small_xception, "small_mobilenet": small_mobilenet, "dense_net": dense_net,
          "two_headed": two_headed}


def seeded_keras_inputs(model, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2,) + tuple(t.shape[1:])).astype(np.float32) for t in model.inputs]


def assert_round_trip(model, tmp_path, target="caffe1"):
    export = keraffe.keras_to_caffe(model, tmp_path / "net.prototxt", target=target)
    again = keraffe.caffe_to_keras(export.prototxt, export.caffemodel, input_shape={
        name: (2,) + tuple(shape[1:]) for name, shape in _caffe_input_shapes(export).items()})
    inputs = seeded_keras_inputs(model)
    by_name = {t.name.split(":")[0]: value for t, value in zip(model.inputs, inputs)}
    assert [t.name.split(":")[0] for t in again.inputs] == [t.name.split(":")[0] for t in model.inputs]
    expected = model.predict(inputs, verbose=0)
    got = again.predict([by_name[t.name.split(":")[0]] for t in again.inputs], verbose=0)
    expected = expected if isinstance(expected, list) else [expected]
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(expected)
    # A Caffe net does not order its outputs: match them by the Caffe blob each one holds.
    position = {blob: i for i, blob in enumerate(again.keraffe_tensor_map.outputs)}
    got = [got[position[blob]] for blob in export.tensor_map.outputs]
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        scale = float(np.max(np.abs(e))) or 1.0
        np.testing.assert_allclose(g, e, rtol=0, atol=RTOL * scale)
    return export, again


def _caffe_input_shapes(export):
    return {layer.name: tuple(layer.input_param.shape[0].dim) for layer in export.net.layer if layer.type == "Input"}


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip(name, tmp_path):
    model = MODELS[name]()
    randomize(model, seed=7)
    assert_round_trip(model, tmp_path)


@pytest.mark.backends
def test_round_trip_keeps_one_to_one_weights_bit_for_bit(tmp_path):
    model = small_xception()
    randomize(model, seed=3)
    _, again = assert_round_trip(model, tmp_path)
    for name in ("stem", "shortcut", "prob"):
        for original, back in zip(model.get_layer(name).get_weights(), again.get_layer(name).get_weights()):
            np.testing.assert_array_equal(back, original)


def test_round_trip_opencv_target(tmp_path):
    model = small_mobilenet()
    randomize(model, seed=5)
    assert_round_trip(model, tmp_path, target="opencv")


@pytest.mark.parametrize("path", ["keras3_mnist_cnn_keras/mnist_cnn.keras",
                                  "keras_fer2013_mini_xception/fer2013_mini_XCEPTION.102-0.66.hdf5"])
def test_round_trip_zoo_model(zoo, path, tmp_path):
    from keraffe.keras_io import load_keras_model

    model = load_keras_model(zoo / path)
    assert_round_trip(model, tmp_path)
