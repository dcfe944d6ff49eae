"""Bad input to the CLI: exit 1, one clear message on stderr, no traceback, no output file.

Most cases call ``keraffe.cli.main.main([...])`` in this process (fast); a few
run ``python -m keraffe.cli.main`` as a real process to check the exit status
and stderr a user sees. Every ``upgrade -o`` case checks that neither the
output nor a temporary file is left behind.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keraffe.caffe.caffemodel import write_caffemodel
from keraffe.caffe.prototxt import parse_prototxt
from keraffe.cli.main import main

REPO = Path(__file__).resolve().parents[2]
ZOO = REPO.parent / "shared" / "zoo"

LENET = "lenet_mnist_trained/lenet.prototxt"
LENET_WEIGHTS = "lenet_mnist_trained/lenet_iter_10000.caffemodel"


def zoo(rel: str) -> Path:
    if not ZOO.is_dir():
        pytest.skip(f"model zoo not found at {ZOO} (it lives beside the repository, in ../shared/zoo)")
    return ZOO / rel


def fails(capsys, argv, *fragments: str) -> str:
    """Run the CLI in-process; it must exit 1 with one error message holding every fragment."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    command = argv[0]
    assert err.startswith(f"keraffe {command}: error: "), err
    assert err.count("error:") == 1, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


def no_outputs(folder: Path, *names: str) -> None:
    for name in names:
        assert not (folder / name).exists(), name
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


NET_HEAD = ('name: "t"\nlayer { name: "data" type: "Input" top: "data" '
            'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n')


# ------------------------------------------------------------------ malformed text


@pytest.mark.parametrize("text, line, column, fragment", [
    (NET_HEAD + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
     '  convolution_param { num_output: 4 kernel_size: 3 }\n  bogus_field: 3 }\n',
     5, 3, 'has no field named "bogus_field"'),
    (NET_HEAD + 'layer { name: "r" type: ReLU bottom: "data" top: "data" }\n', 3, 25, "Expected string"),
    (NET_HEAD + 'layer { name: "r" type: "ReLU" bottom: "data" top: "data"\n', 3, 52, 'Expected "}"'),
    (NET_HEAD + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p"\n'
     '  pooling_param { kernel_size: -2 } }\n', 4, 32, "kernel_size"),
], ids=["unknown_field", "unquoted_string", "unclosed_brace", "negative_unsigned"])
def test_malformed_prototxt_names_file_line_and_column(text, line, column, fragment, tmp_path, capsys):
    path = write(tmp_path, "bad.prototxt", text)
    fails(capsys, ["inspect", path], f"{path}:{line}:{column}: ", fragment)
    fails(capsys, ["upgrade", path, "-o", tmp_path / "out.prototxt"], f"{path}:{line}:{column}: ")
    no_outputs(tmp_path, "out.prototxt")


def test_solver_file_gets_a_hint(tmp_path, capsys):
    path = write(tmp_path, "solver.prototxt", 'net: "train_val.prototxt"\nbase_lr: 0.01\n')
    fails(capsys, ["inspect", path], f"{path}:1:1: ", "looks like a solver file")


def test_caffemodel_given_as_prototxt(capsys):
    fails(capsys, ["inspect", zoo(LENET_WEIGHTS)], "binary file", "is it the caffemodel?")


def test_missing_files(tmp_path, capsys):
    fails(capsys, ["inspect", tmp_path / "nope.prototxt"], "prototxt file not found")
    fails(capsys, ["inspect", zoo(LENET), "--weights", tmp_path / "nope.caffemodel"], "weights file not found")


# ------------------------------------------------------------------ broken weight files


def _damaged(tmp_path, kind: str) -> Path:
    data = zoo(LENET_WEIGHTS).read_bytes()
    path = tmp_path / f"{kind}.caffemodel"
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif kind == "corrupt_header":
        rng = random.Random(0)
        damaged = bytearray(data)
        for _ in range(40):
            damaged[rng.randrange(0, 600)] = rng.randrange(256)
        path.write_bytes(bytes(damaged))
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("kind, fragment", [
    ("truncated", "file is truncated"),
    ("corrupt_header", "not a valid Caffe weights file"),
    ("garbage", "not a valid Caffe weights file"),
    ("empty", "the weights file is empty"),
])
def test_damaged_caffemodel(kind, fragment, tmp_path, capsys):
    weights = _damaged(tmp_path, kind)
    err = fails(capsys, ["inspect", zoo(LENET), "--weights", weights], str(weights), fragment)
    assert err.count(str(weights)) == 1
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    fails(capsys, ["upgrade", zoo(LENET), "-o", out_dir / "net.prototxt",
                   "--weights", weights, "--weights-out", out_dir / "w.caffemodel"], fragment)
    no_outputs(out_dir, "net.prototxt", "w.caffemodel")


