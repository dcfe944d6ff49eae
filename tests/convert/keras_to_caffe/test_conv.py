"""Convolutions against real Caffe: Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, Conv1D and Conv3D.

Every padding, stride parity and input parity: Keras' 'same' puts the odd
padding pixel at the end (stride 2 on an even size, an even kernel), which
Caffe's symmetric pad cannot do; keraffe widens the Caffe kernel with zero
rows instead, and these cases check that the windows land exactly. Sizes:
9x11 (odd, odd), 12x12 (even), 13x7 and 12x10.
"""

from __future__ import annotations

import keras
import pytest

from ._harness import Batch, Case, assert_case, caffe_types, layer_named, params

pytestmark = pytest.mark.pycaffe

L = keras.layers
SIZES = {"odd": (9, 11), "even": (12, 12), "mixed": (13, 7)}


def conv(name, **kwargs):
    def build(x, p):
        return L.Conv2D(name=p + name, **kwargs)(x[0])
    return build


def image(hw, channels=3):
    return (hw + (channels,),)


def no_bias_term(export, p):
    assert layer_named(export, p + "conv").convolution_param.bias_term is False


CASES = []
# ---------------------------------------------------------------- Conv2D: padding x stride x input parity
for size, hw in SIZES.items():
    for padding in ("valid", "same"):
        for stride in (1, 2, 3):
            CASES.append(Case(f"conv_k3_{padding}_s{stride}_{size}", image(hw),
                              conv("conv", filters=4, kernel_size=3, strides=stride, padding=padding),
                              compared=("conv",)))
for size, hw in (("odd", (9, 11)), ("even", (12, 10))):
    for stride in (1, 2):
        # An even kernel's 'same' padding is uneven even at stride 1.
        CASES.append(Case(f"conv_k2_same_s{stride}_{size}", image(hw),
                          conv("conv", filters=3, kernel_size=2, strides=stride, padding="same"), compared=("conv",)))
        CASES.append(Case(f"conv_k4_same_s{stride}_{size}", image(hw),
                          conv("conv", filters=3, kernel_size=4, strides=stride, padding="same"), compared=("conv",)))
CASES += [
    Case("conv_k3x5_same_s1x2_odd", image((9, 11)),
         conv("conv", filters=4, kernel_size=(3, 5), strides=(1, 2), padding="same"), compared=("conv",)),
    Case("conv_k5x2_same_s2x1_even", image((12, 10)),
         conv("conv", filters=4, kernel_size=(5, 2), strides=(2, 1), padding="same"), compared=("conv",)),
    Case("conv_k3_valid_s3x2_mixed", image((13, 7)),
         conv("conv", filters=2, kernel_size=3, strides=(3, 2), padding="valid"), compared=("conv",)),
    Case("conv_k1_s2_even", image((12, 12)), conv("conv", filters=5, kernel_size=1, strides=2), compared=("conv",)),
    # ------------------------------------------------------------ dilation (Keras allows it at stride 1 only)
    Case("conv_k3_d2_valid_odd", image((13, 11)),
         conv("conv", filters=3, kernel_size=3, dilation_rate=2, padding="valid"), compared=("conv",)),
    Case("conv_k3_d2_same_even", image((12, 10)),
         conv("conv", filters=3, kernel_size=3, dilation_rate=2, padding="same"), compared=("conv",)),
    Case("conv_k2_d3_same_odd", image((9, 11)),
         conv("conv", filters=3, kernel_size=2, dilation_rate=3, padding="same"), compared=("conv",)),
    Case("conv_k4_d2_same_even", image((12, 12)),
         conv("conv", filters=2, kernel_size=4, dilation_rate=2, padding="same"), compared=("conv",)),
    # ------------------------------------------------------------ groups, bias, fused activation
    Case("conv_groups2", image((9, 11), 4),
         conv("conv", filters=6, kernel_size=3, groups=2, padding="same"), compared=("conv",)),
    Case("conv_groups3_s2_even", image((12, 12), 6),
         conv("conv", filters=3, kernel_size=3, strides=2, groups=3, padding="same"), compared=("conv",)),
    Case("conv_no_bias", image((9, 11)), conv("conv", filters=4, kernel_size=3, use_bias=False),
         check=no_bias_term),
    Case("conv_relu", image((9, 11)), conv("conv", filters=4, kernel_size=3, activation="relu"),
         compared=("conv",)),
    Case("conv_tanh_same_s2", image((12, 12)),
         conv("conv", filters=4, kernel_size=3, strides=2, padding="same", activation="tanh"), compared=("conv",)),
]


