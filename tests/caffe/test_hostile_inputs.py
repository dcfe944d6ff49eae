"""Caffe files that declare more than they hold: refused, with the layer's name, before anything is allocated.

Each bound of keraffe.limits as the Caffe readers apply it, and the minimised
inputs of the bugs the fuzzer (tests/fuzzing) found, written here by hand.
Allocation is measured with tracemalloc, which counts numpy's arrays.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from keraffe.caffe.binaryproto import read_mean
from keraffe.caffe.caffemodel import read_weights, write_caffemodel
from keraffe.caffe.net import load_net
from keraffe.caffe.prototxt import parse_prototxt, read_prototxt
from keraffe.caffe.wire import encode_key, encode_length_delimited, encode_varint
from keraffe.cli.main import main
from keraffe.errors import CaffeFormatError, LimitError, ShapeError
from keraffe.limits import DEFAULT_MAX_ELEMENTS, MAX_NESTING

INPUT = 'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'


def net(tmp_path, *layers: str, dims=(1, 3, 8, 8), name="net.prototxt"):
    path = tmp_path / name
    path.write_text(INPUT.format(dims=" ".join(f"dim: {d}" for d in dims)) + "".join(layers))
    return path


def ip(name: str, bottom: str, outputs: int) -> str:
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
            f"inner_product_param {{ num_output: {outputs} }} }}\n")


def peak_bytes(call) -> int:
    tracemalloc.start()
    try:
        try:
            call()
        except CaffeFormatError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------ declared shapes against the cap


def test_num_output_2147483647_without_weights_is_refused_with_the_layer(tmp_path):
    path = net(tmp_path, ip("ip", "data", 2147483647))
    with pytest.raises(LimitError, match=r"layer 'ip' \(InnerProduct\) top 'ip' declares shape \(1, 2147483647\)"):
        load_net(path)


def test_a_100000_by_100000_input_is_refused_with_the_layer(tmp_path):
    path = net(tmp_path, 'layer { name: "r" type: "ReLU" bottom: "data" top: "data" }\n', dims=(100000, 100000))
    with pytest.raises(LimitError, match=r"layer 'data' \(Input\) top 'data' declares shape \(100000, 100000\): "
                                         r"10,000,000,000 values"):
        load_net(path)
    with pytest.raises(LimitError, match=r"layer 'data' \(Input\)"):
        load_net(net(tmp_path, dims=(1, 3, 8, 8), name="small.prototxt"), input_shapes=(1, 3, 100000, 100000))


def test_a_weight_blob_over_the_cap_is_refused(tmp_path):
    # The top is small (1 x 30000); the weights are 30000 x 30000 = 900 million values.
    path = net(tmp_path, ip("ip", "data", 30000), dims=(1, 30000))
    with pytest.raises(LimitError, match=r"layer 'ip' \(InnerProduct\) weight blob 0 declares shape \(30000, 30000\)"):
        load_net(path)


def test_weights_over_the_cap_in_total_are_refused(tmp_path):
    layers = [ip(f"ip{i}", "data" if i == 0 else f"ip{i - 1}", 12000) for i in range(3)]
    path = net(tmp_path, *layers, dims=(1, 12000))  # 3 blobs of 144 million: each under the cap, not together
    with pytest.raises(LimitError, match=r"the net's weights declares 432,036,000 values in total"):
        load_net(path)


def test_max_elements_raises_and_lowers_the_cap(tmp_path):
    big = net(tmp_path, ip("ip", "data", 2147483647))
    loaded = load_net(big, max_elements=2**40)  # shape inference allocates nothing
    assert loaded.shapes[loaded.layers[-1].outputs[0]] == (1, 2147483647)
    with pytest.raises(LimitError, match="cap of 100 per tensor"):
        load_net(net(tmp_path, name="small.prototxt"), max_elements=100)


def test_max_elements_on_the_command_line(tmp_path, capsys):
    big = net(tmp_path, ip("ip", "data", 2147483647))
    assert main(["inspect", str(big)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("keraffe inspect: error: ") and "--max-elements" in err and "'ip'" in err
    assert main(["inspect", str(big), "--max-elements", "1_000_000_000_000", "--json"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["inspect", str(big), "--max-elements", "0"])


def test_caffe_to_keras_refuses_before_any_keras_variable(tmp_path, monkeypatch):
    import keraffe
    import keraffe.convert.caffe_to_keras as converter

    def never(*args, **kwargs):
        raise AssertionError("the converter must not start on a net over the cap")

    monkeypatch.setattr(converter, "convert_net", never)
    with pytest.raises(LimitError, match="layer 'ip'"):
        keraffe.caffe_to_keras(net(tmp_path, ip("ip", "data", 2147483647)))


# ------------------------------------------------------------------ declared weights against the weights file


def test_weights_that_cannot_fit_the_file_are_refused_before_it_is_read(tmp_path, monkeypatch):
    text = INPUT.format(dims="dim: 1 dim: 3 dim: 8 dim: 8") + ip("small", "data", 2) + ip("big", "small", 4_000_000)
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    weights = tmp_path / "w.caffemodel"
    write_caffemodel(weights, parse_prototxt(text), {"small": [np.zeros((2, 192), np.float32), np.zeros(2, np.float32)]})
    import keraffe.caffe.net as net_module

    monkeypatch.setattr(net_module, "read_weights", lambda *a: pytest.fail("the weights file was read"))
    with pytest.raises(ShapeError, match=rf"{weights}: layer 'big' \(InnerProduct\) declares 12,000,000 weight values, "
                                         rf"which cannot fit this weights file of [\d,]+ bytes"):
        load_net(path, weights)


# ------------------------------------------------------------------ prototxt nesting (and a fuzzer finding)


def test_prototxt_nesting_is_bounded(tmp_path):
    path = tmp_path / "deep.prototxt"
    path.write_text('name: "x"\n' + "layer { " * 100_000)
    with pytest.raises(CaffeFormatError, match=rf"deep.prototxt:2:\d+: messages nested more than {MAX_NESTING} deep"):
        read_prototxt(path)
    closed = tmp_path / "closed.prototxt"
    closed.write_text("layer { convolution_param { " * 40 + "} } " * 40)
    with pytest.raises(CaffeFormatError, match="nested more than"):
        read_prototxt(closed)


def test_braces_in_strings_and_comments_do_not_count(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text('name: "' + "{" * 100 + '" # ' + "{" * 100 + "\n" + INPUT.format(dims="dim: 1"))
    assert read_prototxt(path).name == "{" * 100


def test_unterminated_string_before_deep_nesting_reads_in_bounded_memory(tmp_path):
    """Fuzzer finding: the nesting scan's string pattern kept a backtracking record per character of an
    unterminated string: 100 MB to read an 800 KB prototxt."""
    path = tmp_path / "n.prototxt"
    path.write_text('layer {\n  type: "' + "layer { " * 100_000)
    size = path.stat().st_size
    assert peak_bytes(lambda: read_prototxt(path)) < 4 * size


# ------------------------------------------------------------------ caffemodel blobs (fuzzer findings)


def _caffemodel(tmp_path, blob: bytes):
    layer = encode_length_delimited(1, 2) + b"ip" + encode_length_delimited(7, len(blob)) + blob
    path = tmp_path / "w.caffemodel"
    path.write_bytes(encode_length_delimited(100, len(layer)) + layer)
    return path


def _legacy_dims(*dims: int) -> bytes:
    return b"".join(encode_key(field, 0) + encode_varint(d) for field, d in zip((1, 2, 3, 4), dims))


def _floats(count: int) -> bytes:
    return encode_length_delimited(5, 4 * count) + np.ones(count, "<f4").tobytes()


def test_negative_legacy_dims_are_refused(tmp_path):
    """Was a numpy ValueError: (-1, -1, 1, 1) has a product of 1, and reshape read -1 as 'infer'."""
    with pytest.raises(CaffeFormatError, match=r"layer 'ip', blob 0: blob declares shape \(-1, -1, 1, 1\), "
                                               "with a negative axis"):
        read_weights(_caffemodel(tmp_path, _legacy_dims(-1, -1, 1, 1) + _floats(1)))


def test_dims_whose_product_wraps_around_are_refused(tmp_path):
    """Was a numpy ValueError: numpy's product of (2**62, 4, 1, 1) wraps to 0, which matched an empty blob."""
    with pytest.raises(CaffeFormatError, match=r"\(4611686018427387904, 4, 1, 1\) \(18446744073709551616 values\) "
                                               "but holds 0 values"):
        read_weights(_caffemodel(tmp_path, _legacy_dims(2**62, 4, 1, 1)))