def test_prototxt_given_as_weights(tmp_path, capsys):
    fails(capsys, ["inspect", zoo(LENET), "--weights", zoo(LENET)],
          "looks like a prototxt text file, not binary weights")
    fails(capsys, ["upgrade", zoo(LENET), "-o", tmp_path / "n.prototxt", "--weights", zoo(LENET),
                   "--weights-out", tmp_path / "w.caffemodel"], "looks like a prototxt text file")
    no_outputs(tmp_path, "n.prototxt", "w.caffemodel")


def test_keras_h5_given_as_weights(capsys):
    fails(capsys, ["inspect", zoo(LENET), "--weights", zoo("keras_mnist_cnn_h5/mnist_cnn.h5")],
          "without the 'data' group", "Keras .h5")


# ------------------------------------------------------------------ weights that do not fit


def test_weights_of_another_net(capsys):
    fails(capsys, ["inspect", zoo("bvlc_cifar10_quick/cifar10_quick.prototxt"), "--weights", zoo(LENET_WEIGHTS)],
          "layer 'conv1' (Convolution)", "should have shape (32, 3, 5, 5)", "the file has (20, 1, 5, 5)")


def test_mtcnn_weights_swapped(capsys):
    fails(capsys, ["inspect", zoo("mtcnn/det1.prototxt"), "--weights", zoo("mtcnn/det2.caffemodel")],
          "layer 'conv1' (Convolution)", "(10, 3, 3, 3)", "(28, 3, 3, 3)")


def test_wrong_blob_count(tmp_path, capsys):
    net = write(tmp_path, "n.prototxt", NET_HEAD +
                'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }\n')
    weights = tmp_path / "w.caffemodel"
    write_caffemodel(weights, parse_prototxt(net.read_text()), {"ip": [np.zeros((2, 192), np.float32)]})
    fails(capsys, ["inspect", net, "--weights", weights],
          "layer 'ip' (InnerProduct) needs 2 weight blob(s) of shape (2, 192), (2,); the file has 1")


def test_layer_without_weights_in_the_file(tmp_path, capsys):
    text = (NET_HEAD + 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 4 kernel_size: 3 } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" inner_product_param { num_output: 2 } }\n')
    net = write(tmp_path, "n.prototxt", text)
    weights = tmp_path / "w.caffemodel"
    write_caffemodel(weights, parse_prototxt(text),
                     {"conv": [np.zeros((4, 3, 3, 3), np.float32), np.zeros(4, np.float32)]})
    fails(capsys, ["inspect", net, "--weights", weights],
          "layer 'ip' (InnerProduct) needs weights of shape (2, 144), (2,)", "has none for it")


# ------------------------------------------------------------------ nets keraffe cannot take


def test_unknown_layer_types_are_listed_in_one_error(tmp_path, capsys):
    text = (NET_HEAD
            + 'layer { name: "a1" type: "Frobnicate" bottom: "data" top: "a1" }\n'
            + 'layer { name: "b1" type: "Wibble" bottom: "a1" top: "b1" }\n'
            + 'layer { name: "a2" type: "Frobnicate" bottom: "b1" top: "a2" }\n'
            + 'layer { name: "ok" type: "ReLU" bottom: "a2" top: "a2" }\n')
    err = fails(capsys, ["inspect", write(tmp_path, "n.prototxt", text)],
                "2 layer type(s) keraffe does not know", "Frobnicate: 2 layer(s): 'a1', 'a2'", "Wibble: 1 layer(s): 'b1'")
    assert "ok" not in err.split("know:")[1]


def test_caffe2keras_lists_unknown_and_unconvertible_types_in_one_error(tmp_path, capsys):
    text = (NET_HEAD
            + 'layer { name: "a1" type: "Frobnicate" bottom: "data" top: "a1" }\n'
            + 'layer { name: "r" type: "Accuracy" bottom: "data" bottom: "data" top: "r" }\n')
    fails(capsys, ["caffe2keras", write(tmp_path, "n.prototxt", text), "-o", tmp_path / "m.keras"],
          "2 layer type(s) keraffe cannot convert to Keras", "Frobnicate: 1 layer(s): 'a1'", "Accuracy: 1 layer(s): 'r'")
    assert not (tmp_path / "m.keras").exists()


