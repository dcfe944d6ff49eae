"""Zoo weight files: read, write back, read again; real Caffe loads what keraffe writes.

For every zoo caffemodel:

* keraffe's rewrite (``write_caffemodel(weights.net, weights.blobs())``) reads
  back to the same layers, types, blob shapes and bit-identical floats, and
  rewriting the rewrite gives the same bytes;
* real Caffe loads the rewrite with the matching zoo prototxt, holds exactly
  the arrays keraffe bound to the net (``pycaffe_params``: Caffe keeps filler
  values for layers a file lacks, so outputs alone would not show a lost
  layer), and computes bit-identical outputs from the original and the
  rewritten file on a seeded input.

The HDF5 weights (``.caffemodel.h5``) are checked against h5py directly and
run in real Caffe after a rewrite as binary; this brocolli build turned out to
read HDF5 weights itself as well, so they are compared with that too. fp16 ``raw_data`` blobs, which brocolli cannot read at all, are
built by hand with protobuf messages of keraffe's schema.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from keraffe.caffe.caffemodel import read_weights, write_caffemodel
from keraffe.caffe.net import load_net
from keraffe.caffe.prototxt import Dialect, format_prototxt
from keraffe.caffe.proto import caffe_pb2 as pb
from zoo_nets import ZOO


@dataclasses.dataclass(frozen=True)
class ZooWeights:
    caffemodel: str
    #: The zoo prototxt it goes with (zoo README); MTCNN's nets are named differently from their files.
    prototxt: str
    #: Load arguments for the prototxt (train/val nets).
    load_args: dict = dataclasses.field(default_factory=dict)
    #: Layer types to hand real Caffe under another name it knows (same computation).
    caffe_type_aliases: dict = dataclasses.field(default_factory=dict)


WEIGHTS = [
    ZooWeights("cifar10_quick_impact_scar_trained/cifar10_impact_scar_quick_iter_10000.caffemodel",
               "cifar10_quick_impact_scar_trained/cifar10_quick.prototxt"),
    # The 2015 V1 file with legacy 4-D blob dims; its own net is the V1 prediction_example.
    ZooWeights("cifar10_quick_trained/cifar10_quick_iter_5000.caffemodel",
               "cifar10_quick_trained/prediction_example.prototxt", {"input_shapes": (1, 3, 32, 32)}),
    ZooWeights("hyperlpr_char_recognization/CharacterRecognization.caffemodel",
               "hyperlpr_char_recognization/CharacterRecognization.prototxt"),
    ZooWeights("hyperlpr_finemapping/HorizonalFinemapping_fp32_git.caffemodel",
               "hyperlpr_finemapping/HorizonalFinemapping.prototxt"),
    ZooWeights("hyperlpr_segmentation/Segmentation.caffemodel", "hyperlpr_segmentation/Segmentation.prototxt"),
    ZooWeights("lenet_mnist_trained/lenet_iter_10000.caffemodel", "lenet_mnist_trained/lenet.prototxt"),
    # MobileNet-YOLO's DepthwiseConvolution is a grouped Convolution (group is set in the file).
    ZooWeights("mobilenet_yolov3_lite_tusimple/mobilenet_yolov3_lite_deploy_iter_50000.caffemodel",
               "mobilenet_yolov3_lite_tusimple/mobilenet_yolov3_lite_deploy.prototxt",
               caffe_type_aliases={"DepthwiseConvolution": "Convolution"}),
    ZooWeights("mtcnn/det1.caffemodel", "mtcnn/det1.prototxt"),
    ZooWeights("mtcnn/det2.caffemodel", "mtcnn/det2.prototxt"),
    ZooWeights("mtcnn/det3.caffemodel", "mtcnn/det3.prototxt"),
    ZooWeights("mtcnn/det4.caffemodel", "mtcnn/det4.prototxt"),
    ZooWeights("ultraface_rfb320/RFB-320.caffemodel", "ultraface_rfb320/RFB-320.prototxt"),
    ZooWeights("ultraface_slim320/slim-320.caffemodel", "ultraface_slim320/slim-320.prototxt"),
    ZooWeights("vanilla_cnn_landmarks/vanillaCNN.caffemodel", "vanilla_cnn_landmarks/vanilla_deploy.prototxt"),
    ZooWeights("yufacedetectnet_v1/yufacedetectnet-open-v1.caffemodel",
               "yufacedetectnet_v1/yufacedetectnet-open-v1.prototxt"),
    ZooWeights("yufacedetectnet_v2/yufacedetectnet-open-v2.caffemodel",
               "yufacedetectnet_v2/yufacedetectnet-open-v2.prototxt"),
]
IDS = [w.caffemodel.split("/")[-1] for w in WEIGHTS]
H5 = "cifar10_quick_hdf5_caffemodel/cifar10_quick_iter_5000.caffemodel.h5"
H5_PROTOTXT = "cifar10_quick_hdf5_caffemodel/cifar10_quick.prototxt"


def _zoo(rel: str):
    if not ZOO.is_dir():
        pytest.skip(f"model zoo not found at {ZOO} (it lives beside the repository, in ../shared/zoo)")
    path = ZOO / rel
    assert path.is_file(), f"zoo file missing: {path}"
    return path


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes and bit-identical float32 values (NaN and -0.0 included)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_every_zoo_caffemodel_is_listed():
    _zoo("README.md")
    found = sorted(str(p.relative_to(ZOO)) for p in ZOO.rglob("*.caffemodel*"))
    assert found == sorted([w.caffemodel for w in WEIGHTS] + [H5])


# ------------------------------------------------------------------ keraffe alone


@pytest.mark.parametrize("entry", WEIGHTS, ids=IDS)
def test_read_write_read_reproduces_the_file(entry, tmp_path):
    original = read_weights(_zoo(entry.caffemodel))
    first = tmp_path / "first.caffemodel"
    write_caffemodel(first, original.net, original.blobs())
    again = read_weights(first)

    assert again.net_name == original.net_name
    assert list(again.layers) == list(original.layers)
    assert [l.type for l in again.layers.values()] == [l.type for l in original.layers.values()]
    for name, layer in original.layers.items():
        blobs = again.layers[name].blobs
        assert len(blobs) == len(layer.blobs), name
        for i, (ours, theirs) in enumerate(zip(blobs, layer.blobs)):
            assert ours.legacy == theirs.legacy, (name, i)
            assert same_bits(ours.data, theirs.data), (name, i)
    # The non-weight part of the file survives too (as its V2 form).
    assert again.net.SerializeToString(deterministic=True) == original.net.SerializeToString(deterministic=True)

    # Writing what was read from keraffe's own file gives the same bytes.
    second = tmp_path / "second.caffemodel"
    write_caffemodel(second, again.net, again.blobs())
    assert second.read_bytes() == first.read_bytes()

    # Plain arrays keep every value too (legacy blobs then get a shape field).
    plain = tmp_path / "plain.caffemodel"
    write_caffemodel(plain, original.net, original.arrays())
    from_arrays = read_weights(plain)
    for name, arrays in original.arrays().items():
        assert all(same_bits(a, b) for a, b in zip(from_arrays.arrays()[name], arrays)), name


@pytest.mark.parametrize("entry", WEIGHTS, ids=IDS)
def test_zoo_weights_bind_to_their_prototxt(entry):
    """Every blob of every layer the net has is bound, by name, in the layer's own shape."""
    weights = read_weights(_zoo(entry.caffemodel))
    net = load_net(_zoo(entry.prototxt), weights, **entry.load_args)
    bound = net.weight_arrays()
    for node in net.layers:
        if node.shapes.params:
            assert node.name in bound, node.name
            assert [w.shape for w in bound[node.name]] == [tuple(s) for s in node.shapes.params[: len(bound[node.name])]]
    assert set(bound) == {n for n in weights.layers if weights.layers[n].blobs and any(l.name == n for l in net.layers)}


