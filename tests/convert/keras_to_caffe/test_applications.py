"""keras.applications models convert with the default target and match Keras, blob by blob.

Each model is built with weights=None and a fixed seed, exported for target
caffe1 (Caffe 1.0 layer types only), and compared with Keras on a seeded input
at every Caffe blob that holds a Keras tensor: in real Caffe, and in OpenCV
4.x DNN. Real Caffe refuses weight files over 512 MiB (its own protobuf limit),
which rules it out for VGG16 and VGG19: the test asserts that refusal and
OpenCV judges those two alone.
"""

from __future__ import annotations


import pytest

MODELS = ("ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "VGG16", "VGG19", "MobileNet", "MobileNetV2",
          "MobileNetV3Small", "MobileNetV3Large", "DenseNet121", "InceptionV3", "InceptionResNetV2", "Xception",
          "EfficientNetB0", "EfficientNetV2B0", "NASNetMobile")
#: The exports `make test` also runs under JAX and PyTorch (marker ``backends``; all of them are
#: `make test-backends-all`): residual, depthwise, squeeze-and-excite, hard-swish and dense-block models.
ON_EVERY_BACKEND = ("ResNet50", "MobileNet", "MobileNetV2", "MobileNetV3Small", "EfficientNetB0", "DenseNet121")


@pytest.mark.pycaffe
@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(m, marks=[pytest.mark.backends] if m in ON_EVERY_BACKEND else [])
                                  for m in MODELS])
def test_application_matches_in_caffe_and_opencv(name, tmp_path):
    import keras

    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.convert.keras_to_caffe.targets import CAFFE_1_0_TYPES
    from keraffe.verify import verify

    keras.utils.set_random_seed(0)
    kwargs = {"input_shape": (224, 224, 3)} if "MobileNetV3" in name else {}
    model = getattr(keras.applications, name)(weights=None, **kwargs)
    export = keraffe.keras_to_caffe(model, tmp_path / "net.prototxt")
    assert {layer.type for layer in export.net.layer} <= CAFFE_1_0_TYPES
    net = load_net(export.prototxt, export.caffemodel)
    # VGG's weights pass 512 MiB, which Caffe's file reader refuses; keraffe then sets them through pycaffe.
    for runtime in ("caffe", "opencv"):
        report = verify(model, net, per_layer=True, runtime=runtime, tensor_map=export.tensor_map)
        bad = [(c.caffe_tensor, c.rel) for c in report.layers if not c.ok]
        assert not bad, f"{runtime}: {bad[:5]}"
        assert len(report.layers) > 20
