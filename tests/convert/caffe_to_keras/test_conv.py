"""Convolution, Deconvolution and the forks' depthwise aliases, against real Caffe.

Shapes are odd (7x9) and even (8x6); strides 1..3, pads 0..2, rectangular
kernels, dilation 2 with and without a stride, groups, depthwise, and
bias_term false. Where Keras' own padding reproduces Caffe's windows the
converter must use it ('same'/'valid', no ZeroPadding2D).
"""

from __future__ import annotations

import pytest

from ._harness import Batch, Case, assert_case, build_net, case_inputs, classes_of, convert, inputs, layers_of, params

pytestmark = pytest.mark.pycaffe

ODD = inputs(x=(1, 3, 7, 9))
EVEN = inputs(x=(2, 4, 8, 6))


def conv(param: str, bottom: str = "x") -> str:
    return (f'layer {{ name: "{{p}}conv" type: "Convolution" bottom: "{{p}}{bottom}" top: "{{p}}y" '
            f"convolution_param {{ {param} }} }}")


def deconv(param: str) -> str:
    return ('layer { name: "{p}deconv" type: "Deconvolution" bottom: "{p}x" top: "{p}y" '
            f"convolution_param {{ {param} }} }}")


def padding_is(mode: str, zero_padding: bool = False):
    def check(model, p):
        assert model.get_layer(p + "y").padding == mode
        assert bool(layers_of(model, p, "ZeroPadding2D")) == zero_padding, classes_of(model, p)
    return check


def only(*classes: str):
    def check(model, p):
        assert classes_of(model, p) == list(classes)
    return check


def no_helper_layers(model, p):
    """Nothing but the convolution (no padding, cropping or subsampling helpers)."""
    assert len(classes_of(model, p)) == 1, classes_of(model, p)


