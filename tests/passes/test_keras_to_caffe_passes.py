"""The Keras -> Caffe passes, each alone: the draft net before, the Caffe 1.0 net after, same numbers.

Each test drafts a small net the way the handlers do (in a conversion
context), runs one pass, checks the structure it leaves (layer types and
parameters) and runs the result in real Caffe against an independent
reference: the drafted semantics written with brocolli's Pad layer (zero
padding, then an unpadded convolution), or Keras' own pooling layer.
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.caffe.caffemodel import write_caffemodel
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.prototxt import Dialect, write_prototxt
from keraffe.convert.keras_to_caffe.context import CaffeValue, KerasToCaffeContext
from keraffe.convert.keras_to_caffe.targets import get_target
from keraffe.layout import NHWC
from keraffe.passes import absorb_zero_padding, place_pooling_windows, symmetric_convolution_padding
from keraffe.passes.pooling_windows import KERAS_POOLING

pytestmark = pytest.mark.pycaffe


def drafted(shape, target="caffe1"):
    """A context holding one Input blob 'x' of Caffe shape ``shape``, as a conversion starts; and its value."""
    ctx = KerasToCaffeContext(get_target(target))
    layer = ctx.add("Input", "x", [], ["x"])
    layer.input_param.shape.add().dim.extend(shape)
    ctx.operation = _Operation("draft")
    value = CaffeValue("x", NHWC, tuple(shape))
    ctx.set_value(object(), value)
    return ctx, value


class _Operation:
    """Stands for the Keras layer a handler converts (passes note their rewrites in its name)."""

    def __init__(self, name):
        self.name = name


def run_caffe(net: pb.NetParameter, weights: dict, inputs: dict, blobs, tmp_path, name="net"):
    from keraffe.verify.caffe_runtime import run_pycaffe

    prototxt, caffemodel = tmp_path / f"{name}.prototxt", tmp_path / f"{name}.caffemodel"
    write_prototxt(prototxt, net, Dialect.FORK)
    write_caffemodel(caffemodel, net, weights)
    return run_pycaffe(prototxt, caffemodel, inputs, list(blobs))


def reference_net(shape, layers) -> pb.NetParameter:
    """A net of an Input 'x' and the given (type, name, bottoms, configure) layers."""
    net = pb.NetParameter(name="reference")
    feed = net.layer.add(name="x", type="Input", top=["x"])
    feed.input_param.shape.add().dim.extend(shape)
    for type_name, name, bottoms, configure in layers:
        layer = net.layer.add(name=name, type=type_name, bottom=bottoms, top=[name])
        configure(layer)
    return net


def conv_param(param, channels, kernel, stride=1):
    param.num_output = channels
    param.kernel_size.append(kernel)
    if stride != 1:
        param.stride.append(stride)


def zero_pad_param(pads):
    def configure(layer):
        (layer.pad_param.pad_u, layer.pad_param.pad_d), (layer.pad_param.pad_l, layer.pad_param.pad_r) = pads
    return configure


# ------------------------------------------------------------------ convolution padding

def test_side_padding_becomes_symmetric_padding_and_a_widened_kernel(tmp_path):
    shape = (1, 2, 9, 11)
    rng = np.random.default_rng(0)
    weight, bias = rng.standard_normal((3, 2, 3, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    ctx, source = drafted(shape)
    conv = ctx.add("Convolution", "conv", ["x"], ["conv"], weights=[weight, bias])
    conv_param(conv.convolution_param, 3, 3, stride=2)
    conv.convolution_param.pad_t, conv.convolution_param.pad_b = 0, 1
    conv.convolution_param.pad_l, conv.convolution_param.pad_r = 0, 1

    assert symmetric_convolution_padding(ctx) == []

    after = {layer.name: layer for layer in ctx.net.layer}["conv"].convolution_param
    assert list(after.kernel_size) == [4] and list(after.pad) == [1] and list(after.stride) == [2]
    assert not any(after.HasField(side) for side in ("pad_t", "pad_b", "pad_l", "pad_r"))
    widened = ctx.weights["conv"][0]
    assert widened.shape == (3, 2, 4, 4) and not widened[:, :, 0].any() and not widened[:, :, :, 0].any()
    assert ctx.report and "zero rows added to the kernel" in ctx.report[0].note

    x = rng.standard_normal(shape).astype(np.float32)
    padded_first = reference_net(shape, [
        ("Pad", "padded", ["x"], zero_pad_param(((0, 1), (0, 1)))),
        ("Convolution", "conv", ["padded"], lambda layer: conv_param(layer.convolution_param, 3, 3, stride=2)),
    ])
    expected = run_caffe(padded_first, {"conv": [weight, bias]}, {"x": x}, ["conv"], tmp_path, "before")["conv"]
    got = run_caffe(ctx.net, ctx.weights, {"x": x}, ["conv"], tmp_path, "after")["conv"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_symmetric_side_padding_keeps_the_kernel():
    ctx, source = drafted((1, 1, 5, 5))
    conv = ctx.add("Convolution", "conv", ["x"], ["conv"], weights=[np.ones((1, 1, 3, 3), np.float32)])
    conv_param(conv.convolution_param, 1, 3)
    param = conv.convolution_param
    param.pad_t = param.pad_b = param.pad_l = param.pad_r = 1
    symmetric_convolution_padding(ctx)
    after = ctx.net.layer[-1].convolution_param
    assert list(after.pad) == [1] and list(after.kernel_size) == [3] and ctx.report == []


# ------------------------------------------------------------------ zero padding

def test_zero_padding_folds_into_the_convolution_that_reads_it(tmp_path):
    shape = (1, 2, 7, 8)
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    ctx, source = drafted(shape)
    padded = ctx.zero_pad("pad", source, ((1, 2), (0, 3)), (1, 2, 10, 11))
    ctx.set_value(object(), padded)
    conv = ctx.add("Convolution", "conv", [padded.blob], ["conv"], weights=[weight])
    conv_param(conv.convolution_param, 2, 3)
    conv.convolution_param.bias_term = False
    param = conv.convolution_param
    param.pad_t = param.pad_b = param.pad_l = param.pad_r = 0

    assert absorb_zero_padding(ctx) == []
    assert [layer.type for layer in ctx.net.layer] == ["Input", "Convolution"]
    folded = ctx.net.layer[1]
    assert list(folded.bottom) == ["x"]
    assert (folded.convolution_param.pad_t, folded.convolution_param.pad_b) == (1, 2)
    assert (folded.convolution_param.pad_l, folded.convolution_param.pad_r) == (0, 3)

    symmetric_convolution_padding(ctx)
    x = rng.standard_normal(shape).astype(np.float32)
    padded_first = reference_net(shape, [
        ("Pad", "padded", ["x"], zero_pad_param(((1, 2), (0, 3)))),
        ("Convolution", "conv", ["padded"], lambda layer: (conv_param(layer.convolution_param, 2, 3),
                                                           setattr(layer.convolution_param, "bias_term", False))),
    ])
    expected = run_caffe(padded_first, {"conv": [weight]}, {"x": x}, ["conv"], tmp_path, "before")["conv"]
    got = run_caffe(ctx.net, ctx.weights, {"x": x}, ["conv"], tmp_path, "after")["conv"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_negative_padding_is_cut_first_and_the_cut_silenced():
    ctx, source = drafted((1, 1, 6, 6))
    first = ctx.zero_pad("pad", source, ((2, 2), (2, 2)), (1, 1, 10, 10))
    cropped = ctx.zero_pad("crop", first, ((-3, -1), (0, 0)), (1, 1, 6, 10))
    conv = ctx.add("Convolution", "conv", [cropped.blob], ["conv"], weights=[np.ones((1, 1, 1, 1), np.float32)])
    conv_param(conv.convolution_param, 1, 1)
    param = conv.convolution_param
    param.pad_t = param.pad_b = param.pad_l = param.pad_r = 0

    absorb_zero_padding(ctx)
    types = [layer.type for layer in ctx.net.layer]
    assert types == ["Input", "Slice", "Silence", "Convolution"]
    cut = ctx.net.layer[1]
    assert cut.name == "conv/precrop2" and cut.slice_param.axis == 2 and list(cut.slice_param.slice_point) == [1]
    after = ctx.net.layer[3].convolution_param
    assert (after.pad_t, after.pad_b, after.pad_l, after.pad_r) == (0, 1, 2, 2)


def test_zero_padding_read_by_another_layer_is_written_out(tmp_path):
    """Padding a ReLU reads becomes a depthwise convolution with a one-hot kernel: Pad's exact values."""
    shape = (1, 2, 5, 6)
    ctx, source = drafted(shape)
    padded = ctx.zero_pad("pad", source, ((2, 0), (1, 3)), (1, 2, 7, 10))
    ctx.add("ReLU", "relu", [padded.blob])

    assert absorb_zero_padding(ctx) == [] and symmetric_convolution_padding(ctx) == []
    assert [layer.type for layer in ctx.net.layer] == ["Input", "Convolution", "ReLU"]
    written = ctx.net.layer[1]
    assert written.convolution_param.group == 2 and list(written.top) == [padded.blob]
    kernel = ctx.weights[written.name][0]
    assert kernel.sum() == 2 and set(np.unique(kernel)) == {0.0, 1.0}  # one 1 per channel

    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    expected = run_caffe(reference_net(shape, [("Pad", "padded", ["x"], zero_pad_param(((2, 0), (1, 3))))]),
                         {}, {"x": x}, ["padded"], tmp_path, "before")["padded"]
    got = run_caffe(ctx.net, ctx.weights, {"x": x}, [padded.blob], tmp_path, "after")[padded.blob]
    np.testing.assert_array_equal(got, expected)


