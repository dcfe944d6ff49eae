"""keraffe.verify: per-blob comparison against a reference runtime, through the recorded layouts."""

import numpy as np
import pytest

from keraffe.caffe.net import load_net
from keraffe.caffe.seeded import attach_seeded_weights
from keraffe.convert.caffe_to_keras import convert_net
from keraffe.verify import recheck_on_reference_inputs, run_reference, verify

SLICE_RELU = """
name: "slice_relu"
input: "data"
input_shape { dim: 1 dim: 4 dim: 3 dim: 3 }
layer { name: "slice" type: "Slice" bottom: "data" top: "b1" top: "b2" slice_param { slice_point: 2 axis: 1 } }
layer { name: "relu" type: "ReLU" bottom: "b2" top: "b2r" }
layer { name: "concat" type: "Concat" bottom: "b1" bottom: "b2r" top: "out" }
"""

CONV_SOFTMAX = """
name: "conv_softmax"
input: "data"
input_shape { dim: 2 dim: 3 dim: 6 dim: 6 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 5 kernel_size: 3 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "prob" type: "Softmax" bottom: "conv" top: "prob" }
"""


def _net(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return attach_seeded_weights(load_net(path), seed=1)


@pytest.mark.parametrize("runtime", ["opencv", pytest.param("caffe", marks=pytest.mark.pycaffe)])
def test_blob_read_by_an_activation_is_the_value_before_it(runtime, tmp_path):
    """OpenCV computes ReLU in place over an input nobody else reads; verify must still see b2 itself."""
    net = _net(tmp_path, SLICE_RELU)
    x = np.random.default_rng(0).normal(size=(1, 4, 3, 3)).astype(np.float32)
    got = run_reference(net, {"data": x}, ["b2", "b2r", "out"], runtime)
    np.testing.assert_array_equal(got["b2"], x[:, 2:])
    np.testing.assert_array_equal(got["b2r"], np.maximum(x[:, 2:], 0))
    model, tmap = convert_net(net)
    report = verify(model, net, {"data": x}, per_layer=True, runtime=runtime, tensor_map=tmap)
    assert report.ok and all(row.ok for row in report.layers), report.render()


@pytest.mark.pycaffe
def test_a_changed_weight_is_found_at_its_layer(tmp_path):
    net = _net(tmp_path, CONV_SOFTMAX)
    model, tmap = convert_net(net)
    conv = model.get_layer(tmap["conv"].keras_layer)
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel, bias + 0.5])
    report = verify(model, net, per_layer=True, tensor_map=tmap)
    assert not report.ok
    assert report.first_divergence.caffe_tensor.startswith("conv")


@pytest.mark.pycaffe
def test_recheck_feeds_the_layer_the_references_own_inputs(tmp_path):
    net = _net(tmp_path, CONV_SOFTMAX)
    model, tmap = convert_net(net)
    inputs = {"data": np.random.default_rng(2).normal(size=(2, 3, 6, 6)).astype(np.float32)}
    reference = run_reference(net, inputs, ["data", "conv", "prob"], "caffe")
    local = recheck_on_reference_inputs(model, net, tmap, "prob", reference)
    assert local is not None and local.ok and local.rel < 1e-6
    # Softmax fed other logits than the reference's: the recheck must see the difference.
    reference_off = dict(reference, conv=reference["conv"] * 2.0)
    assert not recheck_on_reference_inputs(model, net, tmap, "prob", reference_off).ok
    # The in-place ReLU's input is an earlier version of the blob, which the runtime no longer holds:
    # the whole in-place chain (Convolution, ReLU) is fed the data and compared.
    relu_top = next(str(t) for n in net.layers if n.name == "relu" for t in n.outputs)
    chain = recheck_on_reference_inputs(model, net, tmap, relu_top, reference)
    assert chain is not None and chain.ok
    assert not recheck_on_reference_inputs(model, net, tmap, relu_top, dict(reference, data=reference["data"] + 1)).ok


@pytest.mark.pycaffe
def test_per_layer_on_a_model_with_a_nested_model(tmp_path):
    import keras

    import keraffe

    inner_in = keras.Input((8, 8, 4))
    inner = keras.Model(inner_in, keras.layers.ReLU(name="inner_relu")(
        keras.layers.Conv2D(4, 3, padding="same", name="inner_conv")(inner_in)), name="block")
    x = keras.Input((8, 8, 3))
    y = inner(keras.layers.Conv2D(4, 1, name="stem")(x))
    y = keras.layers.Dense(2, name="fc")(keras.layers.GlobalAveragePooling2D(name="gap")(y))
    model = keras.Model(x, y)
    keraffe.keras_to_caffe(model, tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    net = load_net(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    report = verify(model, net, per_layer=True)
    assert report.ok
    assert {"stem", "gap", "fc"} <= {row.caffe_tensor for row in report.layers}