# ------------------------------------------------------------------ real Caffe


def _caffe_prototxt(entry: ZooWeights, net, tmp_path):
    """The prototxt to hand real Caffe: the zoo file, or keraffe's rewrite where brocolli needs one."""
    if not entry.load_args and not entry.caffe_type_aliases:
        return _zoo(entry.prototxt)
    message = net.to_net_parameter()
    for layer in message.layer:
        layer.type = entry.caffe_type_aliases.get(layer.type, layer.type)
    path = tmp_path / "for_caffe.prototxt"
    path.write_text(format_prototxt(message, Dialect.FORK))
    return path


def _seeded_inputs(net, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {t.blob: rng.uniform(-1, 1, net.shapes[t]).astype(np.float32) for t in net.inputs}


@pytest.mark.pycaffe
@pytest.mark.parametrize("entry", WEIGHTS, ids=IDS)
def test_real_caffe_loads_the_rewrite(entry, tmp_path):
    from keraffe.verify.caffe_runtime import pycaffe_params, run_pycaffe

    original_path = _zoo(entry.caffemodel)
    original = read_weights(original_path)
    rewritten = tmp_path / "rewritten.caffemodel"
    write_caffemodel(rewritten, original.net, original.blobs())

    net = load_net(_zoo(entry.prototxt), original, **entry.load_args)
    prototxt = _caffe_prototxt(entry, net, tmp_path)

    caffe_params = pycaffe_params(prototxt, rewritten)
    ours = net.weight_arrays()
    assert set(caffe_params) == set(ours), "layers whose weights Caffe holds differ from keraffe's"
    for name, arrays in ours.items():
        assert len(caffe_params[name]) == len(arrays), name
        for i, (theirs, mine) in enumerate(zip(caffe_params[name], arrays)):
            assert same_bits(theirs, mine), (name, i)

    inputs = _seeded_inputs(net)
    blobs = [t.blob for t in net.outputs]
    from_original = run_pycaffe(prototxt, original_path, inputs, blobs)
    from_rewrite = run_pycaffe(prototxt, rewritten, inputs, blobs)
    for blob in blobs:
        assert np.isfinite(from_original[blob]).all()
        assert same_bits(from_original[blob], from_rewrite[blob]), blob


# ------------------------------------------------------------------ HDF5 weights


def test_hdf5_weights_equal_h5py():
    import h5py

    path = _zoo(H5)
    weights = read_weights(path)
    with h5py.File(path, "r") as handle:
        expected = {}
        for name, group in handle["data"].items():
            if len(group):
                expected[name] = [np.asarray(group[str(i)]) for i in range(len(group))]
    assert set(weights.layers) == set(expected)
    for name, arrays in expected.items():
        ours = weights.arrays()[name]
        assert len(ours) == len(arrays)
        assert all(same_bits(a, b) for a, b in zip(ours, arrays)), name
    net = load_net(_zoo(H5_PROTOTXT), weights)
    assert set(net.weight_arrays()) == {"conv1", "conv2", "conv3", "ip1", "ip2"}


@pytest.mark.pycaffe
def test_hdf5_weights_run_in_caffe_after_rewrite_as_binary(tmp_path):
    from keraffe.verify.caffe_runtime import pycaffe_params, run_pycaffe

    path = _zoo(H5)
    prototxt = _zoo(H5_PROTOTXT)
    weights = read_weights(path)
    net = load_net(prototxt, weights)
    binary = tmp_path / "from_h5.caffemodel"
    write_caffemodel(binary, net.to_net_parameter(), net.weight_arrays())

    caffe_params = pycaffe_params(prototxt, binary)
    assert set(caffe_params) == set(weights.layers)
    for name, arrays in weights.arrays().items():
        assert all(same_bits(a, b) for a, b in zip(caffe_params[name], arrays)), name

    inputs = _seeded_inputs(net)
    out = run_pycaffe(prototxt, binary, inputs, ["prob"])["prob"]
    assert out.shape == (1, 10) and np.isfinite(out).all()
    assert abs(float(out.sum()) - 1.0) < 1e-5

    # Measured fact: this brocolli build links libhdf5 and reads .caffemodel.h5
    # itself (the brief expected USE_HDF5 off). So compare with it directly too.
    direct = pycaffe_params(prototxt, path)
    for name, arrays in weights.arrays().items():
        assert all(same_bits(a, b) for a, b in zip(direct[name], arrays)), name
    from_h5 = run_pycaffe(prototxt, path, inputs, ["prob"])["prob"]
    assert same_bits(from_h5, out)


NESTED_NAMES_NET = """
name: "nested"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv0" type: "Convolution" bottom: "data" top: "conv0" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "conv0/bn" type: "BatchNorm" bottom: "conv0" top: "conv0" }
layer { name: "conv0/scale" type: "Scale" bottom: "conv0" top: "conv0" scale_param { bias_term: true } }
"""


def _write_caffe_style_h5(path, weights: dict) -> None:
    """HDF5 weights laid out as Caffe's Net::ToHDF5 does: layer 'a/b' is group 'b' inside group 'a'."""
    import h5py

    with h5py.File(path, "w") as handle:
        data = handle.create_group("data")
        handle.create_group("diff")
        for name, arrays in weights.items():
            group = data.require_group(name)
            for i, array in enumerate(arrays):
                group.create_dataset(str(i), data=array)


@pytest.fixture
def nested_names(tmp_path):
    prototxt = tmp_path / "nested.prototxt"
    prototxt.write_text(NESTED_NAMES_NET)
    rng = np.random.default_rng(11)
    weights = {
        "conv0": [rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)],
        "conv0/bn": [rng.standard_normal(4).astype(np.float32), rng.uniform(1, 2, 4).astype(np.float32),
                     np.ones(1, np.float32)],
        "conv0/scale": [rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)],
    }
    h5 = tmp_path / "nested.caffemodel.h5"
    _write_caffe_style_h5(h5, weights)
    return prototxt, h5, weights


