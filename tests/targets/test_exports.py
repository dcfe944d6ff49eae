"""Keras models exported for each NPU target pass its check and still match Keras in real Caffe.

A small model with every feature a target rewrites (a ResNet stem, whose
MAX pooling rounds differently down than up and whose Keras windows are cut
out of Caffe's; a Dropout; a global pooling over 16x16), and keras.applications'
MobileNet, each exported with ``--target nnie|ascend|rknn``: the export's own
check is clean, the rewrites expected ran, and every Caffe blob that holds a
Keras tensor matches Keras in real Caffe. bench/targets.py runs all 17
keras.applications models and the zoo the same way.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keraffe
from keraffe.caffe.net import load_net
from keraffe.targets import get_profile
from keraffe.verify import verify

pytestmark = pytest.mark.pycaffe

L = keras.layers
TARGETS = ("nnie", "ascend", "rknn")


def stem_model():
    x = keras.Input((32, 32, 3), name="image")
    y = L.Conv2D(16, 3, strides=2, padding="same", name="conv1")(x)
    y = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(y))
    y = L.MaxPooling2D(3, strides=2, name="pool1")(L.ZeroPadding2D(1, name="pad1")(y))
    y = L.Conv2D(24, 3, padding="same", activation="relu", name="conv2")(y)
    y = L.UpSampling2D(2, name="up")(y)
    y = L.Dropout(0.2, name="drop")(L.GlobalAveragePooling2D(name="gap")(y))
    keras.utils.set_random_seed(3)
    model = keras.Model(x, L.Dense(10, activation="softmax", name="logits")(y), name="stem")
    rng = np.random.default_rng(3)
    bn = model.get_layer("bn1")  # stored statistics that do something
    gamma, beta, mean, variance = bn.get_weights()
    bn.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                    rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 1.5, variance.shape)])
    return model


def export_and_verify(model, target, tmp_path):
    export = keraffe.keras_to_caffe(model, tmp_path / f"{target}.prototxt", target=target)
    report = verify(model, load_net(export.prototxt, export.caffemodel), per_layer=True, runtime="caffe",
                    tensor_map=export.tensor_map)
    assert report.ok, report.render()
    assert export.target_check.clean, export.target_check.render()
    return export, report


@pytest.fixture(scope="module")
def stem():
    return stem_model()


@pytest.mark.parametrize("target", TARGETS)
def test_stem_model(stem, target, tmp_path):
    export, report = export_and_verify(stem, target, tmp_path)
    rewrites = {note.split(":", 1)[0] for note in export.target_notes}
    types = {layer.type for layer in export.net.layer}
    expected = {"nnie": set(), "ascend": {"slice_as_crop", "dropout_as_identity"},
                "rknn": {"slice_as_crop", "ceil_pooling_as_floor", "chain_global_pooling"}}[target]
    assert rewrites == expected
    assert not types & {"ascend": {"Silence", "Dropout"}, "rknn": {"Silence"}, "nnie": set()}[target]
    assert {"conv1", "pool1", "gap", "logits"} <= {c.keras_layer for c in report.layers}
    assert types <= get_profile(target).layer_types


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_mobilenet(target, tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNet(input_shape=(128, 128, 3), alpha=0.25, weights=None)
    export, _ = export_and_verify(model, target, tmp_path)
    if target == "ascend":
        assert [note.split(":", 1)[0] for note in export.target_notes] == ["dropout_as_identity"]
        assert export.target_check.advice  # 1000 classes are not a multiple of C0 = 16


def test_a_target_without_a_layer_type_refuses_the_conversion(tmp_path):
    """RKNN lists no ELU: the conversion says so (nothing is written) rather than approximating."""
    x = keras.Input((4, 4, 3))
    model = keras.Model(x, L.ELU(name="elu")(L.Conv2D(2, 1, name="conv")(x)))
    with pytest.raises(keraffe.KeraffeError, match="target 'rknn' has no ELU"):
        keraffe.keras_to_caffe(model, tmp_path / "net.prototxt", target="rknn")
    assert list(tmp_path.iterdir()) == []


def test_keras2caffe_writes_the_net_and_exits_1_when_the_target_check_fails(tmp_path, capsys):
    """A 33x33 kernel is beyond RKNN's NPU (R-4): the exact net is written, the violation listed, exit 1."""
    from keraffe.cli.main import main

    x = keras.Input((40, 40, 3), name="image")
    keras.Model(x, L.Conv2D(2, 33, name="wide")(x)).save(tmp_path / "wide.keras")
    out = tmp_path / "wide.prototxt"
    assert main(["keras2caffe", str(tmp_path / "wide.keras"), "-o", str(out), "--target", "rknn"]) == 1
    printed = capsys.readouterr().out
    assert "error R-4/5/6/8/9: layer 'wide' (Convolution): convolution: kernel 33x33 (1-31)" in printed
    assert "target rknn's toolchain will refuse it" in printed
    assert out.is_file() and out.with_suffix(".caffemodel").is_file()
    assert main(["keras2caffe", str(tmp_path / "wide.keras"), "-o", str(out), "--target", "nnie"]) == 0
