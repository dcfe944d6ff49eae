"""convert_net(release_weights=True): the same model, built from weights the net hands over.

The CLI and ``keraffe.caffe_to_keras`` convert nets they loaded themselves, so
each Caffe array is dropped as soon as its Keras layer holds it, and each
variable is created from its converted value (no random draw, no assign).
This keeps VGG-16's conversion near one extra copy of its weights; see
bench/caffe2keras.py.
"""

from __future__ import annotations

import numpy as np

from keraffe.convert.caffe_to_keras import convert_net

from ._harness import build_net, case_inputs, Case, inputs

LAYERS = """
layer { name: "{p}conv" type: "Convolution" bottom: "{p}x" top: "{p}c"
        convolution_param { num_output: 4 kernel_size: 3 stride: 2 } }
layer { name: "{p}dw" type: "Convolution" bottom: "{p}c" top: "{p}d"
        convolution_param { num_output: 4 group: 4 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "{p}up" type: "Deconvolution" bottom: "{p}d" top: "{p}u"
        convolution_param { num_output: 3 kernel_size: 2 stride: 2 } }
layer { name: "{p}bn" type: "BatchNorm" bottom: "{p}u" top: "{p}u" }
layer { name: "{p}flat" type: "Flatten" bottom: "{p}u" top: "{p}f" }
layer { name: "{p}ip" type: "InnerProduct" bottom: "{p}f" top: "{p}y" inner_product_param { num_output: 5 } }
"""

CASE = Case("release", inputs(x=(2, 3, 9, 7)), LAYERS)


def test_released_conversion_equals_the_kept_one_and_empties_the_net(tmp_path):
    kept_net = build_net([CASE], tmp_path / "kept.prototxt")
    released_net = build_net([CASE], tmp_path / "released.prototxt")
    kept, _ = convert_net(kept_net)
    released, _ = convert_net(released_net, release_weights=True)

    assert kept_net.has_weights and not released_net.has_weights
    assert [w.path for w in kept.weights] == [w.path for w in released.weights]
    for a, b in zip(kept.weights, released.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = case_inputs([CASE], kept_net)
    values = [np.transpose(v, (0, 2, 3, 1)) for v in x.values()]
    np.testing.assert_array_equal(kept.predict(values, verbose=0), released.predict(values, verbose=0))


def test_layers_keep_their_configured_initialisers(tmp_path):
    released, _ = convert_net(build_net([CASE], tmp_path / "net.prototxt"), release_weights=True)
    for layer in released.layers:
        for key, value in layer.get_config().items():
            if key.endswith("initializer") and isinstance(value, dict):
                assert "GivenValue" not in value.get("class_name", ""), (layer.name, key, value)


def test_layers_sharing_a_name_each_hand_over_their_weights(tmp_path):
    """Caffe allows two layers one name (weights go to the first by name); each is its own handover."""
    twice = ('layer { name: "{p}conv" type: "Convolution" bottom: "{p}x" top: "{p}a" '
             "convolution_param { num_output: 2 kernel_size: 1 } }\n"
             'layer { name: "{p}conv" type: "Convolution" bottom: "{p}a" top: "{p}b" '
             "convolution_param { num_output: 2 kernel_size: 1 } }\n")
    net = build_net([Case("twice", inputs(x=(1, 2, 3, 3)), twice)], tmp_path / "net.prototxt")
    model, _ = convert_net(net, release_weights=True)
    assert not net.has_weights
    assert [layer.name for layer in model.layers if layer.weights] == ["twice__a", "twice__b"]
