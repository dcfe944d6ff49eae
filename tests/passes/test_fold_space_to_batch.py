"""fold_space_to_batch: TF's SpaceToBatchND -> convolution -> BatchToSpaceND becomes one dilated convolution.

Before/after on the graph; that the folded net computes what the three layers
compute is judged by real Caffe in tests/convert/caffe_to_keras/test_tensor_ops.py.
"""

from keraffe.caffe.net import Tensor, load_net
from keraffe.passes.fold_space_to_batch import fold_space_to_batch

S2B = ('layer {{ name: "s2b{i}" type: "SpaceToBatchND" bottom: "{bottom}" top: "s{i}" space_to_batch_nd_param {{ '
       "block_shape: 1 block_shape: {b} block_shape: {b} paddings: 0 paddings: 0 paddings: {pt} paddings: {pb} "
       "paddings: {pt} paddings: {pb} }} }}\n")
CONV = ('layer {{ name: "conv{i}" type: "Convolution" bottom: "s{i}" top: "c{i}" convolution_param {{ num_output: 4 '
        "group: 4 bias_term: false kernel_size: 3 {extra} }} }}\n")
B2S = ('layer {{ name: "b2s{i}" type: "BatchToSpaceND" bottom: "c{i}" top: "y{i}" batch_to_space_nd_param {{ '
       "block_shape: 1 block_shape: {b} block_shape: {b} crops: 0 crops: 0 crops: 0 crops: {cb} crops: 0 "
       "crops: {cb} }} }}\n")


def _net(tmp_path, extra="", bottom="data"):
    text = ('name: "atrous"\nlayer { name: "data" type: "Input" top: "data" '
            "input_param { shape { dim: 1 dim: 4 dim: 65 dim: 65 } } }\n")
    text += S2B.format(i=0, bottom=bottom, b=2, pt=2, pb=3) + CONV.format(i=0, extra=extra) + B2S.format(i=0, b=2, cb=1)
    path = tmp_path / "atrous.prototxt"
    path.write_text(text)
    return load_net(path)


def test_atrous_idiom_becomes_one_dilated_convolution(tmp_path):
    net = _net(tmp_path)
    folded = fold_space_to_batch(net)
    assert [n.type for n in folded.layers] == ["Input", "Convolution"]
    conv = folded.layers[1]
    assert conv.name == "b2s0" and conv.outputs == (Tensor("y0"),) and conv.inputs == (Tensor("data"),)
    param = conv.param.convolution_param
    assert list(param.dilation) == [2, 2]
    # rows: 2 padded on top minus 0 cropped; the bottom pad gives the 65 rows BatchToSpaceND kept.
    assert (param.pad_t, param.pad_b, param.pad_l, param.pad_r) == (2, 2, 2, 2)
    assert conv.shapes.tops == ((1, 4, 65, 65),)
    assert folded.fused == {Tensor("s0"): ("s2b0", "b2s0"), Tensor("c0"): ("conv0", "b2s0")}
    # The given net is left as it was.
    assert [n.type for n in net.layers] == ["Input", "SpaceToBatchND", "Convolution", "BatchToSpaceND"]


def test_convolution_that_does_not_fit_stays_as_three_layers(tmp_path):
    net = _net(tmp_path, extra="pad: 1")
    assert fold_space_to_batch(net) is net
