"""dropout_as_identity: every Dropout becomes Power y = x in its place, blobs and versions unchanged."""

import pytest

from keraffe.passes.dropout_as_identity import dropout_as_identity

from caffe_pairs import assert_same_in_real_caffe, load, rewritten_net

NET = """
name: "drops"
input: "x"
input_shape { dim: 2 dim: 6 }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "relu" type: "ReLU" bottom: "fc" top: "fc" }
layer { name: "drop_in_place" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.5 } }
layer { name: "after" type: "ReLU" bottom: "fc" top: "fc" relu_param { negative_slope: 0.1 } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "dropped" }
"""


def test_before_after(tmp_path):
    net = load(tmp_path, NET)
    result = dropout_as_identity(net)
    layers = {layer.name: layer for layer in result.net.layer}
    assert [layer.type for layer in result.net.layer] == ["Input", "InnerProduct", "ReLU", "Power", "ReLU", "Power"]
    assert list(layers["drop_in_place"].top) == ["fc"] and list(layers["drop"].top) == ["dropped"]
    param = layers["drop"].power_param
    assert (param.power, param.scale, param.shift) == (1.0, 1.0, 0.0)
    after = rewritten_net(net, result)
    # Every tensor (and in-place version) is still there under its name.
    assert set(after.shapes) == set(net.shapes)


@pytest.mark.pycaffe
def test_real_caffe_passes_the_values_through(tmp_path):
    net = load(tmp_path, NET)
    assert_same_in_real_caffe(net, dropout_as_identity(net))
