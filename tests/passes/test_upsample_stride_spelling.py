"""upsample_stride_spelling: the forks' nearest Upsample `scale: k` spelled as Huawei's `scale: 1 stride: k`."""

import numpy as np
import pytest

from keraffe.passes.upsample_stride_spelling import upsample_stride_spelling

from caffe_pairs import load, rewritten_net, seeded_inputs

NET = """
name: "ups"
input: "x"
input_shape { dim: 2 dim: 3 dim: 4 dim: 5 }
layer { name: "pool" type: "Pooling" bottom: "x" top: "pool" top: "mask" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "unpool" type: "Upsample" bottom: "pool" bottom: "mask" top: "unpool" upsample_param { scale: 2 } }
layer { name: "up2" type: "Upsample" bottom: "x" top: "up2" upsample_param { scale: 2 } }
layer { name: "up3" type: "Upsample" bottom: "x" top: "up3" upsample_param { scale: 3 } }
"""


def test_before_after(tmp_path):
    net = load(tmp_path, NET)
    result = upsample_stride_spelling(net)
    layers = {layer.name: layer for layer in result.net.layer}
    for name, factor in (("up2", 2), ("up3", 3)):
        param = layers[name].upsample_param
        assert (param.scale, param.stride) == (1, factor)
    assert not layers["unpool"].upsample_param.HasField("stride")  # SegNet's unpooling is another layer
    after = rewritten_net(net, result)
    assert after.shapes == net.shapes
    text = str(layers["up2"])
    assert "scale: 1" in text and "stride: 2" in text


@pytest.mark.pycaffe
def test_huawei_formula_on_the_rewrite_gives_real_caffe_original(tmp_path):
    """No Caffe build runs Huawei's spelling: its documented formula (tests/caffe_reference.py) judges it."""
    from caffe_reference import huawei_upsample
    from keraffe.verify import run_reference

    net = load(tmp_path, NET)
    inputs = seeded_inputs(net)
    original = run_reference(net, inputs, ["up2", "up3"], "caffe")
    for layer in upsample_stride_spelling(net).net.layer:
        if layer.name in original:
            param = layer.upsample_param
            np.testing.assert_array_equal(huawei_upsample(inputs["x"], param.scale, param.stride), original[layer.name])
