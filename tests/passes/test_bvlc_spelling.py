"""bvlc_spelling: fork spellings of BVLC layers rewritten for real Caffe and OpenCV, and nothing else."""

import numpy as np
import pytest

from keraffe.caffe.net import load_net
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.passes.bvlc_spelling import bvlc_spelling

NET = """
name: "forks"
input: "data"
input_shape { dim: 1 dim: 4 dim: 9 dim: 9 }
layer { name: "dw" type: "ConvolutionDepthwise" bottom: "data" top: "dw"
        convolution_param { num_output: 4 kernel_size: 3 pad_l: 1 pad_r: 1 pad_t: 2 pad_b: 2 } }
layer { name: "lopsided" type: "Convolution" bottom: "dw" top: "lopsided"
        convolution_param { num_output: 2 kernel_size: 3 pad_l: 0 pad_r: 1 pad_t: 0 pad_b: 1 } }
layer { name: "avg" type: "Pooling" bottom: "lopsided" top: "avg"
        pooling_param { pool: AVE_EXC_PAD kernel_size: 3 stride: 2 } }
layer { name: "avg_padded" type: "Pooling" bottom: "lopsided" top: "avg_padded"
        pooling_param { pool: AVE_EXC_PAD kernel_size: 3 stride: 2 pad: 1 } }
"""


@pytest.fixture
def spelled(tmp_path):
    path = tmp_path / "forks.prototxt"
    path.write_text(NET)
    return {layer.name: layer for layer in bvlc_spelling(load_net(path))[0].layer}


def test_depthwise_alias_becomes_grouped_convolution(spelled):
    layer = spelled["dw"]
    assert layer.type == "Convolution"
    assert layer.convolution_param.group == 4 and layer.convolution_param.num_output == 4


def test_symmetric_side_pads_become_pad_h_and_pad_w(spelled):
    param = spelled["dw"].convolution_param
    assert (param.pad_h, param.pad_w) == (2, 1)
    assert not any(param.HasField(side) for side in ("pad_l", "pad_r", "pad_t", "pad_b"))


def test_lopsided_pads_become_a_pad_layer_before_an_unpadded_convolution(spelled):
    pad, conv = spelled["lopsided/pad"], spelled["lopsided"]
    assert (pad.pad_param.pad_u, pad.pad_param.pad_d, pad.pad_param.pad_l, pad.pad_param.pad_r) == (0, 1, 0, 1)
    assert list(conv.bottom) == list(pad.top)
    param = conv.convolution_param
    assert not any(param.HasField(f) for f in ("pad_l", "pad_r", "pad_t", "pad_b", "pad_h", "pad_w"))


def test_unpadded_ave_exc_pad_is_bvlc_ave_but_padded_one_stays(spelled):
    assert spelled["avg"].pooling_param.pool == pb.PoolingParameter.AVE
    assert spelled["avg_padded"].pooling_param.pool == pb.PoolingParameter.AVE_EXC_PAD


@pytest.mark.pycaffe
def test_real_caffe_runs_the_spelled_depthwise_net(tmp_path):
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.verify import run_reference

    path = tmp_path / "dw.prototxt"
    path.write_text(NET.split('layer { name: "lopsided"')[0])
    net = attach_seeded_weights(load_net(path))
    x = np.random.default_rng(0).normal(size=(1, 4, 9, 9)).astype(np.float32)
    got = run_reference(net, {"data": x}, ["dw"], "caffe")["dw"]
    weights, bias = net.layer("dw").weights
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (1, 1)))
    expected = np.zeros((1, 4, 11, 9), np.float32)
    for c in range(4):
        for i in range(11):
            for j in range(9):
                expected[0, c, i, j] = (padded[0, c, i:i + 3, j:j + 3] * weights[c, 0]).sum() + bias[c]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


AXPY_NET = """
name: "se"
input: "x"
input_shape { dim: 2 dim: 3 dim: 4 dim: 5 }
input: "a"
input_shape { dim: 2 dim: 3 dim: 1 dim: 1 }
input: "y"
input_shape { dim: 2 dim: 3 dim: 4 dim: 5 }
layer { name: "axpy" type: "Axpy" bottom: "a" bottom: "x" bottom: "y" top: "out" }
"""


