"""V0 and V1 zoo nets: ``keraffe upgrade`` output means to real Caffe what the original means.

For each legacy net, real Caffe runs the original file (brocolli upgrades V0
and V1 itself) and keraffe's upgraded V2 file with the same seeded weights and
input; every blob must have the same shape and bit-identical values, and Caffe
must hold exactly the seeded weights (a layer whose weights failed to load by
name would keep random fillers).

``cifar10_quick_trained/prediction_example.prototxt`` reads images through an
IMAGE_DATA layer, which this brocolli build lacks (no OpenCV); real Caffe gets
it with that layer and the loss/accuracy layers replaced by V1 ``input``
fields, still in V1 form, and runs it with the file's own trained V1
caffemodel (legacy 4-D blobs) against keraffe's upgrade of both.
"""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format

from keraffe.caffe.caffemodel import read_weights, write_caffemodel
from keraffe.caffe.net import load_net
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.prototxt import read_prototxt
from keraffe.caffe.upgrade import net_version
from keraffe.cli.main import main
from zoo_nets import ZOO

LEGACY_NETS = {
    "legacy_v0_caffenet/imagenet_deploy_v0.prototxt": "V0",
    "legacy_v0_lenet/lenet_v0.prototxt": "V0",
    "legacy_v1_bvlc_alexnet/deploy_v1.prototxt": "V1",
    "legacy_v1_bvlc_googlenet/deploy_v1.prototxt": "V1",
    "legacy_v1_cifar10_quick/cifar10_quick_v1.prototxt": "V1",
    "legacy_v1_lenet/lenet_v1.prototxt": "V1",
    "legacy_v1_vgg19/VGG_ILSVRC_19_layers_deploy.prototxt": "V1",
    "levi_hassner_age_gender/age_deploy.prototxt": "V1",
    "levi_hassner_age_gender/gender_deploy.prototxt": "V1",
    "cifar10_quick_trained/prediction_example.prototxt": "V1",
    # V2 layers with the old net-level input declarations.
    "legacy_inputdim_caffenet/deploy_inputdim.prototxt": "V2",
    "legacy_inputshape_googlenet/deploy_inputshape.prototxt": "V2",
}
#: Nets with 20M+ parameters: each real-Caffe run parses their 100-250 MB of seeded weights.
BIG_NETS = {
    "legacy_v0_caffenet/imagenet_deploy_v0.prototxt",
    "legacy_v1_bvlc_alexnet/deploy_v1.prototxt",
    "legacy_inputdim_caffenet/deploy_inputdim.prototxt",
    "legacy_v1_vgg19/VGG_ILSVRC_19_layers_deploy.prototxt",
}
PREDICTION_EXAMPLE = "cifar10_quick_trained/prediction_example.prototxt"
TRAINED_V1_WEIGHTS = "cifar10_quick_trained/cifar10_quick_iter_5000.caffemodel"


def _zoo(rel: str):
    if not ZOO.is_dir():
        pytest.skip(f"model zoo not found at {ZOO} (it lives beside the repository, in ../shared/zoo)")
    return ZOO / rel


