"""The three targets: what each writes, and that every result loads and matches where a runtime can read it.

``caffe1`` writes Caffe 1.0 layer types only (relu6 as ReLU - ReLU(x - 6),
silu as Sigmoid * x, pooling always rounding up and sliced); ``caffe`` (BVLC
master) uses Clip and Swish and pooling's ``round_mode``; ``opencv`` uses
ReLU6, Swish and ``ceil_mode``. Real Caffe (brocolli-caffe) judges caffe1. It
lacks Clip and Swish, so ``opencv`` is judged by OpenCV DNN; OpenCV lacks Clip,
so ``caffe`` is judged by OpenCV after each Clip(0, 6) is written as the
ReLU6 it equals (asserted first). The ``keraffe keras2caffe`` command lists
every Keras layer that did not map one to one.
"""

from __future__ import annotations

import copy

import keras
import pytest

from keraffe.convert.keras_to_caffe.targets import CAFFE_1_0_TYPES, OPENCV_TYPES
from keraffe.errors import ConversionError

from ._harness import TOLERANCE, assert_report_ok, assert_verified, convert_files, describe, randomize

pytestmark = pytest.mark.pycaffe

L = keras.layers


def target_model():
    """Every layer whose Caffe form depends on the target, on odd sizes."""
    x = keras.Input((9, 11, 3), name="image")
    y = L.Conv2D(4, 3, padding="same", activation="relu6", name="conv_relu6")(L.Rescaling(3.0, name="wide")(x))
    relu6 = L.Activation("relu6", name="relu6")(y)
    capped = L.ReLU(max_value=6.0, name="relu_max6")(y)
    hard_sigmoid = L.Activation("hard_sigmoid", name="hard_sigmoid")(y)
    hard_silu = L.Activation("hard_silu", name="hard_silu")(y)
    silu = L.Activation("silu", name="silu")(y)
    merged = L.Add(name="sum")([relu6, capped, hard_sigmoid, hard_silu, silu])
    depthwise = L.DepthwiseConv2D(3, activation="relu6", name="dw_relu6")(merged)
    pooled = L.MaxPooling2D(2, name="pool_valid_odd")(depthwise)
    averaged = L.AveragePooling2D(2, name="ave_valid_odd")(depthwise)
    joined = L.Concatenate(name="joined")([pooled, averaged])
    logits = L.Dense(5, activation="silu", name="dense_silu")(L.Flatten(name="flat")(joined))
    return keras.Model(x, L.Softmax(name="prob")(logits), name="targets")


@pytest.fixture(scope="module")
def model():
    built = target_model()
    randomize(built, seed=1)
    return built


def types_of(export):
    return [layer.type for layer in export.net.layer]


def test_caffe1_uses_only_caffe_1_0_types_and_matches_real_caffe(model, tmp_path):
    export, report = assert_verified(model, tmp_path, target="caffe1", runtime="caffe")
    used = set(types_of(export))
    assert used <= CAFFE_1_0_TYPES, sorted(used - CAFFE_1_0_TYPES)
    assert not used & {"ReLU6", "Clip", "Swish", "Interp", "Permute"}
    for layer in export.net.layer:
        if layer.type == "Pooling":
            assert not layer.pooling_param.HasField("round_mode"), layer.name
    text = export.prototxt.read_text()
    assert "round_mode" not in text and "ceil_mode" not in text
    assert "Slice" in used  # Keras' rounding-down windows cut out of Caffe's rounding-up output
    assert {"conv_relu6", "relu6", "hard_silu", "silu", "pool_valid_odd", "dense_silu", "prob"} <= {
        r.keras_layer for r in report.layers}


def test_caffe_target_uses_clip_swish_and_round_mode(model, tmp_path):
    from keraffe.caffe.net import load_net
    from keraffe.caffe.prototxt import Dialect, write_prototxt
    from keraffe.verify import verify

    export, _ = convert_files(model, tmp_path, "caffe")
    used = set(types_of(export))
    assert used <= CAFFE_1_0_TYPES | {"Clip", "Swish"}, sorted(used - CAFFE_1_0_TYPES)
    assert "Clip" in used and "Swish" in used and "ReLU6" not in used
    assert [layer.type for layer in export.net.layer if layer.name == "relu6"] == ["Clip"]
    assert [layer.type for layer in export.net.layer if layer.name == "silu"] == ["Swish"]
    pools = {layer.name: layer for layer in export.net.layer if layer.type == "Pooling"}
    assert pools["pool_valid_odd"].pooling_param.round_mode == pools["pool_valid_odd"].pooling_param.FLOOR
    text = export.prototxt.read_text()
    assert "round_mode: FLOOR" in text and "ceil_mode" not in text

    # OpenCV has no Clip: judge the net with each Clip(0, 6) written as ReLU6, the same function.
    judged = copy.deepcopy(export.net)
    for layer in judged.layer:
        if layer.type == "Clip":
            assert (layer.clip_param.min, layer.clip_param.max) == (0.0, 6.0), layer
            layer.type = "ReLU6"
            layer.ClearField("clip_param")
    prototxt = tmp_path / "as_relu6.prototxt"
    write_prototxt(prototxt, judged, Dialect.FORK)
    net = load_net(prototxt, export.caffemodel)
    report = verify(keras.Model(model.inputs, model.outputs), net, per_layer=True, runtime="opencv",
                    tolerance=TOLERANCE, tensor_map=export.tensor_map)
    assert_report_ok(report, "target caffe (Clip as ReLU6)")
    assert {"relu6", "silu", "pool_valid_odd", "prob"} <= {r.keras_layer for r in report.layers}, describe(
        report.layers)


