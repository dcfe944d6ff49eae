"""Damaged weight files are CaffeFormatErrors: never another exception, never a huge allocation.

A seeded fuzzer flips bytes, cuts files short and inserts junk in two zoo
caffemodels (a V2 file and the 2015 V1 file with legacy blobs); every result
must either read or raise CaffeFormatError, which the CLI turns into one
message. Hand-made files cover what random damage rarely reaches: lengths
of terabytes, payloads that are not whole values, corrupt nested messages.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from keraffe.caffe.binaryproto import read_mean
from keraffe.caffe.caffemodel import read_weights
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.wire import WIRE_FIXED32, WIRE_VARINT, encode_key, encode_length_delimited, encode_varint
from keraffe.errors import CaffeFormatError
from zoo_nets import ZOO

FUZZ_SOURCES = ["mtcnn/det1.caffemodel", "cifar10_quick_trained/cifar10_quick_iter_5000.caffemodel"]


def _zoo(rel):
    if not ZOO.is_dir():
        pytest.skip(f"model zoo not found at {ZOO} (it lives beside the repository, in ../shared/zoo)")
    return ZOO / rel


def _damage(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    mode = rng.randrange(3)
    if mode == 0:
        # Damage is most telling in the first kilobytes, where the structure is.
        for _ in range(rng.randrange(1, 6)):
            out[rng.randrange(min(len(out), 4096))] = rng.randrange(256)
    elif mode == 1:
        out = out[: rng.randrange(1, len(out))]
    else:
        at = rng.randrange(min(len(out), 4096))
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    return bytes(out)


@pytest.mark.parametrize("source", FUZZ_SOURCES, ids=["v2_det1", "v1_legacy_cifar10"])
def test_damaged_files_raise_only_caffe_format_errors(source, tmp_path):
    data = _zoo(source).read_bytes()
    rng = random.Random(20261125)
    path = tmp_path / "damaged.caffemodel"
    outcomes = {"read": 0, "refused": 0}
    for _ in range(400):
        path.write_bytes(_damage(data, rng))
        try:
            read_weights(path)
        except CaffeFormatError as error:
            assert str(path) in str(error)
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
    assert outcomes["refused"] > 100


def _layer(name: bytes, blob: bytes, blob_length: int | None = None) -> bytes:
    length = len(blob) if blob_length is None else blob_length
    layer = encode_length_delimited(1, len(name)) + name + encode_key(7, 2) + encode_varint(length) + blob
    return encode_length_delimited(100, len(layer)) + layer


def _shape(*dims) -> bytes:
    packed = b"".join(encode_varint(d) for d in dims)
    inner = encode_length_delimited(1, len(packed)) + packed
    return encode_length_delimited(7, len(inner)) + inner


HAND_MADE = {
    "float_data_of_a_terabyte": (_layer(b"a", encode_key(5, 2) + encode_varint(2**40)),
                                 "runs past the end of its blob"),
    "blob_of_a_terabyte": (_layer(b"a", encode_key(5, 2) + encode_varint(2**39), blob_length=2**40),
                           "runs past the end of its layer"),
    "float_data_not_whole_floats": (_layer(b"a", encode_length_delimited(5, 6) + b"\0" * 6),
                                    "is not whole floats"),
    "double_data_not_whole_doubles": (_layer(b"a", encode_length_delimited(8, 12) + b"\0" * 12),
                                      "is not whole doubles"),
    "fp16_raw_data_odd_length": (_layer(b"a", encode_key(10, WIRE_VARINT) + encode_varint(pb.FLOAT16)
                                        + encode_length_delimited(12, 3) + b"\0\x3c\0"),
                                 "is not whole 2-byte values"),
    "int_raw_data": (_layer(b"a", encode_key(10, WIRE_VARINT) + encode_varint(pb.INT)
                            + encode_length_delimited(12, 4) + b"\0" * 4), "is not a float type"),
    "corrupt_blob_shape": (_layer(b"a", encode_length_delimited(7, 3) + b"\x0a\x05\x01"), "shape is corrupt"),
    "shape_and_values_disagree": (_layer(b"a", encode_length_delimited(5, 8) + b"\0" * 8 + _shape(3)),
                                  "declares shape (3,) (3 values) but holds 2 values"),
    "field_number_zero": (encode_key(0, WIRE_VARINT) + b"\x01", "not a valid Caffe weights file"),
    "wire_type_seven": (bytes([0x0F, 0x00]), "unsupported wire type 7"),
    "varint_too_long": (bytes([0x08]) + b"\xff" * 11, "varint longer than 10 bytes"),
    "layer_past_the_end": (encode_length_delimited(100, 50) + b"\0" * 10, "file is truncated"),
    "no_layers": (encode_length_delimited(1, 3) + b"net", "no layers found"),
}


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_hand_made_damage(name, tmp_path):
    data, fragment = HAND_MADE[name]
    path = tmp_path / f"{name}.caffemodel"
    path.write_bytes(data)
    with pytest.raises(CaffeFormatError) as caught:
        read_weights(path)
    assert fragment in str(caught.value)
    assert str(caught.value).count(str(path)) == 1


def test_unpacked_float_run_is_fine_but_a_stray_fixed32_is_counted(tmp_path):
    """Sanity for the hand-made encoder above: a valid unpacked float reads as one value."""
    blob = encode_key(5, WIRE_FIXED32) + np.float32(2.5).tobytes() + _shape(1)
    path = tmp_path / "ok.caffemodel"
    path.write_bytes(_layer(b"a", blob))
    assert read_weights(path).arrays()["a"][0].tolist() == [2.5]


def test_zoo_mean_files_read():
    means = {
        "imagenet_mean/imagenet_mean.binaryproto": (1, 3, 256, 256),
        "levi_hassner_age_gender/mean.binaryproto": (1, 3, 256, 256),
        "cifar10_quick_hdf5_caffemodel/mean.binaryproto": (1, 3, 32, 32),
        "cifar10_quick_impact_scar_trained/mean.binaryproto": (1, 3, 32, 32),
    }
    for rel, shape in means.items():
        mean = read_mean(_zoo(rel))
        assert mean.shape == shape and mean.dtype == np.float32
        assert 0 < float(mean.mean()) < 255, rel


def test_damaged_mean_file(tmp_path):
    path = tmp_path / "mean.binaryproto"
    path.write_bytes(_zoo("imagenet_mean/imagenet_mean.binaryproto").read_bytes()[:5000])
    with pytest.raises(CaffeFormatError, match="mean.binaryproto"):
        read_mean(path)