# ---------------------------------------------------------------- DepthwiseConv2D
def depthwise(**kwargs):
    def build(x, p):
        return L.DepthwiseConv2D(name=p + "dw", **kwargs)(x[0])
    return build


for size, hw in SIZES.items():
    for padding, stride in (("valid", 1), ("same", 1), ("same", 2), ("valid", 2)):
        CASES.append(Case(f"dw_k3_{padding}_s{stride}_{size}", image(hw),
                          depthwise(kernel_size=3, strides=stride, padding=padding), compared=("dw",)))
CASES += [
    Case("dw_mult2_same_s2_even", image((12, 10)),
         depthwise(kernel_size=3, strides=2, padding="same", depth_multiplier=2), compared=("dw",)),
    Case("dw_mult3_valid_odd", image((9, 11), 2),
         depthwise(kernel_size=3, padding="valid", depth_multiplier=3), compared=("dw",)),
    Case("dw_k2_same_mult2_odd", image((9, 11)),
         depthwise(kernel_size=2, padding="same", depth_multiplier=2), compared=("dw",)),
    Case("dw_d2_same", image((12, 12)), depthwise(kernel_size=3, dilation_rate=2, padding="same"),
         compared=("dw",)),
    Case("dw_no_bias_relu6", image((9, 11)), depthwise(kernel_size=3, use_bias=False, activation="relu6"),
         compared=("dw",)),
]


# ---------------------------------------------------------------- SeparableConv2D
def separable(**kwargs):
    def build(x, p):
        return L.SeparableConv2D(name=p + "sep", **kwargs)(x[0])
    return build


def separable_is_two_convolutions(export, p):
    assert caffe_types(export, p) == ["Convolution", "Convolution"], caffe_types(export, p)
    assert layer_named(export, p + "sep/depthwise").convolution_param.group == 3


CASES += [
    Case("sep_same_s1_odd", image((9, 11)), separable(filters=4, kernel_size=3, padding="same"),
         check=separable_is_two_convolutions, compared=("sep",)),
    Case("sep_same_s2_even", image((12, 12)), separable(filters=4, kernel_size=3, strides=2, padding="same"),
         compared=("sep",)),
    Case("sep_same_s2_odd", image((9, 11)), separable(filters=4, kernel_size=3, strides=2, padding="same"),
         compared=("sep",)),
    Case("sep_valid_s2_mixed", image((13, 7)), separable(filters=2, kernel_size=3, strides=2, padding="valid"),
         compared=("sep",)),
    Case("sep_mult2_k2_same", image((12, 10)),
         separable(filters=5, kernel_size=2, padding="same", depth_multiplier=2), compared=("sep",)),
    Case("sep_d2_relu_no_bias", image((13, 11)),
         separable(filters=3, kernel_size=3, dilation_rate=2, padding="same", activation="relu", use_bias=False),
         compared=("sep",)),
]


# ---------------------------------------------------------------- Conv2DTranspose
def transpose(**kwargs):
    def build(x, p):
        return L.Conv2DTranspose(name=p + "deconv", **kwargs)(x[0])
    return build


for size, hw in (("odd", (5, 7)), ("even", (6, 4))):
    for padding in ("valid", "same"):
        for kernel, stride in ((3, 1), (3, 2), (2, 2), (4, 2), (3, 3), (5, 2)):
            CASES.append(Case(f"deconv_k{kernel}_{padding}_s{stride}_{size}", image(hw),
                              transpose(filters=3, kernel_size=kernel, strides=stride, padding=padding),
                              compared=("deconv",)))
