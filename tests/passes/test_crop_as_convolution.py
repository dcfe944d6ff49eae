"""crop_as_convolution: Slice + Silence crops become depthwise convolutions that copy the kept part."""

import numpy as np
import pytest

from keraffe.passes.crop_as_convolution import crop_as_convolution

from caffe_pairs import assert_same_in_real_caffe, load, rewritten_net

NET = """
name: "crops"
input: "x"
input_shape { dim: 2 dim: 3 dim: 9 dim: 8 }
layer { name: "rows" type: "Slice" bottom: "x" top: "rows_start" top: "rows" top: "rows_end"
        slice_param { axis: 2 slice_point: 1 slice_point: 7 } }
layer { name: "cols" type: "Slice" bottom: "rows" top: "cols" top: "cols_end" slice_param { axis: -1 slice_point: 5 } }
layer { name: "channels" type: "Slice" bottom: "x" top: "c0" top: "c12" slice_param { axis: 1 slice_point: 1 } }
layer { name: "used_both" type: "Slice" bottom: "x" top: "top_half" top: "bottom_half" slice_param { axis: 2 slice_point: 4 } }
layer { name: "sum" type: "Eltwise" bottom: "top_half" bottom: "top_half" top: "sum" }
layer { name: "discard" type: "Silence" bottom: "rows_start" bottom: "rows_end" bottom: "cols_end" bottom: "c0" }
"""


def test_before_after(tmp_path):
    net = load(tmp_path, NET)
    result = crop_as_convolution(net)
    layers = {layer.name: layer for layer in result.net.layer}
    rows, cols = layers["rows"], layers["cols"]
    assert rows.type == cols.type == "Convolution"
    assert (rows.convolution_param.kernel_h, rows.convolution_param.kernel_w) == (4, 1)  # 9 rows, 6 kept
    assert (cols.convolution_param.kernel_h, cols.convolution_param.kernel_w) == (1, 4)  # 8 columns, 5 kept
    assert rows.convolution_param.group == rows.convolution_param.num_output == 3
    weight = result.weights["rows"][0]
    assert weight.shape == (3, 1, 4, 1) and weight.sum() == 3 and np.all(weight[:, 0, 1, 0] == 1)
    assert list(rows.top) == ["rows"] and list(cols.top) == ["cols"]
    # A channel slice, and a slice whose parts are both read, stay; the Silence keeps what is left.
    assert layers["channels"].type == layers["used_both"].type == "Slice"
    assert list(layers["discard"].bottom) == ["c0"]
    after = rewritten_net(net, result)
    assert after.shapes[after.layer("cols").outputs[0]] == (2, 3, 6, 5)


def test_the_silence_goes_when_it_swallowed_only_crops(tmp_path):
    net = load(tmp_path, NET.replace(' bottom: "c0" }', " }").replace(
        'layer { name: "channels" type: "Slice" bottom: "x" top: "c0" top: "c12" slice_param { axis: 1 slice_point: 1 } }\n', ""))
    result = crop_as_convolution(net)
    assert "discard" not in {layer.name for layer in result.net.layer}
    assert "Silence" not in {layer.type for layer in result.net.layer}


@pytest.mark.pycaffe
def test_real_caffe_copies_the_kept_values(tmp_path):
    net = load(tmp_path, NET)
    assert_same_in_real_caffe(net, crop_as_convolution(net))