CASES = [
    # ---------------------------------------------------------------- padding plans
    Case("k3_s1_p1_same", ODD, conv("num_output: 4 kernel_size: 3 pad: 1"), check=padding_is("same")),
    Case("k3_s1_p1_same_even", EVEN, conv("num_output: 5 kernel_size: 3 pad: 1"), check=padding_is("same")),
    Case("k3_s1_p0_valid", ODD, conv("num_output: 4 kernel_size: 3"), check=padding_is("valid")),
    Case("k5_s1_p2_same", EVEN, conv("num_output: 3 kernel_size: 5 pad: 2"), check=padding_is("same")),
    # Odd size, stride 2: TensorFlow's 'same' puts the one extra row after, as Caffe's pad 1 does.
    Case("k3_s2_p1_odd_same", ODD, conv("num_output: 4 kernel_size: 3 stride: 2 pad: 1"), check=padding_is("same")),
    # Even size, stride 2: 'same' would pad 0 before, Caffe pads 1: explicit padding.
    Case("k3_s2_p1_even_explicit", EVEN, conv("num_output: 4 kernel_size: 3 stride: 2 pad: 1"),
         check=padding_is("valid", zero_padding=True)),
    Case("k3_s2_p0", EVEN, conv("num_output: 4 kernel_size: 3 stride: 2")),
    Case("k5_s3_p2", ODD, conv("num_output: 4 kernel_size: 5 stride: 3 pad: 2")),
    Case("k2_s1_p2_overpad", ODD, conv("num_output: 2 kernel_size: 2 pad: 2")),
    Case("k1_p1", EVEN, conv("num_output: 3 kernel_size: 1 pad: 1")),
    Case("k1_s2", ODD, conv("num_output: 3 kernel_size: 1 stride: 2"), check=no_helper_layers),
    Case("k7_s2_p3_stem", inputs(x=(1, 3, 15, 16)), conv("num_output: 4 kernel_size: 7 stride: 2 pad: 3")),
    Case("kernel_equals_input", ODD, conv("num_output: 2 kernel_h: 7 kernel_w: 9")),
    # ---------------------------------------------------------------- rectangular
    Case("rect_kernel_stride_pad_nobias", ODD,
         conv("num_output: 4 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 2 pad_w: 1 bias_term: false")),
    Case("rect_kernel_even", EVEN, conv("num_output: 3 kernel_h: 1 kernel_w: 5 pad_h: 0 pad_w: 2"),
         check=padding_is("same")),
    Case("rect_stride_only", EVEN, conv("num_output: 3 kernel_size: 2 stride_h: 1 stride_w: 2")),
    # ---------------------------------------------------------------- dilation
    Case("dilation2_s1_p2_same", ODD, conv("num_output: 4 kernel_size: 3 dilation: 2 pad: 2"),
         check=padding_is("same")),
    Case("dilation2_s1_p0", EVEN, conv("num_output: 4 kernel_size: 3 dilation: 2")),
    Case("dilation2_s2_p1", ODD, conv("num_output: 4 kernel_size: 3 dilation: 2 stride: 2 pad: 1")),
    Case("dilation2_s2_p2_even", EVEN, conv("num_output: 4 kernel_size: 3 dilation: 2 stride: 2 pad: 2")),
    Case("dilation_rect_s3", inputs(x=(1, 3, 11, 10)),
         conv("num_output: 2 kernel_h: 2 kernel_w: 3 dilation: 2 dilation: 3 stride: 3 pad: 1")),
    # ---------------------------------------------------------------- groups
    Case("group2", EVEN, conv("num_output: 6 kernel_size: 3 pad: 1 group: 2")),
    Case("group2_strided_nobias", EVEN, conv("num_output: 2 kernel_size: 3 stride: 2 group: 2 bias_term: false")),
    Case("depthwise", EVEN, conv("num_output: 4 kernel_size: 3 pad: 1 group: 4"),
         check=lambda m, p: classes_of(m, p) == ["DepthwiseConv2D"]),
    Case("depthwise_multiplier2_s2", EVEN, conv("num_output: 8 kernel_size: 3 stride: 2 pad: 1 group: 4")),
    Case("depthwise_dilated_strided", ODD, conv("num_output: 3 kernel_size: 3 dilation: 2 stride: 2 pad: 2 "
                                                "group: 3 bias_term: false")),
    # One convolution, two bottoms: the weights are shared.
    Case("two_bottoms", inputs(a=(1, 3, 6, 5), b=(1, 3, 6, 5)),
         'layer { name: "{p}conv" type: "Convolution" bottom: "{p}a" bottom: "{p}b" top: "{p}ya" top: "{p}yb" '
         "convolution_param { num_output: 2 kernel_size: 3 stride: 2 pad: 1 } }"),
    # ---------------------------------------------------------------- deconvolution
    Case("deconv_k4_s2_p1", ODD, deconv("num_output: 4 kernel_size: 4 stride: 2 pad: 1")),
    Case("deconv_k3_s1_p0", EVEN, deconv("num_output: 3 kernel_size: 3"), check=no_helper_layers),
    Case("deconv_k3_s1_p1", EVEN, deconv("num_output: 3 kernel_size: 3 pad: 1")),
    Case("deconv_k3_s2_p0", ODD, deconv("num_output: 2 kernel_size: 3 stride: 2")),
    Case("deconv_k2_s3_kernel_below_stride", ODD, deconv("num_output: 2 kernel_size: 2 stride: 3")),
    Case("deconv_k5_s3_p2", EVEN, deconv("num_output: 2 kernel_size: 5 stride: 3 pad: 2")),
    Case("deconv_rect_nobias", ODD, deconv("num_output: 3 kernel_h: 3 kernel_w: 4 stride_h: 1 stride_w: 2 "
                                           "pad_h: 1 pad_w: 2 bias_term: false")),
    Case("deconv_dilation2", EVEN, deconv("num_output: 2 kernel_size: 3 stride: 2 dilation: 2 pad: 1")),
    Case("deconv_dilation2_group2_rect_stride", EVEN,
         deconv("num_output: 4 kernel_size: 2 stride_h: 2 stride_w: 3 dilation: 2 pad: 1 group: 2")),
    Case("deconv_dilation3_one_channel", inputs(x=(1, 1, 5, 4)),
         deconv("num_output: 2 kernel_size: 3 stride: 2 dilation: 3 pad: 2")),
    Case("deconv_group2", EVEN, deconv("num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: 2"),
         check=lambda m, p: classes_of(m, p) == ["GroupedConv2DTranspose"]),
    Case("deconv_group2_odd_s3", inputs(x=(1, 6, 5, 7)), deconv("num_output: 4 kernel_size: 3 stride: 3 pad: 2 "
                                                                "group: 2 bias_term: false")),
    # Bilinear-upsampling style: one filter per channel.
    Case("deconv_depthwise_upsample", EVEN, deconv("num_output: 4 kernel_size: 4 stride: 2 pad: 1 group: 4 "
                                                   "bias_term: false")),
    Case("deconv_depthwise_multiplier_dilated", ODD, deconv("num_output: 6 kernel_size: 3 stride: 2 dilation: 2 "
                                                           "pad: 2 group: 3")),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory.mktemp("conv"))


@pytest.mark.parametrize("case", params(CASES))
def test_convolution_matches_caffe(batch, case):
    assert_case(batch, case)


def test_cases_run_as_one_net(batch):
    batch.check_all_batches()


# ---------------------------------------------------------------- the forks' depthwise aliases

