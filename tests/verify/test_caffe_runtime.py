"""Real Caffe, run out of process, agrees with plain numpy and reports its errors.

The caffemodel for the small net is encoded by hand here (a few protobuf wire
rules) so these tests check the runtime against numpy without depending on
keraffe's own Caffe reader/writer, which they will later be used to verify.
"""

from __future__ import annotations

import pathlib
import struct

import numpy as np
import pytest

from keraffe.verify.caffe_runtime import (
    CaffeRuntimeError,
    pycaffe_available,
    pycaffe_blob_shapes,
    pycaffe_layer_types,
    pycaffe_params,
    run_pycaffe,
)

pytestmark = [
    pytest.mark.pycaffe,
    pytest.mark.skipif(
        not pycaffe_available(),
        reason="real Caffe not built: run tools/build_pycaffe.sh (or set KERAFFE_PYCAFFE)",
    ),
]

REPO = pathlib.Path(__file__).resolve().parents[2]
LENET = REPO.parent / "shared" / "zoo" / "lenet_mnist_trained"

SMALL_NET = """
name: "small"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "relu" }
layer { name: "ip" type: "InnerProduct" bottom: "relu" top: "ip"
        inner_product_param { num_output: 5 } }
"""


# --- a minimal caffemodel writer: NetParameter.layer(100) -> LayerParameter
# name(1), type(2), blobs(7) -> BlobProto data(5, packed float), shape(7) ->
# BlobShape dim(1, packed int64).


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _blob(arr: np.ndarray) -> bytes:
    shape = _field(1, b"".join(_varint(d) for d in arr.shape))
    data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
    return _field(7, shape) + _field(5, data)


def _caffemodel(layers: dict[str, tuple[str, list[np.ndarray]]]) -> bytes:
    out = b""
    for name, (ltype, blobs) in layers.items():
        layer = _field(1, name.encode()) + _field(2, ltype.encode())
        layer += b"".join(_field(7, _blob(b)) for b in blobs)
        out += _field(100, layer)
    return out


# --- numpy reference