def test_hdf5_layer_whose_name_prefixes_another(nested_names):
    """'conv0' and 'conv0/bn' share a group in the file; both keep their blobs."""
    prototxt, h5, weights = nested_names
    read = read_weights(h5).arrays()
    assert set(read) == set(weights)
    for name, arrays in weights.items():
        assert all(same_bits(a, b) for a, b in zip(read[name], arrays)), name
    assert set(load_net(prototxt, h5).weight_arrays()) == set(weights)


CAFFE_SAVES_BOTH = """
import sys
import caffe
caffe.set_random_seed(5)
net = caffe.Net(sys.argv[1], caffe.TEST)
net.save(sys.argv[2])
net.save_hdf5(sys.argv[3])
"""


@pytest.mark.pycaffe
def test_hdf5_written_by_real_caffe_equals_its_binary_save(nested_names, tmp_path):
    """Real Caffe saves one net both ways; keraffe reads the same numbers from both files.

    Measured fact: brocolli cannot load this HDF5 file back (it counts the
    'bn' and 'scale' subgroups of group 'conv0' as blobs of conv0: "Incompatible
    number of blobs for layer conv0"); keraffe can.
    """
    import subprocess
    import sys

    from keraffe.verify.caffe_runtime import CaffeRuntimeError, find_pycaffe, pycaffe_params

    prototxt = nested_names[0].read_text().replace(
        "kernel_size: 3 }", 'kernel_size: 3 weight_filler { type: "gaussian" std: 1 } '
        'bias_filler { type: "gaussian" std: 1 } }')
    net_path = tmp_path / "filled.prototxt"
    net_path.write_text(prototxt)
    binary, h5 = tmp_path / "saved.caffemodel", tmp_path / "saved.caffemodel.h5"
    env = dict(__import__("os").environ, PYTHONPATH=str(find_pycaffe()), GLOG_minloglevel="2")
    subprocess.run([sys.executable, "-c", CAFFE_SAVES_BOTH, str(net_path), str(binary), str(h5)],
                   env=env, check=True, capture_output=True, cwd=tmp_path)

    from_binary, from_h5 = read_weights(binary).arrays(), read_weights(h5).arrays()
    with_blobs = {name for name, arrays in from_binary.items() if arrays}
    assert with_blobs == set(from_h5) == {"conv0", "conv0/bn", "conv0/scale"}
    for name in with_blobs:
        assert all(same_bits(a, b) for a, b in zip(from_binary[name], from_h5[name])), name
    assert np.abs(from_h5["conv0"][0]).max() > 0  # the gaussian filler, not zeros

    held = pycaffe_params(net_path, binary)
    assert all(same_bits(a, b) for name in held for a, b in zip(held[name], from_h5[name]))
    with pytest.raises(CaffeRuntimeError, match="Incompatible number of blobs for layer conv0"):
        pycaffe_params(net_path, h5)


