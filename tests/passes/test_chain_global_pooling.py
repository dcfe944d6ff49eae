"""chain_global_pooling: global poolings a toolchain refuses become chains of poolings it takes."""

import pytest

from keraffe.passes.chain_global_pooling import chain_global_pooling, plan_chain

from caffe_pairs import assert_same_in_real_caffe, load, rewritten_net


def fits(kernel, stride, input_hw, global_pooling):
    """A toolchain like RKNN's NPU: kernels up to 7, strides up to 8, global pooling over at most 7x7."""
    return max(input_hw) <= 7 if global_pooling else max(kernel) <= 7 and max(stride) <= 8


def net_text(method: str) -> str:
    return f"""
name: "globals"
input: "x"
input_shape {{ dim: 2 dim: 3 dim: 8 dim: 8 }}
input: "y"
input_shape {{ dim: 1 dim: 2 dim: 11 dim: 13 }}
layer {{ name: "square" type: "Pooling" bottom: "x" top: "square" pooling_param {{ pool: {method} global_pooling: true }} }}
layer {{ name: "odd" type: "Pooling" bottom: "y" top: "odd" pooling_param {{ pool: {method} global_pooling: true }} }}
layer {{ name: "as_kernel" type: "Pooling" bottom: "x" top: "as_kernel"
        pooling_param {{ pool: {method} kernel_size: 8 }} }}
layer {{ name: "small" type: "Pooling" bottom: "x" top: "small" pooling_param {{ pool: {method} kernel_size: 2 }} }}
"""


def test_plans():
    assert [(s.kernel, s.stride, s.output) for s in plan_chain((8, 8), "ave", fits)] == [
        ((4, 4), (4, 4), (2, 2)), ((2, 2), (2, 2), (1, 1))]
    # AVE needs blocks that divide the axis; 11 and 13 are prime and above the bound: no chain.
    assert plan_chain((11, 13), "ave", fits) is None
    # MAX may overlap windows: 11 = 2 windows of 6 at stride 5, 13 = 2 of 7 at stride 6.
    stages = plan_chain((11, 13), "max", fits)
    assert [(s.kernel, s.stride, s.output) for s in stages] == [((6, 7), (5, 6), (2, 2)), ((2, 2), (2, 2), (1, 1))]
    assert [s.output for s in plan_chain((7, 7), "ave", fits)] == [(1, 1)]


def test_before_after(tmp_path):
    net = load(tmp_path, net_text("MAX"))
    result = chain_global_pooling(net, fits)
    layers = {layer.name: layer for layer in result.net.layer}
    assert layers["square/stage1"].pooling_param.kernel_h == 4 and layers["square"].pooling_param.global_pooling
    assert list(layers["square"].bottom) == ["square/stage1"] and list(layers["square"].top) == ["square"]
    assert "odd/stage1" in layers and "as_kernel/stage1" in layers
    assert list(layers["small"].bottom) == ["x"]
    after = rewritten_net(net, result)
    for name in ("square", "odd", "as_kernel"):
        assert after.shapes[after.layer(name).outputs[0]] == net.shapes[net.layer(name).outputs[0]]
    ave = chain_global_pooling(load(tmp_path, net_text("AVE"), "ave"), fits)
    assert {layer.name for layer in ave.net.layer} >= {"square/stage1", "as_kernel/stage1"}
    assert "odd/stage1" not in {layer.name for layer in ave.net.layer}  # no exact chain: left for check


@pytest.mark.pycaffe
def test_real_caffe_max_chain_is_bit_exact(tmp_path):
    net = load(tmp_path, net_text("MAX"))
    assert_same_in_real_caffe(net, chain_global_pooling(net, fits))


@pytest.mark.pycaffe
def test_real_caffe_ave_chain_is_the_mean(tmp_path):
    net = load(tmp_path, net_text("AVE"))
    assert_same_in_real_caffe(net, chain_global_pooling(net, fits), rtol=1e-6)
