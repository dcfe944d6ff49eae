"""Element-wise activations and Softmax against real Caffe (OpenCV or numpy where brocolli lacks a layer).

Each runs on an NHWC image blob, and the layout-sensitive ones (PReLU, Softmax)
also on rank-2 and rank-3 blobs and on an image flattened in Keras' order.

Not in brocolli-caffe: Clip and Swish (BVLC master), and the Synopsys fork's
``relu_param { relu6: true }``. OpenCV runs Swish but ignores its beta, and has
no Clip, so those are compared with numpy written from the defining sources:
BVLC's clip_layer.cpp ``max(min, min(x, max))``, swish_layer.cpp
``x * sigmoid(beta * x)``, and Synopsys' relu_layer.cpp
``min(max(x, 0) + slope * min(x, 0), 6)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from ._harness import Batch, Case, assert_case, assert_close, classes_of, convert_case, inputs, params

IMAGE = inputs(x=(2, 3, 5, 4))
FLAT = inputs(x=(2, 7))


def unary(type_name: str, param: str = "", bottom: str = "x", top: str = "y") -> str:
    return f'layer {{ name: "{{p}}act" type: "{type_name}" bottom: "{{p}}{bottom}" top: "{{p}}{top}" {param} }}\n'


def keras_class(*classes):
    def check(model, p):
        assert classes_of(model, p) == list(classes), classes_of(model, p)
    return check


CONV = ('layer { name: "{p}conv" type: "Convolution" bottom: "{p}x" top: "{p}c" '
        "convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }\n")
FLATTEN = 'layer { name: "{p}flat" type: "Flatten" bottom: "{p}x" top: "{p}f" }\n'

CASES = [
    Case("relu", IMAGE, unary("ReLU"), check=keras_class("ReLU")),
    Case("relu_negative_slope", IMAGE, unary("ReLU", "relu_param { negative_slope: 0.1 }")),
    # In place after a convolution, as nearly every Caffe net writes it.
    Case("relu_in_place", IMAGE, CONV + unary("ReLU", bottom="c", top="c")),
    Case("prelu", IMAGE, unary("PReLU"), check=keras_class("PReLU")),
    # Caffe's shared slope is a 0-axis blob, which the caffemodel writer must keep 0-axis.
    Case("prelu_channel_shared", IMAGE, unary("PReLU", "prelu_param { channel_shared: true }"), alone=True),
    Case("prelu_rank2", FLAT, unary("PReLU")),
    Case("prelu_rank3", inputs(x=(2, 4, 5)), unary("PReLU")),
    # A flattened image: one slope per flattened element, in Caffe's C, H, W order.
    Case("prelu_after_flatten", IMAGE, FLATTEN + unary("PReLU", bottom="f")),
    Case("elu", IMAGE, unary("ELU")),
    Case("elu_alpha", IMAGE, unary("ELU", "elu_param { alpha: 0.4 }")),
    Case("sigmoid", IMAGE, unary("Sigmoid")),
    Case("tanh", FLAT, unary("TanH")),
    Case("absval", IMAGE, unary("AbsVal")),
    Case("bnll", IMAGE, unary("BNLL")),
    Case("power_square_scale_shift", IMAGE, unary("Power", "power_param { power: 2 scale: 0.5 shift: 1 }")),
    Case("power_cube", FLAT, unary("Power", "power_param { power: 3 }")),
    Case("power_linear", IMAGE, unary("Power", "power_param { scale: -2 shift: 0.3 }")),
    Case("power_sqrt", IMAGE, unary("Power", "power_param { power: 0.5 scale: 2 }"), positive=("x",)),
    Case("power_reciprocal", IMAGE, unary("Power", "power_param { power: -1 shift: 0.1 }"), positive=("x",)),
    Case("power_zero", IMAGE, unary("Power", "power_param { power: 0 }")),
    Case("exp", IMAGE, unary("Exp")),
    Case("exp_base2_scale_shift", IMAGE, unary("Exp", "exp_param { base: 2 scale: 0.5 shift: 0.3 }")),
    Case("log", IMAGE, unary("Log"), positive=("x",)),
    Case("log_base10_scale_shift", IMAGE, unary("Log", "log_param { base: 10 scale: 2 shift: 0.5 }"),
         positive=("x",)),
    Case("threshold", IMAGE, unary("Threshold", "threshold_param { threshold: 0.3 }")),
    Case("threshold_default", FLAT, unary("Threshold")),
    Case("relu6_type", IMAGE, unary("ReLU6")),
    Case("relu6_type_threshold_slope", IMAGE, unary("ReLU6", "relu6_param { threshold: 1.5 negative_slope: 0.2 }")),
    Case("hardswish", IMAGE, unary("HardSwish")),
    Case("hardsigmoid", IMAGE, unary("HardSigmoid"), check=keras_class("Rescaling", "ReLU")),
    Case("hardsigmoid_alpha_beta", FLAT, unary("HardSigmoid", "hardsigmoid_param { alpha: 0.7 beta: 0.3 }")),
    # The Synopsys fork's spelling of the same parameters.
    Case("hard_sigmoid_synopsys", IMAGE, unary("HardSigmoid", "hard_sigmoid_param { alpha: 0.4 beta: 0.6 }")),
    # ---------------------------------------------------------------- Softmax
    Case("softmax_rank2", FLAT, unary("Softmax")),
    Case("softmax_axis1_rank4", IMAGE, unary("Softmax"),
         check=lambda m, p: m.get_layer(p + "y").axis == 3),
    Case("softmax_axis2_rank4", IMAGE, unary("Softmax", "softmax_param { axis: 2 }")),
    Case("softmax_axis_minus1_rank4", IMAGE, unary("Softmax", "softmax_param { axis: -1 }")),
    Case("softmax_axis2_rank3", inputs(x=(2, 3, 6)), unary("Softmax", "softmax_param { axis: 2 }")),
    Case("softmax_axis1_rank3", inputs(x=(2, 3, 6)), unary("Softmax", "softmax_param { axis: 1 }")),
    Case("softmax_after_flatten", IMAGE, FLATTEN + unary("Softmax", bottom="f")),
    # ---------------------------------------------------------------- OpenCV: Swish (beta 1 only)
    Case("swish", IMAGE, unary("Swish"), runtime="opencv"),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory.mktemp("activations"))


@pytest.mark.pycaffe
@pytest.mark.parametrize("case", params(CASES))
def test_activation_matches_caffe(batch, case):
    assert_case(batch, case)


@pytest.mark.pycaffe
def test_cases_run_as_one_net(batch):
    batch.check_all_batches()


# ---------------------------------------------------------------- numpy references


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


NUMPY = [
    (Case("clip", IMAGE, unary("Clip", "clip_param { min: -0.5 max: 0.7 }")),
     lambda x: np.maximum(-0.5, np.minimum(x, 0.7))),
    # min > max: Caffe's max(min, min(x, max)) gives min everywhere.
    (Case("clip_inverted_bounds", FLAT, unary("Clip", "clip_param { min: 0.5 max: -0.5 }")),
     lambda x: np.maximum(0.5, np.minimum(x, -0.5))),
    (Case("swish_beta1", IMAGE, unary("Swish")), lambda x: x * _sigmoid(x)),
    (Case("swish_beta2", IMAGE, unary("Swish", "swish_param { beta: 2 }")), lambda x: x * _sigmoid(2 * x)),
    (Case("swish_beta_half_rank2", FLAT, unary("Swish", "swish_param { beta: 0.5 }")),
     lambda x: x * _sigmoid(0.5 * x)),
    (Case("relu_relu6_flag", IMAGE, unary("ReLU", "relu_param { relu6: true }")),
     lambda x: np.minimum(np.maximum(x, 0), 6)),
    (Case("relu_relu6_flag_slope", IMAGE, unary("ReLU", "relu_param { relu6: true negative_slope: 0.1 }")),
     lambda x: np.minimum(np.maximum(x, 0) + 0.1 * np.minimum(x, 0), 6)),
]


@pytest.mark.parametrize("case, reference", NUMPY, ids=[c.id for c, _ in NUMPY])
def test_activation_matches_numpy_reference(case, reference, tmp_path):
    _, _, values, outputs = convert_case(case, tmp_path)
    p = case.id + "__"
    x = values[p + "x"]
    assert_close(case.id, reference(x.astype(np.float64)), outputs[p + "y"])


def test_relu6_flag_reaches_the_cap(tmp_path):
    """The seeded inputs never reach 6; a big input checks relu6's cap itself."""
    import keras

    case = Case("relu6_cap", FLAT, unary("ReLU", "relu_param { relu6: true }"))
    model, _, _, _ = convert_case(case, tmp_path)
    x = np.array([[-8.0, -1.0, 0.0, 2.0, 5.9, 6.0, 40.0]], np.float32)
    y = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_array_equal(y, np.minimum(np.maximum(x, 0), 6))


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 7)], ids=["image", "rank2"])
def test_prelu_channel_shared_matches_numpy_reference(shape, tmp_path):
    """Caffe's PReLU with one shared slope: y = max(x, 0) + a * min(x, 0) (prelu_layer.cpp)."""
    case = Case("prelu_shared", inputs(x=shape), unary("PReLU", "prelu_param { channel_shared: true }"))
    _, net, values, outputs = convert_case(case, tmp_path)
    slope = float(np.asarray(net.layer("prelu_shared__act").weights[0]).reshape(()))
    x = values["prelu_shared__x"].astype(np.float64)
    assert_close(case.id, np.maximum(x, 0) + slope * np.minimum(x, 0), outputs["prelu_shared__y"])