CASES += [
    Case("deconv_k3_same_s2_op0", image((5, 7)),
         transpose(filters=3, kernel_size=3, strides=2, padding="same", output_padding=0), compared=("deconv",)),
    Case("deconv_k3_same_s2_op1", image((6, 4)),
         transpose(filters=3, kernel_size=3, strides=2, padding="same", output_padding=1), compared=("deconv",)),
    Case("deconv_k3_valid_s2_op1", image((5, 7)),
         transpose(filters=3, kernel_size=3, strides=2, padding="valid", output_padding=1), compared=("deconv",)),
    Case("deconv_k3_valid_s3_op2", image((5, 4)),
         transpose(filters=2, kernel_size=3, strides=3, padding="valid", output_padding=2), compared=("deconv",)),
    Case("deconv_k4_same_s3_op1", image((5, 4)),
         transpose(filters=2, kernel_size=4, strides=3, padding="same", output_padding=1), compared=("deconv",)),
    Case("deconv_k3x2_same_s2x1", image((5, 6)),
         transpose(filters=2, kernel_size=(3, 2), strides=(2, 1), padding="same"), compared=("deconv",)),
    Case("deconv_d2_same", image((5, 7)),
         transpose(filters=2, kernel_size=3, dilation_rate=2, padding="same"), compared=("deconv",)),
    Case("deconv_relu_no_bias", image((5, 7)),
         transpose(filters=3, kernel_size=3, strides=2, padding="same", activation="relu", use_bias=False),
         compared=("deconv",)),
]


# ---------------------------------------------------------------- ZeroPadding2D absorbed by the convolution
def padded(padding, layer):
    def build(x, p):
        return layer(p)(L.ZeroPadding2D(padding, name=p + "pad")(x[0]))
    return build


CASES += [
    Case("pad_asym_conv_valid_s2_odd", image((9, 11)),
         padded(((1, 2), (0, 3)), lambda p: L.Conv2D(4, 3, strides=2, name=p + "conv")), compared=("conv",)),
    Case("pad_asym_conv_valid_s1_even", image((12, 12)),
         padded(((2, 0), (1, 0)), lambda p: L.Conv2D(3, 3, name=p + "conv")), compared=("conv",)),
    Case("pad_asym_conv_same_s2_even", image((12, 10)),
         padded(((0, 1), (1, 0)), lambda p: L.Conv2D(3, 3, strides=2, padding="same", name=p + "conv")),
         compared=("conv",)),
    Case("pad_sym_conv_s2", image((9, 11)),
         padded(1, lambda p: L.Conv2D(3, 3, strides=2, name=p + "conv")), compared=("conv",)),
    Case("pad_asym_dw_s2_mixed", image((13, 7)),
         padded(((0, 1), (0, 1)), lambda p: L.DepthwiseConv2D(3, strides=2, name=p + "conv")), compared=("conv",)),
    Case("pad_asym_sep", image((9, 11)),
         padded(((1, 0), (2, 1)), lambda p: L.SeparableConv2D(3, 3, name=p + "conv")), compared=("conv",)),
    Case("pad_twice_conv", image((9, 11)),
         lambda x, p: L.Conv2D(3, 3, strides=2, name=p + "conv")(
             L.ZeroPadding2D(((0, 1), (1, 0)), name=p + "pad2")(
                 L.ZeroPadding2D(((1, 0), (0, 1)), name=p + "pad")(x[0]))),
         compared=("conv",)),
]

BATCH_CASES = CASES


# ---------------------------------------------------------------- Conv1D
def conv1d(**kwargs):
    def build(x, p):
        return L.Conv1D(name=p + "conv", **kwargs)(x[0])
    return build


def conv1d_dense(x, p):
    return L.Dense(2, name=p + "dense")(L.Conv1D(4, 3, padding="same", name=p + "conv")(x[0]))