def test_minus_infinity_padding_read_by_another_layer_is_a_problem():
    ctx, source = drafted((1, 1, 4, 4))
    padded = ctx.zero_pad("pad", source, ((1, 1), (1, 1)), (1, 1, 6, 6), fill=float("-inf"))
    ctx.add("ReLU", "relu", [padded.blob])
    problems = absorb_zero_padding(ctx)
    assert [name for name, _ in problems] == [padded.blob]
    assert "only as the padding of the MAX pooling" in str(problems[0][1])


# ------------------------------------------------------------------ pooling windows

def keras_pool(cls, x_nchw, pool_size, strides, padding):
    import keras

    layer = getattr(keras.layers, cls)(pool_size, strides, padding=padding)
    return np.asarray(layer(NHWC.to_keras(x_nchw))).transpose(0, 3, 1, 2)


def draft_pooling(ctx, bottom, method, kernel, stride, pads=None, excludes=False, out_hw=None):
    layer = ctx.add_draft(KERAS_POOLING, "pool", [bottom], ["pool"])
    param = layer.pooling_param
    param.pool = param.MAX if method == "max" else (param.AVE_EXC_PAD if excludes else param.AVE)
    param.kernel_h = param.kernel_w = kernel
    param.stride_h = param.stride_w = stride
    param.round_mode = param.FLOOR
    if pads:
        (param.pad_t, param.pad_b), (param.pad_l, param.pad_r) = pads
    ctx.shapes["pool"] = (1, ctx.shapes[bottom][1], *out_hw)
    return layer


