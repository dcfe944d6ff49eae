"""BatchNorm, Scale, Bias, LRN, MVN and SSD's Normalize against real Caffe; SegNet's BN against numpy.

BatchNorm's third blob (the moving-average factor Caffe divides the stored
statistics by, 0 meaning "none") is set to values other than 1 here, and a
BatchNorm followed by its Scale must become exactly one BatchNormalization.
Scale covers one bottom (any axis and num_axes, with and without a bias) and
two bottoms with axis 0, as squeeze-and-excitation nets use it.
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.errors import ConversionError

from ._harness import (Batch, Case, assert_case, assert_close, build_net, classes_of, convert, convert_case, inputs,
                       params)

IMAGE = inputs(x=(2, 3, 5, 4))



def layer(type_name: str, param: str = "", bottom: str = "x", top: str = "y", name: str = "l") -> str:
    return f'layer {{ name: "{{p}}{name}" type: "{type_name}" bottom: "{{p}}{bottom}" top: "{{p}}{top}" {param} }}\n'


def exactly(*classes):
    def check(model, p):
        assert classes_of(model, p) == list(classes), classes_of(model, p)
    return check


def bn_factor(factor: float, name: str = "bn"):
    """Store the statistics as Caffe's moving averages do: multiplied by the factor in blob 2."""
    def edit(net, p):
        node = net.layer(p + name)
        mean, variance, _ = node.weights[:3]
        scale = factor if factor else 1.0
        node.weights[0] = (mean * scale).astype(np.float32)
        node.weights[1] = (variance * scale).astype(np.float32)
        node.weights[2] = np.full_like(node.weights[2], factor)
    return edit


CONV = layer("Convolution", "convolution_param { num_output: 4 kernel_size: 3 pad: 1 }", top="c", name="conv")
BN_ON_C = layer("BatchNorm", bottom="c", top="c", name="bn")
SCALE_ON_C = layer("Scale", "scale_param { bias_term: true }", bottom="c", top="c", name="scale")
FLATTEN = layer("Flatten", bottom="x", top="f", name="flat")