def _upgrade(capsys, *args) -> str:
    code = main(["upgrade", *map(str, args)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    return out


def _seeded_weights(net, seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    weights = {}
    for node in net.layers:
        if node.shapes.params:
            blobs = []
            for i, shape in enumerate(node.shapes.params):
                fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
                blob = rng.standard_normal(shape, dtype=np.float32)
                blob *= np.float32(np.sqrt(2.0 / fan_in) if i == 0 else 0.1)
                blobs.append(blob)
            weights[node.name] = blobs
    return weights


def _same_bits(a, b) -> bool:
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def _deployable_prediction_example(path, target):
    """prediction_example as real Caffe can build it: V1 still, the IMAGE_DATA layer turned into inputs."""
    net = read_prototxt(path)
    assert net_version(net) == "V1"
    kept = [l for l in net.layers if pb.V1LayerParameter.LayerType.Name(l.type)
            not in ("IMAGE_DATA", "ACCURACY", "SOFTMAX_LOSS")]
    del net.layers[:]
    net.layers.extend(kept)
    net.input.append("data")
    net.input_dim.extend([1, 3, 32, 32])
    target.write_text(text_format.MessageToString(net))
    return target


def _original_for_caffe(rel, tmp_path):
    path = _zoo(rel)
    if rel == PREDICTION_EXAMPLE:
        return _deployable_prediction_example(path, tmp_path / "prediction_example_v1_inputs.prototxt")
    return path


@pytest.mark.parametrize("rel", sorted(LEGACY_NETS))
def test_upgrade_reports_and_writes_v2(rel, tmp_path, capsys):
    path = _zoo(rel)
    assert net_version(read_prototxt(path)) == LEGACY_NETS[rel]
    out_path = tmp_path / "upgraded.prototxt"
    out = _upgrade(capsys, path, "-o", out_path)
    assert f"({LEGACY_NETS[rel]}) -> {out_path} (V2)" in out
    if LEGACY_NETS[rel] != "V2":
        assert "V1 layers upgraded to V2" in out
    upgraded = read_prototxt(out_path)
    assert net_version(upgraded) == "V2" and not len(upgraded.input) and not len(upgraded.input_dim)
    # Upgrading the upgrade changes nothing.
    again = tmp_path / "again.prototxt"
    assert "already current" in _upgrade(capsys, out_path, "-o", again)
    assert again.read_text() == out_path.read_text()


@pytest.mark.pycaffe
@pytest.mark.parametrize("rel", [
    pytest.param(rel, marks=pytest.mark.slow) if rel in BIG_NETS else rel for rel in sorted(LEGACY_NETS)
])
def test_upgraded_net_computes_what_the_original_computes_in_caffe(rel, tmp_path, capsys):
    _check_upgrade_in_caffe(_original_for_caffe(rel, tmp_path), tmp_path, capsys)


V0_WITH_PADDING_LAYERS = """
name: "v0_padding"
input: "data"
input_dim: 1
input_dim: 3
input_dim: 10
input_dim: 10
layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 2 } bottom: "pad1" top: "conv1" }
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pad2" type: "padding" pad: 1 } bottom: "conv1" top: "pad2" }
layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 3 stride: 2 } bottom: "pad2" top: "pool1" }
layers { layer { name: "fc" type: "innerproduct" num_output: 3 } bottom: "pool1" top: "fc" }
"""


@pytest.mark.pycaffe
def test_v0_padding_layers_fold_into_conv_and_pool_as_in_caffe(tmp_path, capsys):
    original = tmp_path / "v0_padding.prototxt"
    original.write_text(V0_WITH_PADDING_LAYERS)
    net = load_net(original)
    assert [n.type for n in net.layers] == ["Input", "Convolution", "ReLU", "Pooling", "InnerProduct"]
    assert net.layer("conv1").param.convolution_param.pad == [2]
    assert net.layer("pool1").param.pooling_param.pad == 1
    _check_upgrade_in_caffe(original, tmp_path, capsys)


def _check_upgrade_in_caffe(original, tmp_path, capsys):
    from keraffe.verify.caffe_runtime import pycaffe_params, run_pycaffe

    upgraded = tmp_path / "upgraded.prototxt"
    _upgrade(capsys, original, "-o", upgraded)

    net = load_net(upgraded)
    weights = _seeded_weights(net)
    caffemodel = tmp_path / "seeded.caffemodel"
    write_caffemodel(caffemodel, net.to_net_parameter(), weights)

    held = pycaffe_params(original, caffemodel)
    assert set(held) == set(weights)
    for name, arrays in weights.items():
        assert all(_same_bits(a, b) for a, b in zip(held[name], arrays)), name

    rng = np.random.default_rng(1)
    inputs = {}
    for tensor in net.inputs:
        shape = (1,) + tuple(net.shapes[tensor][1:])  # batch 1 keeps big nets quick
        inputs[tensor.blob] = rng.uniform(0, 1, shape).astype(np.float32)
    blobs = sorted({t.blob for t in net.shapes})
    from_original = run_pycaffe(original, caffemodel, inputs, blobs)
    from_upgraded = run_pycaffe(upgraded, caffemodel, inputs, blobs)
    for blob in blobs:
        assert _same_bits(from_original[blob], from_upgraded[blob]), blob
    last = {t.blob: net.shapes[t] for t in sorted(net.shapes)}
    for blob, shape in last.items():
        assert from_upgraded[blob].shape[1:] == tuple(shape)[1:], blob


@pytest.mark.pycaffe
def test_v1_net_and_v1_weights_upgrade_together(tmp_path, capsys):
    """The trained 2015 V1 caffemodel (legacy 4-D blobs) and its V1 net, upgraded by one command."""
    from keraffe.verify.caffe_runtime import pycaffe_params, run_pycaffe

    original_net = _original_for_caffe(PREDICTION_EXAMPLE, tmp_path)
    original_weights = _zoo(TRAINED_V1_WEIGHTS)
    new_net, new_weights = tmp_path / "new.prototxt", tmp_path / "new.caffemodel"
    out = _upgrade(capsys, original_net, "-o", new_net, "--weights", original_weights,
                   "--weights-out", new_weights)
    assert f"-> {new_weights}" in out

    read = read_weights(new_weights)
    # The caffemodel holds its training net (a Data layer, a loss), now as V2 layers.
    assert [l.type for l in read.net.layer][:2] == ["Data", "Convolution"] and not len(read.net.layers)
    assert all(b.legacy for layer in read.layers.values() for b in layer.blobs)

    params_old = pycaffe_params(original_net, original_weights)
    params_new = pycaffe_params(new_net, new_weights)
    assert set(params_old) == set(params_new) == {"conv1", "conv2", "conv3", "ip1", "ip2"}
    for name in params_old:
        assert all(_same_bits(a, b) for a, b in zip(params_old[name], params_new[name])), name

    rng = np.random.default_rng(5)
    x = {"data": rng.uniform(-100, 100, (3, 3, 32, 32)).astype(np.float32)}
    old = run_pycaffe(original_net, original_weights, x, ["prob", "argmax"])
    new = run_pycaffe(new_net, new_weights, x, ["prob", "argmax"])
    assert _same_bits(old["prob"], new["prob"]) and _same_bits(old["argmax"], new["argmax"])
    assert old["argmax"].shape == (3, 1, 5)


def test_prediction_example_upgrade_keeps_its_data_layer_for_training(tmp_path, capsys):
    """upgrade keeps every layer whatever its phase; deploying it still needs --input-shape."""
    out_path = tmp_path / "upgraded.prototxt"
    _upgrade(capsys, _zoo(PREDICTION_EXAMPLE), "-o", out_path)
    types = [l.type for l in read_prototxt(out_path).layer]
    assert types == ["ImageData", "Convolution", "Pooling", "ReLU", "Convolution", "ReLU", "Pooling",
                     "Convolution", "ReLU", "Pooling", "InnerProduct", "InnerProduct", "Accuracy",
                     "SoftmaxWithLoss", "Softmax", "ArgMax"]
    net = load_net(out_path, input_shapes=(3, 3, 32, 32))
    assert [n.type for n in net.layers][0] == "Input"
    assert {t.blob: net.shapes[t] for t in net.outputs} == {"argmax": (3, 1, 5)}


@pytest.mark.pycaffe
def test_v0_caffemodel_upgrades_with_its_net(tmp_path, capsys):
    """A V0 weights file (blobs inside the nested V0 layer, legacy 4-D dims), made by hand."""
    from keraffe.verify.caffe_runtime import pycaffe_params

    original = _zoo("legacy_v0_lenet/lenet_v0.prototxt")
    v0 = read_prototxt(original)
    net = load_net(original)
    weights = _seeded_weights(net, seed=9)
    for connection in v0.layers:
        for array in weights.get(connection.layer.name, []):
            blob = connection.layer.blobs.add()
            dims = (1,) * (4 - array.ndim) + array.shape
            blob.num, blob.channels, blob.height, blob.width = dims
            blob.data.extend(array.ravel().tolist())
    v0_weights = tmp_path / "lenet_v0.caffemodel"
    v0_weights.write_bytes(v0.SerializeToString())

    read = read_weights(v0_weights)
    assert all(b.legacy for layer in read.layers.values() for b in layer.blobs)
    bound = load_net(original, read).weight_arrays()
    assert set(bound) == set(weights)
    for name, arrays in weights.items():
        assert all(_same_bits(a, b) for a, b in zip(bound[name], arrays)), name

    new_net, new_weights = tmp_path / "new.prototxt", tmp_path / "new.caffemodel"
    _upgrade(capsys, original, "-o", new_net, "--weights", v0_weights, "--weights-out", new_weights)
    held_old = pycaffe_params(original, v0_weights)
    held_new = pycaffe_params(new_net, new_weights)
    assert set(held_old) == set(held_new) == set(weights)
    for name, arrays in weights.items():
        assert all(_same_bits(a, b) for a, b in zip(held_old[name], arrays)), name
        assert all(_same_bits(a, b) for a, b in zip(held_new[name], arrays)), name