@pytest.mark.pycaffe
def test_real_caffe_runs_axpy_spelled_as_scale_and_sum(tmp_path):
    from keraffe.verify import run_reference

    path = tmp_path / "se.prototxt"
    path.write_text(AXPY_NET)
    net = load_net(path)
    assert [layer.type for layer in bvlc_spelling(net)[0].layer][-3:] == ["Flatten", "Scale", "Eltwise"]
    rng = np.random.default_rng(0)
    values = {"x": rng.normal(size=(2, 3, 4, 5)), "a": rng.normal(size=(2, 3, 1, 1)), "y": rng.normal(size=(2, 3, 4, 5))}
    values = {k: v.astype(np.float32) for k, v in values.items()}
    got = run_reference(net, values, ["out"], "caffe")["out"]
    np.testing.assert_allclose(got, values["a"] * values["x"] + values["y"], rtol=1e-6, atol=1e-6)


FORK_BN_AND_INTERP = """
name: "psp"
input: "x"
input_shape { dim: 1 dim: 3 dim: 7 dim: 6 }
layer { name: "bn" type: "BN" bottom: "x" top: "bn" bn_param { eps: 0.001 } }
layer { name: "bn_inplace" type: "BN" bottom: "bn" top: "bn" }
layer { name: "up" type: "Interp" bottom: "bn" top: "up" interp_param { height: 13 width: 9 } }
layer { name: "cropped" type: "Interp" bottom: "bn" top: "cropped" interp_param { zoom_factor: 2 pad_beg: -1 pad_end: -1 } }
layer { name: "segnet_bn" type: "BN" bottom: "up" top: "segnet" bn_param { bn_mode: INFERENCE } }
"""


@pytest.mark.pycaffe
@pytest.mark.parametrize("runtime", ["caffe", "opencv"])
def test_fork_bn_and_interp_spelled_for_runtimes_match_keraffe(runtime, tmp_path):
    """Real Caffe lacks BN and Interp; their BVLC spellings compute what keraffe's conversion does."""
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.convert.caffe_to_keras import convert_net
    from keraffe.verify import verify

    path = tmp_path / "psp.prototxt"
    path.write_text(FORK_BN_AND_INTERP)
    net = load_net(path)
    attach_seeded_weights(net, seed=3)
    net.layer("segnet_bn").weights = net.layer("segnet_bn").weights[:2]
    model, tmap = convert_net(net)
    report = verify(model, net, per_layer=True, runtime=runtime, tensor_map=tmap)
    assert all(row.ok for row in report.layers), [(r.caffe_tensor, r.rel) for r in report.layers]
    assert {r.caffe_tensor for r in report.layers} >= {"up", "cropped", "segnet"}


SEGNET_UNPOOL = """
name: "segnet"
input: "x"
input_shape { dim: 1 dim: 2 dim: 5 dim: 6 }
layer { name: "pool" type: "Pooling" bottom: "x" top: "p" top: "mask" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "up" type: "Upsample" bottom: "p" bottom: "mask" top: "u" upsample_param { scale: 2 upsample_h: 5 upsample_w: 6 } }
"""


@pytest.mark.pycaffe
def test_segnet_upsample_spelled_as_max_unpool_matches_keraffe(tmp_path):
    from keraffe.convert.caffe_to_keras import convert_net
    from keraffe.verify import verify

    path = tmp_path / "segnet.prototxt"
    path.write_text(SEGNET_UNPOOL)
    net = load_net(path)
    assert bvlc_spelling(net)[0].layer[-1].type == "MaxUnPool"
    model, tmap = convert_net(net)
    report = verify(model, net, per_layer=True, runtime="caffe", tensor_map=tmap)
    assert report.ok and any(r.caffe_tensor == "u" for r in report.layers), report.render()