# ------------------------------------------------------------------ blob encodings


def _hand_made_caffemodel(path, values: dict[str, np.ndarray]) -> None:
    """One PReLU-free net whose blobs use every float encoding Caffe files contain."""
    net = pb.NetParameter(name="encodings")
    layer = net.layer.add(name="ip", type="InnerProduct")
    layer.inner_product_param.num_output = values["weight"].shape[0]
    weight = layer.blobs.add(raw_data_type=pb.FLOAT16, raw_data=values["weight"].astype("<f2").tobytes())
    weight.shape.dim.extend(values["weight"].shape)
    bias = layer.blobs.add(raw_data_type=pb.FLOAT16, raw_data=values["bias"].astype("<f2").tobytes())
    bias.shape.dim.extend(values["bias"].shape)
    other = net.layer.add(name="scale", type="Scale")
    doubles = other.blobs.add(raw_data_type=pb.DOUBLE, raw_data=values["scale"].astype("<f8").tobytes())
    doubles.shape.dim.extend(values["scale"].shape)
    shift = other.blobs.add()
    shift.double_data.extend(values["shift"].astype(np.float64).tolist())
    shift.shape.dim.extend(values["shift"].shape)
    path.write_bytes(net.SerializeToString())


def test_fp16_and_double_blobs_read_correctly(tmp_path):
    rng = np.random.default_rng(7)
    values = {
        "weight": rng.standard_normal((5, 12)).astype(np.float16),
        "bias": np.array([0.0, -0.0, 65504.0, 6.1e-5, np.inf], dtype=np.float16),
        "scale": rng.standard_normal(4),
        "shift": rng.standard_normal(4),
    }
    path = tmp_path / "encodings.caffemodel"
    _hand_made_caffemodel(path, values)
    weights = read_weights(path)
    ip, scale = weights.arrays()["ip"], weights.arrays()["scale"]
    assert all(a.dtype == np.float32 for a in ip + scale)
    assert same_bits(ip[0], values["weight"].astype(np.float32))
    assert same_bits(ip[1], values["bias"].astype(np.float32))
    assert same_bits(scale[0], values["scale"].astype(np.float32))
    assert same_bits(scale[1], values["shift"].astype(np.float32))