def test_negative_dims_in_a_mean_file_are_refused(tmp_path):
    path = tmp_path / "mean.binaryproto"
    path.write_bytes(_legacy_dims(-1, -1, 1, 1) + _floats(1))
    with pytest.raises(CaffeFormatError, match="with a negative axis"):
        read_mean(path)


def test_a_huge_length_varint_allocates_nothing(tmp_path):
    blob = _legacy_dims(1, 1, 1, 4) + encode_key(5, 2) + encode_varint(2**62) + b"\0" * 16
    path = _caffemodel(tmp_path, blob)
    assert peak_bytes(lambda: read_weights(path)) < 1 << 20
    with pytest.raises(CaffeFormatError, match="runs past the end of its blob"):
        read_weights(path)


def test_unpacked_floats_stay_within_a_small_multiple_of_the_file(tmp_path):
    """One float per field used to cost a Python bytes object each: about 10 times the file."""
    count = 500_000
    unpacked = b"".join(encode_key(5, 5) + np.float32(i).tobytes() for i in range(count))
    path = _caffemodel(tmp_path, _legacy_dims(1, 1, 1, count) + unpacked)
    size = path.stat().st_size
    assert peak_bytes(lambda: read_weights(path)) < 3 * size
    assert read_weights(path).layers["ip"].blobs[0].data[0, 0, 0, -1] == count - 1


