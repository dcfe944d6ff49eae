"""keraffe.files.atomic_output under a killed converter and under two converters racing for one path.

Both tests run ``keraffe keras2caffe`` in child processes on a model whose
caffemodel is large (64 MiB). To reach the middle of the write every time,
not by luck of timing, each child wraps the caffemodel writer's file handle:
once half the bytes are written it says HALFWAY on stdout and waits (for the
SIGKILL, or for the parent's go-ahead). Everything else is the real command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keraffe.caffe.caffemodel import read_weights

REPO = Path(__file__).resolve().parents[1]
WIDTH = 4096  # a 4096 x 4096 Dense layer: 16.8 million weights, a 64 MiB caffemodel

CHILD = r'''
import contextlib, os, sys, time
from pathlib import Path

import keraffe.caffe.caffemodel as caffemodel
from keraffe.files import atomic_output

go = Path(sys.argv[3])


class PausingHandle:
    """The real temporary file; after half the expected bytes it reports HALFWAY and waits for the go file."""

    def __init__(self, handle):
        self.handle, self.written, self.paused = handle, 0, False

    def write(self, data):
        self.handle.write(data)
        self.written += len(data)
        if not self.paused and self.written >= int(sys.argv[4]) // 2:
            self.paused = True
            self.handle.flush()
            print("HALFWAY", flush=True)
            while not go.exists():
                time.sleep(0.01)
        return len(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)


@contextlib.contextmanager
def pausing_output(path, mode="wb"):
    with atomic_output(path, mode) as handle:
        yield PausingHandle(handle)


caffemodel.atomic_output = pausing_output
from keraffe.cli.main import main

sys.exit(main(["keras2caffe", sys.argv[1], "-o", sys.argv[2]]))
'''


def _model(tmp_path: Path, value: float, name: str) -> Path:
    inputs = keras.Input((WIDTH,), name="x")
    layer = keras.layers.Dense(WIDTH, name="wide")
    model = keras.Model(inputs, layer(inputs), name="wide")
    layer.set_weights([np.full((WIDTH, WIDTH), value, np.float32), np.full(WIDTH, value, np.float32)])
    path = tmp_path / name
    model.save(path)
    return path


def _start(tmp_path: Path, model: Path, prototxt: Path, go: Path) -> subprocess.Popen:
    script = tmp_path / "convert_pausing.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), TF_CPP_MIN_LOG_LEVEL="3")
    expected = WIDTH * WIDTH * 4
    return subprocess.Popen([sys.executable, str(script), str(model), str(prototxt), str(go), str(expected)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_halfway(child: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if line.strip() == "HALFWAY":
            return
        if not line and child.poll() is not None:
            pytest.fail(f"the converter ended (status {child.returncode}) before writing half: {child.stderr.read()}")
    child.kill()
    pytest.fail("the converter did not reach the middle of its write in time")


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


@pytest.mark.slow
def test_sigkill_in_the_middle_of_writing_a_caffemodel_leaves_the_old_file_or_nothing(tmp_path):
    model = _model(tmp_path, 1.0, "model.keras")
    out = tmp_path / "out"
    out.mkdir()
    prototxt, caffemodel = out / "net.prototxt", out / "net.caffemodel"
    caffemodel.write_bytes(b"the previous caffemodel")

    child = _start(tmp_path, model, prototxt, tmp_path / "never")
    _wait_for_halfway(child)
    (partial,) = _temporaries(out)
    assert 0 < partial.stat().st_size < (WIDTH * WIDTH + WIDTH) * 4  # killed mid-write: not even every weight
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    assert caffemodel.read_bytes() == b"the previous caffemodel"  # the old file, whole
    assert not prototxt.exists()  # written after the caffemodel: nothing, not half of one


@pytest.mark.slow
def test_two_conversions_to_one_path_end_with_one_complete_file(tmp_path):
    """Both converters are paused with half a file each, then released: the target is one whole caffemodel."""
    models = [_model(tmp_path, 1.0, "ones.keras"), _model(tmp_path, 2.0, "twos.keras")]
    out = tmp_path / "out"
    out.mkdir()
    prototxt, go = out / "net.prototxt", tmp_path / "go"
    children = [_start(tmp_path, model, prototxt, go) for model in models]
    for child in children:
        _wait_for_halfway(child)
    assert len(_temporaries(out)) == 2  # two half-written files side by side
    go.touch()
    for child in children:
        assert child.wait(timeout=240) == 0, child.stderr.read()

    weights = read_weights(out / "net.caffemodel").layers["wide"].blobs
    values = {float(np.unique(blob.data)[0]) for blob in weights}
    assert len(values) == 1 and values <= {1.0, 2.0}  # one converter's file, whole
    assert all(np.unique(blob.data).size == 1 for blob in weights)
    assert [blob.shape for blob in weights] == [(WIDTH, WIDTH), (WIDTH,)]
    assert _temporaries(out) == []