def test_net_with_several_unknown_types(tmp_path, capsys):
    text = NET_HEAD + "".join(f'layer {{ name: "{kind}{i}" type: "{kind}" bottom: "data" top: "{kind}{i}" }}\n'
                              for kind in ("SpaceToDepthFork", "CropAndWarp") for i in range(7))
    fails(capsys, ["inspect", write(tmp_path, "n.prototxt", text)],
          "2 layer type(s) keraffe does not know", "CropAndWarp: 7 layer(s)", "SpaceToDepthFork: 7 layer(s)")


def test_python_layers_are_reported_as_such(tmp_path, capsys):
    text = (NET_HEAD + 'layer { name: "warp" type: "WarpAffine" bottom: "data" top: "w" }\n'
            'layer { name: "proposal" type: "Python" bottom: "data" top: "rois" '
            'python_param { module: "my_rpn.layers" layer: "ProposalLayer" } }\n')
    fails(capsys, ["inspect", write(tmp_path, "n.prototxt", text)], "WarpAffine: 1 layer(s): 'warp'",
          "Python: 1 layer(s) running user Python code that keraffe cannot read: "
          "'proposal' (my_rpn.layers.ProposalLayer)")


def test_train_val_net_needs_input_shape(capsys):
    fails(capsys, ["inspect", zoo("bvlc_lenet/lenet_train_test.prototxt")],
          "data layer(s) 'mnist' (Data, top 'data')", "--input-shape N,C,H,W")


def test_input_shape_for_an_unknown_input(capsys):
    fails(capsys, ["inspect", zoo("bvlc_lenet/lenet_train_test.prototxt"), "--input-shape", "pixels=1,1,28,28"],
          "--input-shape names pixels", "the net's inputs are data")


def test_several_inputs_need_names(tmp_path, capsys):
    text = (NET_HEAD + 'layer { name: "d2" type: "Input" top: "other" '
            'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n')
    net = write(tmp_path, "n.prototxt", text)
    fails(capsys, ["inspect", net, "--input-shape", "1,3,4,4"], "the net has 2 inputs (data, other)", "NAME=N,C,H,W")
    fails(capsys, ["inspect", net, "--input-shape", "1,3,4,4", "--input-shape", "other=1,3,4,4"],
          "name each input: NAME=N,C,H,W")


def test_ceil_mode_and_round_mode_that_disagree(tmp_path, capsys):
    path = write(tmp_path, "n.prototxt", NET_HEAD +
                 'layer { name: "pool" type: "Pooling" bottom: "data" top: "p" '
                 "pooling_param { kernel_size: 2 ceil_mode: true round_mode: FLOOR } }\n")
    message = "layer 'pool' sets both ceil_mode: true and round_mode: FLOOR, which disagree"
    fails(capsys, ["inspect", path], message)
    fails(capsys, ["upgrade", path, "-o", tmp_path / "out.prototxt"], message)
    no_outputs(tmp_path, "out.prototxt")


def test_blob_read_before_it_is_produced(tmp_path, capsys):
    path = write(tmp_path, "n.prototxt", NET_HEAD +
                 'layer { name: "relu" type: "ReLU" bottom: "later" top: "r" }\n'
                 'layer { name: "conv" type: "Convolution" bottom: "data" top: "later" '
                 "convolution_param { num_output: 2 kernel_size: 1 } }\n")
    fails(capsys, ["inspect", path], "layer 'relu' reads blob 'later' (bottom 0), which no earlier layer produces")


def test_blob_left_out_by_phase_rules(capsys):
    fails(capsys, ["inspect", zoo("bvlc_mnist_autoencoder/mnist_autoencoder.prototxt")],
          "reads blob 'data'", "its include/exclude rules leave it out in phase TEST")


def test_blob_written_twice_not_in_place(tmp_path, capsys):
    path = write(tmp_path, "n.prototxt", NET_HEAD +
                 'layer { name: "a" type: "ReLU" bottom: "data" top: "x" }\n'
                 'layer { name: "b" type: "Sigmoid" bottom: "data" top: "x" }\n')
    fails(capsys, ["inspect", path], "blob 'x' is produced by both 'a' and 'b'")


def test_shape_that_does_not_fit(tmp_path, capsys):
    path = write(tmp_path, "n.prototxt", NET_HEAD +
                 'layer { name: "conv" type: "Convolution" bottom: "data" top: "c" '
                 "convolution_param { num_output: 2 kernel_size: 11 } }\n")
    fails(capsys, ["inspect", path], "layer 'conv' (Convolution)", "the input is too small")


# ------------------------------------------------------------------ upgrade never touches its inputs


