"""depthwise_as_grouped: the forks' depthwise types become BVLC's grouped Convolution, weights unchanged."""

import pytest

from keraffe.passes.depthwise_as_grouped import depthwise_as_grouped

from caffe_pairs import load, rewritten_net

NET = """
name: "dw"
input: "x"
input_shape { dim: 1 dim: 4 dim: 7 dim: 7 }
layer { name: "shufflenet" type: "ConvolutionDepthwise" bottom: "x" top: "a" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "mobilenet_yolo" type: "DepthwiseConvolution" bottom: "a" top: "b" convolution_param { num_output: 4 kernel_size: 3 } }
"""


def test_before_after(tmp_path):
    net = load(tmp_path, NET)
    result = depthwise_as_grouped(net)
    for layer in result.net.layer[1:]:
        assert layer.type == "Convolution"
        assert layer.convolution_param.group == layer.convolution_param.num_output == 4
        for got, original in zip(result.weights[layer.name], net.layer(layer.name).weights):
            assert (got == original).all()
    after = rewritten_net(net, result)
    assert after.shapes == net.shapes


@pytest.mark.pycaffe
def test_real_caffe_runs_the_grouped_form_as_the_depthwise_one(tmp_path):
    """Real Caffe lacks both fork types; keraffe's reference spelling of them is this same rewrite, so the
    judge is a NumPy depthwise convolution."""
    import numpy as np

    from keraffe.verify import run_reference

    net = load(tmp_path, NET.split('layer { name: "mobilenet_yolo"')[0])
    after = rewritten_net(net, depthwise_as_grouped(net))
    x = np.random.default_rng(1).normal(size=(1, 4, 7, 7)).astype(np.float32)
    got = run_reference(after, {"x": x}, ["a"], "caffe")["a"]
    weight, bias = net.layer("shufflenet").weights
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros_like(got)
    for c in range(4):
        for i in range(7):
            for j in range(7):
                expected[0, c, i, j] = (padded[0, c, i:i + 3, j:j + 3] * weight[c, 0]).sum() + bias[c]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