def test_unpacked_and_split_float_data_read_correctly(tmp_path):
    """Old writers emitted repeated floats unpacked, or in several packed runs; both are valid protobuf."""
    from keraffe.caffe.wire import WIRE_FIXED32, encode_key, encode_length_delimited

    values = np.arange(6, dtype="<f4") * np.float32(0.5)
    unpacked = b"".join(encode_key(5, WIRE_FIXED32) + v.tobytes() for v in values)
    runs = (encode_length_delimited(5, 8) + values[:2].tobytes()
            + encode_length_delimited(5, 16) + values[2:].tobytes())
    for name, payload in (("unpacked", unpacked), ("runs", runs)):
        shape = encode_length_delimited(1, 2) + bytes([2, 3])
        blob = payload + encode_length_delimited(7, len(shape)) + shape
        layer = (encode_length_delimited(1, 1) + b"s" + encode_length_delimited(2, 5) + b"Scale"
                 + encode_length_delimited(7, len(blob)) + blob)
        path = tmp_path / f"{name}.caffemodel"
        path.write_bytes(encode_length_delimited(100, len(layer)) + layer)
        assert same_bits(read_weights(path).arrays()["s"][0], values.reshape(2, 3)), name


@pytest.mark.pycaffe
def test_fp16_weights_run_in_caffe_after_rewrite(tmp_path):
    """brocolli cannot read fp16 raw_data; keraffe's float32 rewrite of it gives Caffe the same numbers."""
    from keraffe.verify.caffe_runtime import pycaffe_params, run_pycaffe

    rng = np.random.default_rng(3)
    values = {"weight": rng.standard_normal((5, 12)).astype(np.float16),
              "bias": rng.standard_normal(5).astype(np.float16),
              "scale": rng.standard_normal(5), "shift": rng.standard_normal(5)}
    fp16 = tmp_path / "fp16.caffemodel"
    _hand_made_caffemodel(fp16, values)
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 12 } } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 5 } }\n'
        'layer { name: "scale" type: "Scale" bottom: "y" top: "z" scale_param { bias_term: true } }\n')
    net = load_net(prototxt, fp16)
    fp32 = tmp_path / "fp32.caffemodel"
    write_caffemodel(fp32, net.to_net_parameter(), net.weight_arrays())

    params = pycaffe_params(prototxt, fp32)
    assert same_bits(params["ip"][0], values["weight"].astype(np.float32))
    assert same_bits(params["ip"][1], values["bias"].astype(np.float32))
    assert same_bits(params["scale"][0], values["scale"].astype(np.float32))

    x = rng.uniform(-1, 1, (2, 12)).astype(np.float32)
    z = run_pycaffe(prototxt, fp32, {"x": x}, ["z"])["z"]
    w = values["weight"].astype(np.float64)
    expected = (x @ w.T + values["bias"].astype(np.float64)) * values["scale"].astype(np.float32) \
        + values["shift"].astype(np.float32)
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5)