TF_CONVERTED = """
name: "tf"
input: "x"
input_shape { dim: 1 dim: 3 dim: 9 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "x" top: "conv"
        convolution_param { num_output: 4 kernel_h: 3 kernel_w: 3 stride_h: 2 stride_w: 2
                            pad_l: 0 pad_r: 1 pad_t: 1 pad_b: 1 } }
layer { name: "dw" type: "Convolution" bottom: "conv" top: "dw"
        convolution_param { num_output: 4 group: 4 kernel_h: 3 kernel_w: 3 stride_h: 2 stride_w: 2
                            pad_l: 0 pad_r: 1 pad_t: 0 pad_b: 1 } }
layer { name: "relu6" type: "ReLU" bottom: "dw" top: "relu6" relu_param { relu6: true } }
"""


@pytest.mark.pycaffe
def test_uneven_side_pads_and_relu6_flag_judged_by_real_caffe(tmp_path):
    """TF-converted nets: brocolli's Pad before the unpadded convolution, and its ReLU6 layer."""
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.convert.caffe_to_keras import convert_net
    from keraffe.verify import verify

    path = tmp_path / "tf.prototxt"
    path.write_text(TF_CONVERTED)
    net = attach_seeded_weights(load_net(path), seed=5)
    types = [layer.type for layer in bvlc_spelling(net)[0].layer]
    assert types[1:] == ["Pad", "Convolution", "Pad", "Convolution", "ReLU6"]
    model, tmap = convert_net(net)
    report = verify(model, net, per_layer=True, runtime="caffe", tensor_map=tmap)
    assert all(row.ok for row in report.layers), report.render()
    assert float(report.layers[-1].max_ref) <= 6.0


SHUFFLE = """
name: "shuffle"
input: "x"
input_shape { dim: 2 dim: 6 dim: 3 dim: 4 }
layer { name: "shuffle" type: "ShuffleChannel" bottom: "x" top: "y" shuffle_channel_param { group: 3 } }
"""


@pytest.mark.pycaffe
def test_shuffle_channel_spelled_for_real_caffe(tmp_path):
    """Output channel i*g + j is input channel j*(C/g) + i (ShuffleNet's channel shuffle)."""
    from keraffe.verify import run_reference

    path = tmp_path / "shuffle.prototxt"
    path.write_text(SHUFFLE)
    net = load_net(path)
    x = np.arange(2 * 6 * 3 * 4, dtype=np.float32).reshape(2, 6, 3, 4)
    got = run_reference(net, {"x": x}, ["y"], "caffe")["y"]
    np.testing.assert_array_equal(got, x.reshape(2, 3, 2, 3, 4).transpose(0, 2, 1, 3, 4).reshape(2, 6, 3, 4))


BROADCAST_MUL = """
name: "mul"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 1 dim: 3 dim: 4 } } }
layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 2 dim: 5 dim: 3 dim: 1 } } }
layer { name: "y" type: "Mul" bottom: "x" bottom: "s" top: "y" }
"""


def test_broadcast_mul_spelled_as_tiles_and_a_product_for_real_caffe(tmp_path):
    """The Synopsys Mul broadcasts like NumPy; each bottom is tiled along its size-1 axes first."""
    from keraffe.verify import run_reference

    path = tmp_path / "mul.prototxt"
    path.write_text(BROADCAST_MUL)
    net = load_net(path)
    layers = {layer.name: layer for layer in bvlc_spelling(net)[0].layer}
    assert [(layers[n].tile_param.axis, layers[n].tile_param.tiles) for n in ("y/tile0_1", "y/tile1_3")] == [
        (1, 5), (3, 4)]
    assert layers["y"].type == "Eltwise" and list(layers["y"].bottom) == ["y/tile0_1", "y/tile1_3"]
    rng = np.random.default_rng(0)
    x, s = rng.standard_normal((2, 1, 3, 4), dtype=np.float32), rng.standard_normal((2, 5, 3, 1), dtype=np.float32)
    got = run_reference(net, {"x": x, "s": s}, ["y"], "caffe")["y"]
    np.testing.assert_array_equal(got, x * s)
