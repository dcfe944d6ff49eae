"""Nets written for a fork's own schema read with ``--caffe-proto FORK.proto`` (keraffe.caffe.fork_schema).

The fork schema here is keraffe's own caffe.proto in the fork's package, with
what forks do to it: a new LayerParameter field for a new layer type, a new
field in a BVLC layer's parameters, another default for a field, another
number for a field. No third-party schema is copied into the repository.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from keraffe.caffe import fork_schema
from keraffe.caffe.net import load_net
from keraffe.cli.main import main
from keraffe.errors import CaffeFormatError, UnsupportedLayerError

KERAFFE_PROTO = Path(fork_schema.__file__).with_name("proto") / "caffe.proto"

NET = """
name: "fork_net"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "up" type: "Upsample" bottom: "conv" top: "up" upsample_param { dims_num: 4 } }
layer { name: "reorg" type: "Reorg" bottom: "up" top: "reorg" reorg_param { stride: 2 } }
"""


def _fork_proto(tmp_path: Path) -> Path:
    text = KERAFFE_PROTO.read_text()
    edits = [
        ("package keraffe_caffe;", "package caffe;"),
        # MobileNet-YOLO's numbers: reorg_param at 149, where keraffe (and brocolli) keep psroi_pooling_param.
        ("optional PSROIPoolingParameter psroi_pooling_param = 149;", ""),
        ("optional ReorgParameter reorg_param = 159;", "optional ReorgParameter reorg_param = 149;"),
        # MobileNet-YOLO's Upsample: scale defaults to 1 (keraffe's, for SegNet, to 2).
        ("message UpsampleParameter {\n  optional uint32 scale = 1 [default = 2];",
         "message UpsampleParameter {\n  optional int32 scale = 1 [default = 1];"),
        ("optional bool force_nd_im2col = 17 [default = false];",
         "optional bool force_nd_im2col = 17 [default = false];\n  optional bool fancy_flag = 999;"),
        ("optional ROIPoolingParameter roi_pooling_param = 8266711;",
         "optional ROIPoolingParameter roi_pooling_param = 8266711;\n  optional FancyParameter fancy_param = 4000;"),
    ]
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    text += "\nmessage FancyParameter {\n  optional float gain = 1 [default = 2.5];\n}\n"
    path = tmp_path / "fork.proto"
    path.write_text(text)
    return path


def test_fork_net_reads_with_its_schema_and_defaults(tmp_path):
    proto = _fork_proto(tmp_path)
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(NET)
    net = load_net(prototxt, caffe_proto=proto)
    up = net.layer("up").param.upsample_param
    # The fork's default, written out: the net means what it meant in its fork.
    assert up.HasField("scale") and up.scale == 1
    assert net.shapes[net.layer("up").outputs[0]] == (1, 4, 4, 4)
    assert net.layer("reorg").param.reorg_param.stride == 2
    assert net.foreign_fields == {}
    # keraffe's own schema reads it too, with its own default.
    assert load_net(prototxt).layer("up").param.upsample_param.scale == 2


def test_fields_keraffe_lacks_are_named_and_refused_by_the_converter(tmp_path):
    from keraffe.convert.caffe_to_keras import check_supported

    proto = _fork_proto(tmp_path)
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(NET.replace("kernel_size: 1 }", "kernel_size: 1 fancy_flag: true }") + """
layer { name: "fancy" type: "Fancy" bottom: "reorg" top: "fancy" fancy_param { gain: 3 } }
""")
    with pytest.raises(CaffeFormatError, match='no field named "fancy_flag"'):
        load_net(prototxt)
    net = load_net(prototxt, caffe_proto=proto, infer_shapes=False)
    assert net.foreign_fields == {"conv": ["convolution_param.fancy_flag"], "fancy": ["fancy_param"]}
    assert any("convolution_param.fancy_flag" in note for note in net.notes)
    with pytest.raises(UnsupportedLayerError) as caught:
        load_net(prototxt, caffe_proto=proto, check_types=check_supported)
    message = str(caught.value)
    # One error: the unknown type, and the known layer whose fork field keraffe cannot weigh.
    assert "Fancy: 1 layer(s): 'fancy'" in message
    assert "layer 'conv' (Convolution)" in message and "convolution_param.fancy_flag" in message


def test_cli_reads_with_the_fork_schema(tmp_path, capsys):
    proto = _fork_proto(tmp_path)
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(NET)
    assert main(["inspect", str(prototxt), "--caffe-proto", str(proto), "--json"]) == 0
    assert '"reorg"' in capsys.readouterr().out
    out = tmp_path / "upgraded.prototxt"
    assert main(["upgrade", str(prototxt), "-o", str(out), "--caffe-proto", str(proto)]) == 0
    assert "scale: 1" in out.read_text()


def test_a_schema_that_is_not_one_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto2";\nmessage NetParameter { optional Missing m = 1; }\n')
    with pytest.raises(CaffeFormatError, match="Missing"):
        fork_schema.load_fork_schema(bad)
    bad.write_text('syntax = "proto2";\nmessage Solver { optional int32 x = 1; }\n')
    with pytest.raises(CaffeFormatError, match="no NetParameter"):
        fork_schema.load_fork_schema(bad)
    with pytest.raises(CaffeFormatError, match="not found"):
        fork_schema.load_fork_schema(tmp_path / "absent.proto")


@pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc is not installed")
def test_parser_reads_what_protoc_reads(tmp_path):
    """keraffe's proto2 reader gives the descriptors protoc gives, for its own (large, fork-laden) schema."""
    from google.protobuf import descriptor_pb2

    proto = _fork_proto(tmp_path)
    out = tmp_path / "set.pb"
    subprocess.run(["protoc", "-I", str(tmp_path), "--descriptor_set_out", str(out), str(proto)], check=True)
    theirs = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    mine = fork_schema._Parser(proto.read_text(), str(proto)).parse()
    fork_schema._resolve(mine, str(proto))

    def flat(file):
        found = {}

        def walk(scope, messages, enums):
            for enum in enums:
                found[scope + enum.name] = sorted((v.name, v.number) for v in enum.value)
            for message in messages:
                found[scope + message.name] = sorted(
                    (f.name, f.number, f.label, f.type, f.type_name,
                     float(f.default_value) if f.type in (1, 2) and f.default_value else f.default_value,
                     f.options.packed) for f in message.field)
                walk(scope + message.name + ".", message.nested_type, message.enum_type)

        walk("", file.message_type, file.enum_type)
        return found

    assert flat(mine) == flat(theirs)
