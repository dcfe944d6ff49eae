"""ceil_pooling_as_floor: MAX pooling whose roundings differ gets copied edge rows so that they agree, exactly."""

import pytest

from keraffe.caffe.shapes.pooling import pool_geometry
from keraffe.passes.ceil_pooling_as_floor import ceil_pooling_as_floor, floor_output, rounding_differs

from caffe_pairs import assert_same_in_real_caffe, load, rewritten_net

NET = """
name: "pools"
input: "x"
input_shape { dim: 2 dim: 3 dim: 12 dim: 12 }
layer { name: "resnet_like" type: "Pooling" bottom: "x" top: "resnet_like"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "valid_odd" type: "Pooling" bottom: "x" top: "valid_odd"
        pooling_param { pool: MAX kernel_h: 2 kernel_w: 3 stride: 2 } }
layer { name: "already_agrees" type: "Pooling" bottom: "x" top: "already_agrees"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "average" type: "Pooling" bottom: "x" top: "average"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
"""


def test_before_after(tmp_path):
    net = load(tmp_path, NET)
    result = ceil_pooling_as_floor(net)
    layers = {layer.name: layer for layer in result.net.layer}
    after = rewritten_net(net, result)
    # The rewritten poolings read padded inputs on which rounding down gives Caffe's output.
    for name in ("resnet_like", "valid_odd"):
        assert rounding_differs(net.layer(name).param, net.shapes[net.layer(name).inputs[0]])
        node = after.layer(name)
        bottom = after.shapes[node.inputs[0]]
        g = pool_geometry(node.param, bottom)
        assert all(floor_output(s, k, st, p, p) == o for s, k, st, p, o in
                   zip(bottom[2:], g.kernel, g.stride, g.pad_begin, g.output)), name
        assert after.shapes[node.outputs[0]] == net.shapes[net.layer(name).outputs[0]]
        assert layers[name].pooling_param == net.layer(name).param.pooling_param
    assert [l.type for l in result.net.layer if l.name.startswith("resnet_like/")] == ["Slice", "Concat",
                                                                                         "Slice", "Concat"]
    # 12 rows, pad 1, kernel 3, stride 2: Caffe gives 7 (last window at rows 11..12); one copied row makes 13.
    assert after.shapes[after.layer("resnet_like").inputs[0]] == (2, 3, 13, 13)
    assert list(layers["already_agrees"].bottom) == ["x"] and list(layers["average"].bottom) == ["x"]
    assert len(result.notes) == 2


@pytest.mark.pycaffe
def test_real_caffe_gives_the_same_maxima(tmp_path):
    """Normal inputs (negative ones too): copies of the edge never change a maximum."""
    net = load(tmp_path, NET)
    assert_same_in_real_caffe(net, ceil_pooling_as_floor(net))



#: Kernel 1, stride 2 on 12 rows: Caffe's 7th window starts at row 12 and reads nothing (-FLT_MAX).
EMPTY_WINDOW = """
name: "subsample"
input: "x"
input_shape { dim: 1 dim: 2 dim: 12 dim: 12 }
layer { name: "cropped" type: "Pooling" bottom: "x" top: "cropped/exact" pooling_param { pool: MAX kernel_size: 1 stride: 2 } }
layer { name: "rows" type: "Slice" bottom: "cropped/exact" top: "rows" top: "rows_end" slice_param { axis: 2 slice_point: 6 } }
layer { name: "cols" type: "Slice" bottom: "rows" top: "cropped" top: "cols_end" slice_param { axis: 3 slice_point: 6 } }
layer { name: "discard" type: "Silence" bottom: "rows_end" bottom: "cols_end" }
layer { name: "kept" type: "Pooling" bottom: "x" top: "kept" pooling_param { pool: MAX kernel_size: 1 stride: 2 } }
"""

#: 7 rows, kernel 2, stride 2: Caffe's 4th window averages row 6 alone; copies would change it.
AVERAGES = """
name: "averages"
input: "x"
input_shape { dim: 1 dim: 2 dim: 7 dim: 7 }
layer { name: "cropped" type: "Pooling" bottom: "x" top: "cropped/exact" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "rows" type: "Slice" bottom: "cropped/exact" top: "rows" top: "rows_end" slice_param { axis: 2 slice_point: 3 } }
layer { name: "cols" type: "Slice" bottom: "rows" top: "cropped" top: "cols_end" slice_param { axis: 3 slice_point: 3 } }
layer { name: "discard" type: "Silence" bottom: "rows_end" bottom: "cols_end" }
layer { name: "kept" type: "Pooling" bottom: "x" top: "kept" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
"""


@pytest.mark.parametrize("text", [EMPTY_WINDOW, AVERAGES], ids=["max_window_past_the_input", "average_past_it"])
def test_changed_windows_are_rewritten_only_where_they_are_cropped_away(text, tmp_path):
    net = load(tmp_path, text)
    result = ceil_pooling_as_floor(net)
    layers = {layer.name: layer for layer in result.net.layer}
    assert list(layers["cropped"].bottom) != ["x"] and list(layers["kept"].bottom) == ["x"]
    assert len(result.notes) == 1


@pytest.mark.pycaffe
@pytest.mark.parametrize("text", [EMPTY_WINDOW, AVERAGES], ids=["max_window_past_the_input", "average_past_it"])
def test_real_caffe_keeps_the_values_the_crops_keep(text, tmp_path):
    net = load(tmp_path, text)
    assert_same_in_real_caffe(net, ceil_pooling_as_floor(net))