def _conv2d_nchw(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, o, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            y[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return y + b[None, :, None, None]


def _reference(x, weights):
    (cw, cb), (iw, ib) = weights["conv"][1], weights["ip"][1]
    conv = _conv2d_nchw(x.astype(np.float64), cw, cb, stride=2, pad=1)
    relu = np.maximum(conv, 0)
    ip = relu.reshape(len(x), -1) @ iw.T.astype(np.float64) + ib  # Caffe flattens C, H, W
    return conv, relu, ip


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    rng = np.random.default_rng(0)
    weights = {
        "conv": ("Convolution", [rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                                 rng.standard_normal(4).astype(np.float32)]),
        "ip": ("InnerProduct", [rng.standard_normal((5, 36)).astype(np.float32),
                                rng.standard_normal(5).astype(np.float32)]),
    }
    d = tmp_path_factory.mktemp("small_net")
    (d / "net.prototxt").write_text(SMALL_NET)
    (d / "net.caffemodel").write_bytes(_caffemodel(weights))
    return d / "net.prototxt", d / "net.caffemodel", weights


def test_forward_matches_numpy(small_net):
    prototxt, caffemodel, weights = small_net
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    out = run_pycaffe(prototxt, caffemodel, {"data": x}, blobs=["conv", "relu", "ip"])
    conv, relu, ip = _reference(x, weights)
    assert list(out) == ["conv", "relu", "ip"]
    assert all(v.dtype == np.float32 for v in out.values())
    np.testing.assert_allclose(out["conv"], conv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["relu"], relu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["ip"], ip, rtol=1e-5, atol=1e-5)
    assert (out["relu"] == 0).any() and (out["relu"] > 0).any()  # ReLU really cut something


def test_default_blobs_are_net_outputs_and_inputs_reshape(small_net):
    prototxt, caffemodel, weights = small_net
    x = np.random.default_rng(2).standard_normal((3, 3, 6, 6))  # float64 and batch 3: both adapted
    out = run_pycaffe(prototxt, caffemodel, {"data": x})
    assert list(out) == ["ip"]
    assert out["ip"].shape == (3, 5)
    expect = _reference(x.astype(np.float32), weights)[2]
    np.testing.assert_allclose(out["ip"], expect, rtol=1e-5, atol=1e-5)


def test_blob_shapes_follow_caffe_setup(small_net):
    prototxt, _, _ = small_net
    shapes = pycaffe_blob_shapes(prototxt)
    assert list(shapes.items()) == [
        ("data", (2, 3, 6, 6)),
        ("conv", (2, 4, 3, 3)),
        ("relu", (2, 4, 3, 3)),
        ("ip", (2, 5)),
    ]


def test_params_are_the_caffemodel_weights(small_net):
    prototxt, caffemodel, weights = small_net
    params = pycaffe_params(prototxt, caffemodel)
    assert list(params) == ["conv", "ip"]
    for name, (_, blobs) in weights.items():
        assert len(params[name]) == len(blobs)
        for got, want in zip(params[name], blobs):
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_unknown_bottom_raises_with_caffe_message(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text(SMALL_NET.replace('bottom: "relu"', 'bottom: "nope"'))
    with pytest.raises(CaffeRuntimeError, match=r"Unknown bottom blob 'nope'") as info:
        pycaffe_blob_shapes(bad)
    assert "SIGABRT" in str(info.value)  # a CHECK abort, survived because it was another process


def test_prototxt_syntax_error_raises_with_parser_message(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text(SMALL_NET.replace("num_output: 4", "num_outputs: 4"))
    with pytest.raises(CaffeRuntimeError, match=r'no field named "num_outputs"'):
        run_pycaffe(bad)


def test_unknown_layer_type_raises(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text(SMALL_NET.replace('type: "ReLU"', 'type: "NoSuchLayer"'))
    with pytest.raises(CaffeRuntimeError, match=r"Unknown layer type: NoSuchLayer"):
        run_pycaffe(bad)


def test_weight_shape_mismatch_raises(small_net, tmp_path):
    prototxt, caffemodel, _ = small_net
    wide = tmp_path / "wide.prototxt"
    wide.write_text(SMALL_NET.replace("num_output: 5", "num_output: 6"))
    with pytest.raises(CaffeRuntimeError, match=r"shape mismatch"):
        run_pycaffe(wide, caffemodel)


def test_input_that_is_not_a_net_input_is_rejected(small_net):
    prototxt, caffemodel, _ = small_net
    with pytest.raises(CaffeRuntimeError, match=r"not net inputs.*\['data'\]"):
        run_pycaffe(prototxt, caffemodel, {"conv": np.zeros((2, 4, 3, 3), np.float32)})


def test_unknown_output_blob_is_rejected(small_net):
    prototxt, caffemodel, _ = small_net
    with pytest.raises(CaffeRuntimeError, match=r"\['nope'\] are not in the net"):
        run_pycaffe(prototxt, caffemodel, blobs=["nope"])


def test_layer_types_include_bvlc_and_ssd_layers():
    types = pycaffe_layer_types()
    assert {"Input", "Convolution", "InnerProduct", "ReLU", "Softmax", "BatchNorm", "Scale"} <= types
    assert {"PriorBox", "DetectionOutput", "Permute", "Normalize"} <= types  # SSD fork layers


@pytest.mark.skipif(not LENET.is_dir(), reason=f"zoo not present at {LENET}")
def test_zoo_lenet_softmax():
    x = np.zeros((2, 1, 28, 28), np.float32)
    x[1, 0, 4:24, 13:16] = 1.0  # a vertical stroke: a "1"
    weights = LENET / "lenet_iter_10000.caffemodel"
    out = run_pycaffe(LENET / "lenet.prototxt", weights, {"data": x})
    (prob,) = out.values()
    assert prob.shape == (2, 10)
    assert (prob >= 0).all()
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)
    assert prob[1].argmax() == 1


def test_layers_missing_from_caffemodel_keep_fillers_silently(small_net, tmp_path):
    # Caffe matches weights by layer name and does not complain about a layer
    # the caffemodel lacks; tests that compare against Caffe must not rely on
    # it to catch a writer that dropped a layer.
    prototxt, _, weights = small_net
    partial = tmp_path / "partial.caffemodel"
    partial.write_bytes(_caffemodel({"conv": weights["conv"]}))
    params = pycaffe_params(prototxt, partial)
    np.testing.assert_array_equal(params["conv"][0], weights["conv"][1][0])
    assert all((p == 0).all() for p in params["ip"])  # default constant-0 filler


def test_weights_given_as_arrays_run_like_the_caffemodel(small_net):
    """The path for weight files Caffe's reader refuses (over 512 MiB): arrays copied into net.params."""
    prototxt, caffemodel, weights = small_net
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 6)).astype(np.float32)
    from_file = run_pycaffe(prototxt, caffemodel, {"data": x}, blobs=["ip"])
    from_arrays = run_pycaffe(prototxt, None, {"data": x}, blobs=["ip"],
                              weights={name: arrays for name, (_, arrays) in weights.items()})
    np.testing.assert_array_equal(from_arrays["ip"], from_file["ip"])


def test_weights_of_the_wrong_size_are_refused(small_net):
    prototxt, _, weights = small_net
    bad = {"conv": [np.zeros((4, 3, 2, 2), np.float32), weights["conv"][1][1]]}
    with pytest.raises(CaffeRuntimeError, match="layer 'conv' blob 0"):
        run_pycaffe(prototxt, None, blobs=["ip"], weights=bad)
