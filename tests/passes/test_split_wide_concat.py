"""split_wide_concat: a Concat of more inputs than allowed becomes a tree of Concats, in the same order."""

import pytest

from keraffe.passes.split_wide_concat import split_wide_concat

from caffe_pairs import assert_same_in_real_caffe, load

INPUTS = "".join(f'input: "x{i}"\ninput_shape {{ dim: 1 dim: {i % 3 + 1} dim: 2 dim: 3 }}\n' for i in range(7))
NET = f"""
name: "wide"
{INPUTS}
layer {{ name: "cat" type: "Concat" {" ".join(f'bottom: "x{i}"' for i in range(7))} top: "cat" }}
layer {{ name: "narrow" type: "Concat" bottom: "x0" bottom: "x1" top: "narrow" concat_param {{ axis: 1 }} }}
"""


def test_before_after(tmp_path):
    result = split_wide_concat(load(tmp_path, NET), limit=3)
    layers = {layer.name: layer for layer in result.net.layer}
    assert list(layers["cat/part1"].bottom) == ["x0", "x1", "x2"]
    assert list(layers["cat/part2"].bottom) == ["cat/part1", "x3", "x4"]
    assert list(layers["cat"].bottom) == ["cat/part2", "x5", "x6"] and list(layers["cat"].top) == ["cat"]
    assert list(layers["narrow"].bottom) == ["x0", "x1"]
    with pytest.raises(ValueError):
        split_wide_concat(load(tmp_path, NET), limit=1)


@pytest.mark.pycaffe
def test_real_caffe_joins_the_same_values(tmp_path):
    net = load(tmp_path, NET)
    assert_same_in_real_caffe(net, split_wide_concat(net, limit=3))