ALIASES = [
    # farmingyard's ConvolutionDepthwise: one filter per input channel.
    ("convdw", EVEN, 'layer { name: "{p}dw" type: "ConvolutionDepthwise" bottom: "{p}x" top: "{p}y" '
                     "convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 } }",
     "num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 4"),
    ("convdw_odd_dilated", ODD, 'layer { name: "{p}dw" type: "ConvolutionDepthwise" bottom: "{p}x" top: "{p}y" '
                                "convolution_param { num_output: 3 kernel_size: 3 dilation: 2 pad: 1 "
                                "bias_term: false } }",
     "num_output: 3 kernel_size: 3 dilation: 2 pad: 1 bias_term: false group: 3"),
    # DepthwiseConvolution without a group: group = channels.
    ("depthwiseconv_nogroup", EVEN, 'layer { name: "{p}dw" type: "DepthwiseConvolution" bottom: "{p}x" '
                                    'top: "{p}y" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }',
     "num_output: 4 kernel_size: 3 pad: 1 group: 4"),
    ("depthwiseconv_multiplier", ODD, 'layer { name: "{p}dw" type: "DepthwiseConvolution" bottom: "{p}x" '
                                      'top: "{p}y" convolution_param { num_output: 6 kernel_size: 3 stride: 2 '
                                      "group: 3 } }",
     "num_output: 6 kernel_size: 3 stride: 2 group: 3"),
]


@pytest.mark.parametrize("alias", ALIASES, ids=[a[0] for a in ALIASES])
def test_depthwise_alias_equals_grouped_convolution_in_caffe(alias, tmp_path):
    """The aliases compute Caffe's Convolution with group = channels; brocolli lacks them, so Caffe
    runs that Convolution (same layer name, same weights) and the alias's Keras model must equal it."""
    from keraffe.verify import verify

    name, shape, text, grouped = alias
    case = Case(name, shape, text)
    net = build_net([case], tmp_path / "alias.prototxt")
    model = convert(net)
    assert classes_of(model, "")[-1] == "DepthwiseConv2D" or "Subsample2D" in classes_of(model, "")
    twin = Case(name, shape, 'layer { name: "{p}dw" type: "Convolution" bottom: "{p}x" top: "{p}y" '
                             f"convolution_param {{ {grouped} }} }}")
    reference = build_net([twin], tmp_path / "twin.prototxt")
    for node, twin_node in zip(net.layers, reference.layers):
        assert node.name == twin_node.name and reference.shapes[twin_node.outputs[0]] == net.shapes[node.outputs[0]]
        twin_node.weights = node.weights
    report = verify(model, reference, case_inputs([case], net), per_layer=True, runtime="caffe")
    assert report.ok, report.render()


# ---------------------------------------------------------------- every backend

MIXED = Case("mixed", inputs(x=(2, 4, 7, 8)), """
layer { name: "{p}same" type: "Convolution" bottom: "{p}x" top: "{p}same"
        convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "{p}explicit" type: "Convolution" bottom: "{p}x" top: "{p}explicit"
        convolution_param { num_output: 3 kernel_h: 3 kernel_w: 2 stride: 2 pad: 1 } }
layer { name: "{p}dw" type: "Convolution" bottom: "{p}x" top: "{p}dw"
        convolution_param { num_output: 8 kernel_size: 3 stride: 2 dilation: 2 pad: 2 group: 4 } }
layer { name: "{p}deconv" type: "Deconvolution" bottom: "{p}same" top: "{p}deconv"
        convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 group: 2 } }
layer { name: "{p}deconv2" type: "Deconvolution" bottom: "{p}explicit" top: "{p}deconv2"
        convolution_param { num_output: 2 kernel_size: 3 stride: 2 dilation: 2 pad: 1 } }
layer { name: "{p}maxpool" type: "Pooling" bottom: "{p}x" top: "{p}maxpool"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "{p}avepool" type: "Pooling" bottom: "{p}x" top: "{p}avepool"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "{p}bn" type: "BatchNorm" bottom: "{p}same" top: "{p}bn" }
layer { name: "{p}scale" type: "Scale" bottom: "{p}bn" top: "{p}bn" scale_param { bias_term: true } }
layer { name: "{p}lrn" type: "LRN" bottom: "{p}bn" top: "{p}lrn" lrn_param { local_size: 3 alpha: 0.5 } }
layer { name: "{p}flat" type: "Flatten" bottom: "{p}lrn" top: "{p}flat" }
layer { name: "{p}ip" type: "InnerProduct" bottom: "{p}flat" top: "{p}ip" inner_product_param { num_output: 5 } }
layer { name: "{p}prob" type: "Softmax" bottom: "{p}ip" top: "{p}prob" }
""")


@pytest.mark.backends
def test_mixed_net_matches_caffe_on_every_backend(tmp_path):
    """Padding plans, grouped and dilated (de)convolutions and pooling depend on each backend's ops."""
    assert_case(Batch([MIXED], tmp_path), MIXED)