CONV1D_CASES = [
    Case(f"conv1d_{padding}_s{stride}_{size}", ((length, 3),),
         conv1d(filters=4, kernel_size=3, strides=stride, padding=padding), compared=("conv",))
    for size, length in (("odd", 11), ("even", 12))
    for padding in ("valid", "same")
    for stride in (1, 2, 3)
] + [
    Case("conv1d_k2_same_odd", ((11, 3),), conv1d(filters=3, kernel_size=2, padding="same"), compared=("conv",)),
    Case("conv1d_k4_same_s2_even", ((12, 3),), conv1d(filters=3, kernel_size=4, strides=2, padding="same"),
         compared=("conv",)),
    Case("conv1d_d2_same", ((12, 3),), conv1d(filters=3, kernel_size=3, dilation_rate=2, padding="same"),
         compared=("conv",)),
    Case("conv1d_d2_valid_odd", ((13, 3),), conv1d(filters=3, kernel_size=3, dilation_rate=2), compared=("conv",)),
    Case("conv1d_causal_d2", ((12, 3),), conv1d(filters=3, kernel_size=3, dilation_rate=2, padding="causal"),
         compared=("conv",)),
    Case("conv1d_causal_k2", ((11, 3),), conv1d(filters=3, kernel_size=2, padding="causal"), compared=("conv",)),
    Case("conv1d_groups2", ((11, 4),), conv1d(filters=6, kernel_size=3, groups=2, padding="same"),
         compared=("conv",)),
    Case("conv1d_relu_no_bias", ((11, 3),), conv1d(filters=4, kernel_size=3, activation="relu", use_bias=False),
         compared=("conv",)),
    Case("conv1d_then_dense_opencv", ((11, 3),), conv1d_dense, target="opencv", compared=("conv", "dense")),
    # Dense over the channels of an (N, C, L) blob is a 1x1 convolution: no transpose, so Caffe 1.0 has it.
    Case("conv1d_then_dense", ((11, 3),), conv1d_dense, compared=("conv", "dense"),
         check=lambda e, p: "Permute" not in caffe_types(e, p)),
    Case("conv1d_then_flatten_dense", ((11, 3),),
         lambda x, p: L.Dense(2, name=p + "dense")(L.Flatten(name=p + "flat")(L.Conv1D(4, 3, name=p + "conv")(x[0]))),
         compared=("conv", "dense")),
]

# ---------------------------------------------------------------- Conv3D: Caffe's N-D Convolution over (N, C, D, H, W)
def conv3d(**kwargs):
    def build(x, p):
        return L.Conv3D(name=p + "conv", **kwargs)(x[0])
    return build


def n_d_convolution(export, p):
    param = layer_named(export, p + "conv").convolution_param
    assert len(param.kernel_size) == 3, param


CONV3D_CASES = [
    Case("conv3d_valid", ((5, 7, 6, 2),), conv3d(filters=3, kernel_size=3), compared=("conv",), check=n_d_convolution),
    Case("conv3d_same_s2_odd", ((5, 7, 9, 2),), conv3d(filters=3, kernel_size=(3, 2, 3), strides=2, padding="same"),
         compared=("conv",)),
    Case("conv3d_same_s1_even_kernel", ((4, 6, 5, 3),), conv3d(filters=2, kernel_size=2, padding="same"),
         compared=("conv",)),
    Case("conv3d_dilated_same_relu", ((6, 7, 5, 2),),
         conv3d(filters=2, kernel_size=2, dilation_rate=2, padding="same", activation="relu"), compared=("conv",)),
    Case("conv3d_groups_no_bias", ((4, 5, 6, 4),), conv3d(filters=6, kernel_size=3, groups=2, use_bias=False,
                                                          padding="same"), compared=("conv",)),
    Case("conv3d_then_dense", ((3, 4, 5, 2),),
         lambda x, p: L.Dense(3, name=p + "dense")(L.Conv3D(4, 2, name=p + "conv")(x[0])), compared=("conv", "dense")),
]


ALL = BATCH_CASES + CONV1D_CASES + CONV3D_CASES


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(ALL, tmp_path_factory, "conv")


@pytest.mark.parametrize("case", params(ALL))
def test_convolution(batch, case):
    assert_case(batch, case)


def test_all_cases_convert_as_one_net(batch):
    batch.check_all_batches()