@pytest.mark.parametrize("cls, method, padding, size", [
    ("MaxPooling2D", "max", "valid", 12),
    ("AveragePooling2D", "ave", "same", 12),
    ("AveragePooling2D", "ave", "same", 11),
    ("MaxPooling2D", "max", "same", 9),
])
def test_keras_pooling_windows_placed_in_caffe(tmp_path, cls, method, padding, size):
    from keraffe.windows import same_padding

    shape = (1, 3, size, size)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    expected = keras_pool(cls, x, 3, 2, padding)
    ctx, source = drafted(shape)
    pads = [same_padding(size, 3, 2)] * 2 if padding == "same" else None
    draft_pooling(ctx, "x", method, 3, 2, pads, excludes=padding == "same", out_hw=expected.shape[2:])

    assert place_pooling_windows(ctx) == []
    types = [layer.type for layer in ctx.net.layer]
    assert KERAS_POOLING not in types and types[1] == "Pooling"
    assert not any(layer.pooling_param.round_mode == pb.PoolingParameter.FLOOR for layer in ctx.net.layer)
    got = run_caffe(ctx.net, ctx.weights, {"x": x}, ["pool"], tmp_path)["pool"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_max_pooling_over_zero_padding_sees_the_zeros(tmp_path):
    """Every input negative: windows touching the padding must give 0, which Caffe's MAX pooling never pads in."""
    import keras

    shape = (1, 2, 7, 7)
    x = -np.abs(np.random.default_rng(3).standard_normal(shape)).astype(np.float32) - 0.5
    padded = keras.layers.ZeroPadding2D(((1, 0), (1, 0)))(NHWC.to_keras(x))
    expected = np.asarray(keras.layers.MaxPooling2D(2)(padded)).transpose(0, 3, 1, 2)
    ctx, source = drafted(shape)
    zeros = ctx.zero_pad("pad", source, ((1, 0), (1, 0)), (1, 2, 8, 8))
    draft_pooling(ctx, zeros.blob, "max", 2, 2, out_hw=expected.shape[2:])

    assert place_pooling_windows(ctx) == [] and absorb_zero_padding(ctx) == []
    types = [layer.type for layer in ctx.net.layer]
    assert "keraffe.ZeroPadding" not in types and "Convolution" in types  # the window count of the zero fix
    got = run_caffe(ctx.net, ctx.weights, {"x": x}, ["pool"], tmp_path)["pool"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert (expected[:, :, 0, :] == 0).all()


def test_max_pooling_over_padding_wider_than_its_window_pools_the_padding_written_out(tmp_path):
    """Caffe's pooling pad must stay below the kernel; the zeros are written out (a one-hot convolution) instead."""
    import keras

    shape = (1, 1, 5, 5)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    padded = keras.layers.ZeroPadding2D(((3, 3), (3, 3)))(NHWC.to_keras(x))
    expected = np.asarray(keras.layers.MaxPooling2D(2)(padded)).transpose(0, 3, 1, 2)
    ctx, source = drafted(shape)
    zeros = ctx.zero_pad("pad", source, ((3, 3), (3, 3)), (1, 1, 11, 11))
    draft_pooling(ctx, zeros.blob, "max", 2, 2, out_hw=expected.shape[2:])

    assert place_pooling_windows(ctx) == [] and absorb_zero_padding(ctx) == []
    assert symmetric_convolution_padding(ctx) == []
    types = [layer.type for layer in ctx.net.layer]
    assert types[:3] == ["Input", "Convolution", "Pooling"] and "keraffe.ZeroPadding" not in types
    got = run_caffe(ctx.net, ctx.weights, {"x": x}, ["pool"], tmp_path)["pool"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_max_pooling_takes_minus_infinity_padding_as_its_own(tmp_path):
    """keras_hub pads with -inf before 'valid' MAX pooling: Caffe's MAX pooling pads alike (no window sees it)."""
    import keras

    shape = (1, 2, 7, 6)
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    padded = keras.ops.pad(NHWC.to_keras(x), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=float("-inf"))
    expected = np.asarray(keras.layers.MaxPooling2D(3, 2)(padded)).transpose(0, 3, 1, 2)
    ctx, source = drafted(shape)
    minus_inf = ctx.zero_pad("pad", source, ((1, 1), (1, 1)), (1, 2, 9, 8), fill=float("-inf"))
    draft_pooling(ctx, minus_inf.blob, "max", 3, 2, out_hw=expected.shape[2:])

    assert place_pooling_windows(ctx) == [] and absorb_zero_padding(ctx) == []
    types = [layer.type for layer in ctx.net.layer]
    assert types[:2] == ["Input", "Pooling"] and set(types[2:]) <= {"Slice", "Silence"}  # Caffe rounds up
    assert list(ctx.net.layer[1].bottom) == ["x"] and ctx.net.layer[1].pooling_param.pad == 1
    got = run_caffe(ctx.net, ctx.weights, {"x": x}, ["pool"], tmp_path)["pool"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