CASES = [
    # ---------------------------------------------------------------- BatchNorm
    Case("batchnorm_alone", IMAGE, layer("BatchNorm", name="bn"), check=exactly("BatchNormalization")),
    Case("batchnorm_factor", IMAGE, layer("BatchNorm", name="bn"), edit=bn_factor(0.25)),
    Case("batchnorm_factor_large", IMAGE, layer("BatchNorm", name="bn"), edit=bn_factor(999.982)),
    # A zero factor: Caffe uses zero mean and variance, y = x / sqrt(eps).
    Case("batchnorm_factor_zero", IMAGE, layer("BatchNorm", "batch_norm_param { eps: 0.01 }", name="bn"),
         edit=bn_factor(0.0)),
    Case("batchnorm_eps", IMAGE, layer("BatchNorm", "batch_norm_param { eps: 0.3 }", name="bn")),
    Case("batchnorm_use_global_stats", IMAGE, layer("BatchNorm", "batch_norm_param { use_global_stats: true }",
                                                    name="bn")),
    Case("batchnorm_rank2", inputs(x=(2, 6)), layer("BatchNorm", name="bn")),
    Case("batchnorm_rank3", inputs(x=(2, 3, 5)), layer("BatchNorm", name="bn")),
    # Per flattened element, in Caffe's C, H, W order.
    Case("batchnorm_after_flatten", IMAGE, FLATTEN + layer("BatchNorm", bottom="f", name="bn")),
    # BatchNorm + Scale in place after a convolution, as ResNets write them: one BatchNormalization.
    Case("batchnorm_scale_fused", IMAGE, CONV + BN_ON_C + SCALE_ON_C,
         check=exactly("Conv2D", "BatchNormalization"), edit=bn_factor(0.5)),
    Case("batchnorm_scale_nobias_fused", IMAGE,
         layer("BatchNorm", "batch_norm_param { eps: 0.001 }", top="n", name="bn")
         + layer("Scale", bottom="n", name="scale"), check=exactly("BatchNormalization")),
    Case("batchnorm_scale_rank2_fused", inputs(x=(2, 6)), layer("BatchNorm", top="n", name="bn")
         + layer("Scale", "scale_param { bias_term: true }", bottom="n", name="scale"),
         check=exactly("BatchNormalization")),
    # The normalised blob is also used elsewhere: no fusion, both values exist.
    Case("batchnorm_shared_output_not_fused", IMAGE, layer("BatchNorm", top="n", name="bn")
         + layer("Scale", "scale_param { bias_term: true }", bottom="n", name="scale")
         + layer("ReLU", bottom="n", top="r", name="relu")),
    # ---------------------------------------------------------------- Scale, one bottom
    Case("scale_channel", IMAGE, layer("Scale")),
    Case("scale_channel_bias", IMAGE, layer("Scale", "scale_param { bias_term: true }")),
    Case("scale_axis2_num_axes2", IMAGE, layer("Scale", "scale_param { axis: 2 num_axes: 2 bias_term: true }")),
    Case("scale_axis2_num_axes1", IMAGE, layer("Scale", "scale_param { axis: 2 num_axes: 1 }")),
    Case("scale_axis1_all_axes", IMAGE, layer("Scale", "scale_param { axis: 1 num_axes: -1 bias_term: true }")),
    Case("scale_axis_minus1", IMAGE, layer("Scale", "scale_param { axis: -1 }")),
    Case("scale_axis1_num_axes2", IMAGE, layer("Scale", "scale_param { axis: 1 num_axes: 2 }")),
    Case("scale_num_axes0", IMAGE, layer("Scale", "scale_param { num_axes: 0 bias_term: true }"), alone=True),
    Case("scale_rank2", inputs(x=(2, 6)), layer("Scale", "scale_param { bias_term: true }")),
    Case("scale_rank3_axis2", inputs(x=(2, 3, 5)), layer("Scale", "scale_param { axis: 2 }")),
    Case("scale_after_flatten", IMAGE, FLATTEN + layer("Scale", "scale_param { bias_term: true }", bottom="f")),
    # ---------------------------------------------------------------- Scale, two bottoms (axis 0)
    # SE nets: (N, C) excitation times the (N, C, H, W) feature map.
    Case("scale_two_bottoms_se", inputs(x=(2, 4, 5, 3), s=(2, 4)),
         'layer { name: "{p}l" type: "Scale" bottom: "{p}x" bottom: "{p}s" top: "{p}y" scale_param { axis: 0 } }'),
    Case("se_block", inputs(x=(2, 4, 5, 3)),
         layer("Pooling", "pooling_param { pool: AVE global_pooling: true }", top="g", name="pool")
         + layer("Convolution", "convolution_param { num_output: 2 kernel_size: 1 }", bottom="g", top="d",
                 name="down")
         + layer("ReLU", bottom="d", top="d", name="relu")
         + layer("Convolution", "convolution_param { num_output: 4 kernel_size: 1 }", bottom="d", top="u",
                 name="up")
         + layer("Sigmoid", bottom="u", top="u", name="sigmoid")
         + layer("Reshape", "reshape_param { shape { dim: 0 dim: 0 } }", bottom="u", top="s", name="reshape")
         + 'layer { name: "{p}scale" type: "Scale" bottom: "{p}x" bottom: "{p}s" top: "{p}y" '
           "scale_param { axis: 0 } }"),
    Case("scale_two_bottoms_same_shape", inputs(x=(2, 4, 5, 3), s=(2, 4, 5, 3)),
         'layer { name: "{p}l" type: "Scale" bottom: "{p}x" bottom: "{p}s" top: "{p}y" scale_param { axis: 0 } }'),
    Case("scale_two_bottoms_nch", inputs(x=(2, 4, 5, 3), s=(2, 4, 5)),
         'layer { name: "{p}l" type: "Scale" bottom: "{p}x" bottom: "{p}s" top: "{p}y" scale_param { axis: 0 } }'),
    Case("scale_two_bottoms_rank2", inputs(x=(2, 6), s=(2, 6)),
         'layer { name: "{p}l" type: "Scale" bottom: "{p}x" bottom: "{p}s" top: "{p}y" scale_param { axis: 0 } }'),
    # ---------------------------------------------------------------- Bias
    Case("bias_channel", IMAGE, layer("Bias")),
    Case("bias_axis2_num_axes2", IMAGE, layer("Bias", "bias_param { axis: 2 num_axes: 2 }")),
    Case("bias_rank2", inputs(x=(2, 6)), layer("Bias")),
    Case("bias_num_axes0", IMAGE, layer("Bias", "bias_param { num_axes: 0 }"), alone=True),
    Case("bias_two_bottoms", inputs(x=(2, 4, 5, 3), s=(2, 4)),
         'layer { name: "{p}l" type: "Bias" bottom: "{p}x" bottom: "{p}s" top: "{p}y" bias_param { axis: 0 } }'),
    Case("bias_two_bottoms_nch", inputs(x=(2, 4, 5, 3), s=(2, 4, 5)),
         'layer { name: "{p}l" type: "Bias" bottom: "{p}x" bottom: "{p}s" top: "{p}y" bias_param { axis: 0 } }'),
    # ---------------------------------------------------------------- LRN
    Case("lrn_across", IMAGE, layer("LRN", "lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 }")),
    Case("lrn_across_k", inputs(x=(2, 7, 4, 5)), layer("LRN", "lrn_param { local_size: 3 alpha: 2 beta: 0.6 k: 2 }")),
    # OpenCV's LRN computes with k = 1; it gets k folded into alpha and a Power after (keraffe.passes.bvlc_spelling).
    Case("lrn_across_k_opencv", inputs(x=(1, 7, 4, 5)),
         layer("LRN", "lrn_param { local_size: 3 alpha: 2 beta: 0.6 k: 2 }"), runtime="opencv"),
    Case("lrn_within", IMAGE, layer("LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 "
                                           "norm_region: WITHIN_CHANNEL }")),
    Case("lrn_within_big_window", inputs(x=(2, 3, 7, 6)),
         layer("LRN", "lrn_param { local_size: 5 alpha: 3 beta: 0.5 norm_region: WITHIN_CHANNEL }")),
    # ---------------------------------------------------------------- MVN
    Case("mvn", IMAGE, layer("MVN")),
    Case("mvn_across_channels", IMAGE, layer("MVN", "mvn_param { across_channels: true }")),
    Case("mvn_mean_only", IMAGE, layer("MVN", "mvn_param { normalize_variance: false }")),
    Case("mvn_eps", IMAGE, layer("MVN", "mvn_param { eps: 0.5 }")),
    # Caffe's MVN reshapes its top with the legacy 4-D accessors: (N, C, L) in, (N, C, L, 1) out.
    Case("mvn_rank3", inputs(x=(2, 3, 6)), layer("MVN"), alone=True),
    Case("mvn_rank3_across_channels", inputs(x=(2, 3, 6)), layer("MVN", "mvn_param { across_channels: true }"),
         alone=True),
    # ---------------------------------------------------------------- SSD's Normalize
    Case("normalize_ssd", IMAGE, layer("Normalize", "norm_param { across_spatial: false channel_shared: false }")),
    Case("normalize_across_spatial_shared", IMAGE,
         layer("Normalize", "norm_param { across_spatial: true channel_shared: true }"), alone=True),
    Case("normalize_shared_eps", IMAGE,
         layer("Normalize", "norm_param { across_spatial: false channel_shared: true eps: 0.5 }"), alone=True),
    Case("normalize_across_spatial_per_channel", IMAGE,
         layer("Normalize", "norm_param { across_spatial: true channel_shared: false }")),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory.mktemp("normalization"))