# ------------------------------------------------------------------ .caffemodel.h5 datasets


def _h5_weights(tmp_path, make):
    import h5py

    path = tmp_path / "w.caffemodel.h5"
    with h5py.File(path, "w") as handle:
        make(handle.create_group("data").create_group("ip"))
    return path


def test_hdf5_blob_of_absurd_declared_shape_is_refused_unread(tmp_path):
    path = _h5_weights(tmp_path, lambda g: g.create_dataset("0", shape=(100000, 100000), dtype="f4", fillvalue=1.0))
    assert path.stat().st_size < 10_000
    with pytest.raises(LimitError, match=r"layer 'ip' blob 0 declares shape \(100000, 100000\)"):
        read_weights(path)
    assert peak_bytes(lambda: pytest.raises(LimitError, read_weights, path)) < 1 << 20


def test_hdf5_blob_of_compressed_zeros_is_refused_unread(tmp_path):
    # 64 million zeros (256 MB) under the cap, gzip-compressed to a few hundred kilobytes.
    path = _h5_weights(tmp_path, lambda g: g.create_dataset("0", shape=(8000, 8000), dtype="f4", chunks=(1000, 1000),
                                                            compression="gzip", fillvalue=0.0))
    with pytest.raises(LimitError, match=r"layer 'ip' blob 0 would expand from [\d,]+ stored bytes to 256,000,000"):
        read_weights(path)


def test_hdf5_blob_that_is_not_numbers_is_refused(tmp_path):
    path = _h5_weights(tmp_path, lambda g: g.create_dataset("0", data=np.array([b"x", b"y"])))
    with pytest.raises(CaffeFormatError, match=r"layer 'ip' blob 0 is not an array of numbers"):
        read_weights(path)


def test_default_cap_is_documented_in_the_cli_help(capsys):
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    assert f"{DEFAULT_MAX_ELEMENTS:,}" in capsys.readouterr().out


def test_hdf5_weights_with_a_corrupt_btree_are_refused(tmp_path):
    """Fuzzer finding: h5py raised RuntimeError ("wrong B-tree signature") from the first look into the file."""
    path = _h5_weights(tmp_path, lambda g: g.create_dataset("0", data=np.ones(4, np.float32)))
    data = bytearray(path.read_bytes())
    # A group's B-tree nodes start with the signature TREE; damaging every one stops any lookup.
    position = data.find(b"TREE")
    assert position > 0
    while position >= 0:
        data[position:position + 4] = b"XXXX"
        position = data.find(b"TREE", position + 4)
    path.write_bytes(bytes(data))
    with pytest.raises(CaffeFormatError, match=r"the HDF5 file is corrupt \(.*B-tree"):
        read_weights(path)