def test_upgrade_output_is_never_an_input(tmp_path, capsys):
    proto = tmp_path / "net.prototxt"
    proto.write_bytes(zoo("legacy_v1_lenet/lenet_v1.prototxt").read_bytes())
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(zoo(LENET_WEIGHTS).read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "link.prototxt").symlink_to(proto)

    fails(capsys, ["upgrade", proto, "-o", proto], "is also an input")
    fails(capsys, ["upgrade", proto, "-o", tmp_path / "sub" / ".." / "net.prototxt"], "is also an input")
    fails(capsys, ["upgrade", proto, "-o", tmp_path / "link.prototxt"], "is also an input")
    fails(capsys, ["upgrade", proto, "-o", weights, "--weights", weights,
                   "--weights-out", tmp_path / "w2.caffemodel"], "is also an input")
    fails(capsys, ["upgrade", proto, "-o", tmp_path / "new.prototxt", "--weights", weights,
                   "--weights-out", weights], "is also an input")
    fails(capsys, ["upgrade", proto, "-o", tmp_path / "new.prototxt", "--weights", weights,
                   "--weights-out", proto], "is also an input")
    fails(capsys, ["upgrade", proto, "-o", tmp_path / "same", "--weights", weights,
                   "--weights-out", tmp_path / "same"], "both name", "two different files")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        fails(capsys, ["upgrade", "net.prototxt", "-o", str(proto)], "is also an input")
    finally:
        os.chdir(cwd)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before
    no_outputs(tmp_path, "new.prototxt", "w2.caffemodel", "same")


def test_upgrade_weights_options_go_together(tmp_path, capsys):
    fails(capsys, ["upgrade", zoo(LENET), "-o", tmp_path / "n.prototxt", "--weights", zoo(LENET_WEIGHTS)],
          "give --weights and --weights-out together")
    fails(capsys, ["upgrade", zoo(LENET), "-o", tmp_path / "n.prototxt", "--weights-out", tmp_path / "w"],
          "give --weights and --weights-out together")
    no_outputs(tmp_path, "n.prototxt", "w")


def test_upgrade_into_missing_folder_leaves_nothing(tmp_path, capsys):
    fails(capsys, ["upgrade", zoo("legacy_v1_lenet/lenet_v1.prototxt"), "-o", tmp_path / "net.prototxt",
                   "--weights", zoo(LENET_WEIGHTS), "--weights-out", tmp_path / "missing" / "w.caffemodel"],
          "folder", "does not exist")
    no_outputs(tmp_path, "net.prototxt")
    fails(capsys, ["upgrade", zoo("legacy_v1_lenet/lenet_v1.prototxt"), "-o", tmp_path / "missing" / "n.prototxt"],
          "does not exist")


def test_upgrade_to_a_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    fails(capsys, ["upgrade", zoo("legacy_v1_lenet/lenet_v1.prototxt"), "-o", folder], "is a folder")
    fails(capsys, ["upgrade", zoo("legacy_v1_lenet/lenet_v1.prototxt"), "-o", tmp_path / "n.prototxt",
                   "--weights", zoo(LENET_WEIGHTS), "--weights-out", folder], "is a folder")
    assert list(folder.iterdir()) == []
    no_outputs(tmp_path, "n.prototxt")


def test_upgrade_keeps_an_existing_output_when_it_fails(tmp_path, capsys):
    out = write(tmp_path, "out.prototxt", "previous content\n")
    fails(capsys, ["upgrade", zoo("legacy_v1_lenet/lenet_v1.prototxt"), "-o", out,
                   "--weights", _damaged(tmp_path, "truncated"), "--weights-out", tmp_path / "w.caffemodel"],
          "file is truncated")
    assert out.read_text() == "previous content\n"
    no_outputs(tmp_path, "w.caffemodel")


# ------------------------------------------------------------------ --debug and real processes


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = write(tmp_path, "bad.prototxt", "layer { nme: 1 }\n")
    assert main(["--debug", "inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "CaffeFormatError" in err
    assert err.rstrip().endswith(f'{path}:1:9: Message type "LayerParameter" has no field named "nme".')


def _run_process(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, "-m", "keraffe.cli.main", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_real_process_exit_status_and_stderr(tmp_path):
    """As a user sees it: exit status 1, the message as the last stderr line, no traceback, no output.

    One process only: every start imports Keras and TensorFlow (10-20 s here);
    the other cases run main() in-process.
    """
    bad = write(tmp_path, "bad.prototxt", 'layer { name: "x" type: "Input" top: "x" oops }\n')
    out = tmp_path / "out.prototxt"
    proc = _run_process("upgrade", bad, "-o", out)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"keraffe upgrade: error: {re.escape(str(bad))}:1:\d+: .*", last), proc.stderr
    assert proc.stdout == ""
    assert not out.exists()


def test_bad_option_values_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["inspect", "x.prototxt", "--input-shape", "1,three,4"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "is not a list of integers" in err and "Traceback" not in err
