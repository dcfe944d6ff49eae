"""Every real Keras model in the zoo that keraffe can read converts to Caffe and matches in real Caffe, per layer.

The models are converted from their files by the public ``keras_to_caffe``
(Keras 3 .keras and .h5 files, and the Keras 2 HyperLPR files that Keras 3
cannot open, which keraffe.keras_legacy rebuilds). The golden pair:
HyperLPR published both a Keras model (char_judgement.h5) and a Caffe model
converted from it (Segmentation.caffemodel); keraffe's conversion of the
Keras file must give that caffemodel's weights exactly. Files keraffe must
refuse: a Keras 1 model with a Lambda layer (Python code), and weights-only
files.
"""

from __future__ import annotations

import numpy as np
import pytest

import keraffe
from keraffe.errors import KeraffeError

from ._harness import TOLERANCE, assert_report_ok, describe

pytestmark = pytest.mark.pycaffe

XCEPTION = [
    "keras_fer2013_big_xception/fer2013_big_XCEPTION.54-0.66.hdf5",
    "keras_fer2013_mini_xception/fer2013_mini_XCEPTION.102-0.66.hdf5",
    "keras_gender_mini_xception/gender_mini_XCEPTION.21-0.95.hdf5",
    "keras_mini_xception_kdef/mini_XCEPTION_KDEF.hdf5",
    "keras_tiny_xception_kdef/tiny_XCEPTION_KDEF.hdf5",
]
KERAS3 = [
    "keras3_mnist_bn_keras/mnist_model.keras",
    "keras3_mnist_cnn_keras/mnist_cnn.keras",
    "keras_mnist_cnn_h5/mnist_cnn.h5",
]
#: Keras 2.0/2.3 Sequential files Keras 3 cannot open; keraffe.keras_legacy rebuilds them.
HYPERLPR = [
    "keras_hyperlpr_char_judgement/char_judgement.h5",
    "keras_hyperlpr_char_judgement/char_judgement1.h5",
    "keras_hyperlpr_char_rec/char_rec.h5",
    "keras_hyperlpr_plate_type/plate_type.h5",
]


def convert_and_verify(path, tmp_path, target="caffe1"):
    from keraffe.caffe.net import load_net
    from keraffe.keras_io import load_keras_model
    from keraffe.verify import seeded_inputs, verify

    export = keraffe.keras_to_caffe(path, tmp_path / "net.prototxt", target=target)
    net = load_net(export.prototxt, export.caffemodel)
    model = load_keras_model(path)
    report = verify(model, net, seeded_inputs(net), per_layer=True, runtime="caffe",
                    tolerance=TOLERANCE, tensor_map=export.tensor_map)
    return model, export, report


@pytest.mark.parametrize("path", XCEPTION + KERAS3 + HYPERLPR)
def test_zoo_model_converts_and_matches_real_caffe(zoo, path, tmp_path):
    model, export, report = convert_and_verify(zoo / path, tmp_path)
    assert_report_ok(report, path)
    compared = {r.keras_layer for r in report.layers}
    weighted = {layer.name for layer in model.layers if layer.weights}
    assert weighted <= compared, f"layers with weights not compared: {sorted(weighted - compared)}"
    # Real weights, real activations: the outputs are not all saturated (which would hide errors).
    assert all(r.max_ref > 0 for r in report.layers), describe(report.layers)


def test_xception_models_convert_for_opencv_too(zoo, tmp_path):
    """The same file for target opencv loads and matches in real Caffe (ceil_mode, no fork layers needed)."""
    _, export, report = convert_and_verify(zoo / XCEPTION[1], tmp_path, target="opencv")
    assert_report_ok(report, "mini XCEPTION for opencv")


def test_golden_pair_hyperlpr_char_judgement(zoo, tmp_path):
    """char_judgement.h5 converts to exactly the weights of HyperLPR's own Segmentation.caffemodel.

    HyperLPR converted this Keras model to Caffe themselves; their layer names
    differ from the Keras file's (conv2d_12 there, conv2d_3 here) and their
    input is 22x22 where the Keras model says 23x23, so the nets are compared
    as the sequence of their blobs in net order: same count, shapes and
    values, bit for bit. The converted net also matches the Keras model in
    real Caffe.
    """
    from keraffe.caffe.net import load_net

    model, export, report = convert_and_verify(zoo / HYPERLPR[0], tmp_path)
    assert_report_ok(report, "char_judgement")
    golden = load_net(zoo / "hyperlpr_segmentation/Segmentation.prototxt",
                      zoo / "hyperlpr_segmentation/Segmentation.caffemodel")
    golden_weights = golden.weight_arrays()
    theirs = [np.asarray(blob) for node in golden.layers for blob in golden_weights.get(node.name, [])]
    ours = [np.asarray(blob) for layer in export.net.layer for blob in export.weights.get(layer.name, [])]
    assert [b.shape for b in ours] == [b.shape for b in theirs]
    assert len(ours) == 8
    for index, (mine, reference) in enumerate(zip(ours, theirs)):
        np.testing.assert_array_equal(mine, reference, err_msg=f"blob {index}")
    assert [layer.type for layer in export.net.layer if export.weights.get(layer.name)] == [
        node.type for node in golden.layers if golden_weights.get(node.name)]


def test_keras1_lambda_model_is_refused_without_running_its_code(zoo, tmp_path, monkeypatch):
    """The NVIDIA behavioural-cloning model starts with a Lambda (Python bytecode): refused, never executed."""
    import keras
    from keras.src.utils import python_utils

    unsafe_calls, loaded_functions = [], []
    monkeypatch.setattr(keras.config, "enable_unsafe_deserialization", lambda: unsafe_calls.append(1))
    import keras.src.saving.serialization_lib as serialization_lib

    monkeypatch.setattr(serialization_lib, "enable_unsafe_deserialization", lambda: unsafe_calls.append(1))
    original_func_load = python_utils.func_load
    monkeypatch.setattr(python_utils, "func_load",
                        lambda *a, **k: loaded_functions.append(1) or original_func_load(*a, **k))
    with pytest.raises(KeraffeError) as caught:
        keraffe.keras_to_caffe(zoo / "keras1_nvidia_behavioral_cloning/model.h5", tmp_path / "net.prototxt")
    message = str(caught.value)
    assert message == (
        f"{zoo / 'keras1_nvidia_behavioral_cloning/model.h5'}: the model holds a Lambda layer ('lambda_1'), i.e. "
        "arbitrary Python code stored in the file; keraffe loads models with Keras' safe_mode and never runs such "
        "code. Replace the Lambda with standard layers (or keraffe's) and save again")
    assert unsafe_calls == [] and loaded_functions == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["keras_hyperlpr_model12/model12.h5", "keras_hyperlpr_char_chi_sim/char_chi_sim.h5"])
def test_weights_only_files_are_refused(zoo, path, tmp_path):
    with pytest.raises(KeraffeError) as caught:
        keraffe.keras_to_caffe(zoo / path, tmp_path / "net.prototxt")
    message = str(caught.value)
    assert message.startswith(f"{zoo / path}: the file holds weights only, no architecture; rebuild the model in "
                              "code and call load_weights on it")
    assert list(tmp_path.iterdir()) == []
