"""slice_as_crop: Slice + Silence crops become Caffe's Crop, sized by a pooling of the same input."""

import numpy as np
import pytest

from keraffe.passes.slice_as_crop import slice_as_crop

from caffe_pairs import assert_same_in_real_caffe, load, rewritten_net, seeded_inputs

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
    result = slice_as_crop(net)
    layers = {layer.name: layer for layer in result.net.layer}
    rows, cols = layers["rows"], layers["cols"]
    assert rows.type == cols.type == "Crop"
    assert list(rows.bottom) == ["x", "rows/size"] and list(rows.top) == ["rows"]
    assert (rows.crop_param.axis, list(rows.crop_param.offset)) == (2, [1, 0])
    assert (cols.crop_param.axis, list(cols.crop_param.offset)) == (3, [0])
    size = layers["rows/size"].pooling_param
    assert (size.kernel_h, size.kernel_w, size.stride) == (4, 1, 1)  # 9 rows, 6 kept
    # A channel slice, and a slice whose parts are both read, stay; the Silence keeps what is left.
    assert layers["channels"].type == layers["used_both"].type == "Slice"
    assert list(layers["discard"].bottom) == ["c0"]
    after = rewritten_net(net, result)
    assert after.shapes[after.layer("cols").outputs[0]] == (2, 3, 6, 5)
    assert not result.weights


def test_the_silence_goes_when_it_swallowed_only_crops(tmp_path):
    text = NET.replace(' bottom: "c0" }', " }").replace(
        'layer { name: "channels" type: "Slice" bottom: "x" top: "c0" top: "c12" slice_param { axis: 1 slice_point: 1 } }\n', "")
    result = slice_as_crop(load(tmp_path, text))
    assert "Silence" not in {layer.type for layer in result.net.layer}


@pytest.mark.pycaffe
def test_real_caffe_copies_the_kept_values(tmp_path):
    net = load(tmp_path, NET)
    assert_same_in_real_caffe(net, slice_as_crop(net))


@pytest.mark.pycaffe
def test_inf_and_nan_in_the_cut_parts_stay_out(tmp_path):
    """keraffe's own drafts can leave inf or NaN where a crop cuts; Crop never lets them in."""
    net = load(tmp_path, NET)
    inputs = seeded_inputs(net)
    inputs["x"][:, :, 0, :] = np.inf
    inputs["x"][:, :, 7:, :] = np.nan
    inputs["x"][:, :, :, 5:] = -np.inf
    values = assert_same_in_real_caffe(net, slice_as_crop(net), inputs=inputs)
    assert np.isfinite(values["cols"]).all()