@pytest.mark.pycaffe
@pytest.mark.parametrize("case", params(CASES))
def test_normalization_matches_caffe(batch, case):
    assert_case(batch, case)


@pytest.mark.pycaffe
def test_cases_run_as_one_net(batch):
    batch.check_all_batches()


def test_batchnorm_with_batch_statistics_is_refused(tmp_path):
    case = Case("bn_batch_stats", IMAGE, layer("BatchNorm", "batch_norm_param { use_global_stats: false }",
                                               name="bn"))
    with pytest.raises(ConversionError, match="use_global_stats"):
        convert(build_net([case], tmp_path / "net.prototxt"))


# ---------------------------------------------------------------- SegNet's BN (brocolli does not register BN)


def _segnet_weights(net, p):
    node = net.layer(p + "bn")
    node.weights = node.weights[:2]


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 4, 6, 7)], ids=["odd", "even"])
def test_segnet_bn_inference_matches_numpy_reference(shape, tmp_path):
    """SegNet's BN with bn_mode INFERENCE: y = x * scale + shift per channel (SegNet's bn_layer.cpp)."""
    case = Case("segnet_bn", inputs(x=shape), layer("BN", "bn_param { bn_mode: INFERENCE }", name="bn"),
                edit=_segnet_weights)
    model, net, values, outputs = convert_case(case, tmp_path)
    scale, shift = net.layer("segnet_bn__bn").weights
    assert scale.shape == shift.shape == (1, shape[1], 1, 1)
    x = values["segnet_bn__x"].astype(np.float64)
    assert_close(case.id, x * scale + shift, outputs["segnet_bn__y"])
    assert classes_of(model, "segnet_bn__") == ["AxisScale"]