def test_opencv_target_uses_relu6_swish_and_ceil_mode(model, tmp_path):
    export, report = assert_verified(model, tmp_path, target="opencv", runtime="opencv")
    used = set(types_of(export))
    assert used <= OPENCV_TYPES, sorted(used - OPENCV_TYPES)
    assert "ReLU6" in used and "Swish" in used and "Clip" not in used
    assert [layer.type for layer in export.net.layer if layer.name == "relu6"] == ["ReLU6"]
    assert [layer.type for layer in export.net.layer if layer.name == "relu_max6"] == ["ReLU6"]
    text = export.prototxt.read_text()
    assert "ceil_mode: false" in text and "round_mode" not in text
    assert "Slice" not in used  # rounding down needs no slicing here
    assert {"relu6", "silu", "pool_valid_odd", "prob"} <= {r.keras_layer for r in report.layers}


@pytest.mark.xfail(keras.backend.backend() == "torch", strict=True, raises=ConversionError,
                   reason="on PyTorch, Keras averages replicated edge pixels in uneven 'same' AVE padding: refused")
def test_opencv_target_without_swish_layers_loads_in_real_caffe(tmp_path):
    """The opencv target's pooling (ceil_mode) and ReLU6-free layers also run in real Caffe, which reads ceil_mode."""
    x = keras.Input((9, 11, 3), name="image")
    y = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    y = L.MaxPooling2D(2, name="pool")(y)
    y = L.AveragePooling2D(3, strides=2, padding="same", name="ave")(y)
    model = keras.Model(x, L.Dense(3, name="dense")(L.Flatten(name="flat")(y)), name="opencv_in_caffe")
    randomize(model)
    export, _ = assert_verified(model, tmp_path, target="opencv", runtime="caffe")
    assert "ceil_mode: false" in export.prototxt.read_text()


def test_target_names_are_checked(tmp_path):
    import keraffe
    from keraffe.errors import KeraffeError

    model = keras.Model(x := keras.Input((3,)), L.Dense(2)(x))
    with pytest.raises(KeraffeError, match="target must be one of caffe1, caffe, opencv, nnie, ascend, rknn, received 'tensorrt'"):
        keraffe.keras_to_caffe(model, tmp_path / "m.prototxt", target="tensorrt")
    assert not (tmp_path / "m.prototxt").exists()


# ---------------------------------------------------------------- the command line and its legalisation report


def test_cli_reports_every_layer_that_did_not_map_one_to_one(tmp_path, capsys):
    from keraffe.cli.main import main

    x = keras.Input((9, 11, 3), name="image")
    y = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(x)
    y = L.Conv2D(4, 3, strides=2, name="conv")(y)
    y = L.BatchNormalization(name="bn")(y)
    y = L.Activation("relu6", name="relu6")(y)
    y = L.MaxPooling2D(2, name="pool")(y)
    y = L.Dropout(0.5, name="drop")(y)
    y = L.GaussianNoise(0.1, name="noise")(y)
    y = L.Flatten(name="flat")(y)
    y = L.Dense(3, name="dense")(y)
    model = keras.Model(x, L.Activation("softmax", name="prob")(y), name="cli_model")
    randomize(model)
    source = tmp_path / "model.keras"
    model.save(source)
    out = tmp_path / "net.prototxt"
    assert main(["keras2caffe", str(source), "-o", str(out), "--target", "caffe1"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and out.with_suffix(".caffemodel").is_file()
    assert f"(target caffe1)" in printed
    assert "layers that did not map one to one:" in printed
    report = printed.split("layers that did not map one to one:")[1]
    lines = [line.strip() for line in report.strip().splitlines()]
    listed = {line.split(" ")[0] for line in lines}
    assert {"pad", "conv", "bn", "relu6", "pool", "noise", "dense"} <= listed, lines
    # one to one: not listed
    assert not listed & {"drop", "flat", "prob", "image"}, lines
    by_layer = {line.split(" ")[0]: line for line in lines}
    assert by_layer["bn"].startswith("bn (BatchNormalization) -> BatchNorm, Scale:")
    assert by_layer["relu6"].startswith("relu6 (Activation) -> ReLU, Power, ReLU, Eltwise:")
    assert by_layer["pad"].startswith("pad (ZeroPadding2D) -> no layer:")
    assert by_layer["noise"].startswith("noise (GaussianNoise) -> no layer: identity at inference")
    assert "(H, W, C)" in by_layer["dense"]

    capsys.readouterr()
    out_opencv = tmp_path / "net_opencv.prototxt"
    assert main(["keras2caffe", str(source), "-o", str(out_opencv), "--target", "opencv"]) == 0
    printed = capsys.readouterr().out
    lines = [line.strip() for line in printed.split("layers that did not map one to one:")[1].strip().splitlines()]
    assert not any(line.startswith("relu6 ") for line in lines), lines  # one ReLU6 layer there