def test_segnet_bn_learn_mode_is_refused(tmp_path):
    """Without bn_mode: INFERENCE, SegNet's BN (default LEARN) normalises with each batch's own statistics."""
    for param in ("bn_param { bn_mode: LEARN }", ""):
        case = Case("segnet_bn_learn", IMAGE, layer("BN", param, name="bn"), edit=_segnet_weights)
        with pytest.raises(ConversionError, match="LEARN"):
            convert(build_net([case], tmp_path / "net.prototxt"))


# ---------------------------------------------------------------- 0-axis parameters, against numpy


def _l2(x, axes, eps):
    return x / np.sqrt(np.sum(x * x, axis=axes, keepdims=True) + eps)


ZERO_AXIS = [
    # SSD's normalize_layer.cpp: x / sqrt(sum x^2 + eps) over C (per position) or C, H, W; times one scale.
    ("normalize_shared", "Normalize", "norm_param { across_spatial: false channel_shared: true eps: 0.5 }",
     lambda x, w: _l2(x, (1,), 0.5) * w[0]),
    ("normalize_across_spatial_shared", "Normalize", "norm_param { across_spatial: true channel_shared: true }",
     lambda x, w: _l2(x, (1, 2, 3), 1e-10) * w[0]),
    # scale_layer.cpp / bias_layer.cpp with num_axes 0: one learned scalar.
    ("scale_num_axes0", "Scale", "scale_param { num_axes: 0 bias_term: true }", lambda x, w: x * w[0] + w[1]),
    ("bias_num_axes0", "Bias", "bias_param { num_axes: 0 }", lambda x, w: x + w[0]),
]


@pytest.mark.parametrize("name, type_name, param, reference", ZERO_AXIS, ids=[z[0] for z in ZERO_AXIS])
def test_zero_axis_parameters_match_numpy_reference(name, type_name, param, reference, tmp_path):
    case = Case(name, IMAGE, layer(type_name, param))
    _, net, values, outputs = convert_case(case, tmp_path)
    weights = [np.asarray(w, np.float64).reshape(()) for w in net.layer(name + "__l").weights]
    assert_close(name, reference(values[name + "__x"].astype(np.float64), weights), outputs[name + "__y"])
