"""A sample of hostile files through the real ``keraffe`` command, as a user runs it.

The in-process fuzz tests call ``keraffe.cli.main.main``; these start the
console entry point in a child process, so that the exit status, the one
``keraffe CMD: error:`` line and the absence of a traceback are what a shell
sees. The files come from the same mutators with fixed choices (corpus.SEED).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from .corpus import REPO, SEED, ZOO, zoo_path
from .harness import describe, judge_exit, record
from .mutators import CAFFEMODEL, PROTOTXT, apply_several, keras_zip_bomb

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.skipif(not ZOO.is_dir(), reason=f"model zoo not found at {ZOO} (the fuzzer mutates its files)"),
]


class SeededChoices:
    def __init__(self, seed: int):
        self.random = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return low if high <= low else self.random.randint(low, high)

    def pick(self, options):
        options = list(options)
        return options[self.integer(0, len(options) - 1)]


def keraffe(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    launcher = "import sys, keraffe_launcher; sys.argv[0] = 'keraffe'; keraffe_launcher.main()"
    return subprocess.run([sys.executable, "-c", launcher, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def _mutated(tmp_path: Path, source: str, name: str, mutations, index: int) -> tuple[Path, str]:
    data, applied = apply_several(zoo_path(source).read_bytes(), SeededChoices(SEED + index), mutations)
    path = tmp_path / name
    path.write_bytes(data)
    return path, f"{source} mutated by {' then '.join(applied)} (seed {SEED + index})"


def _run(tmp_path: Path, fmt: str, case: str, args: list, out: Path):
    out.mkdir(exist_ok=True)
    done = keraffe(*args, cwd=tmp_path)
    outcome = judge_exit("cli-process", args[0], done.returncode, done.stderr, done.stdout)
    if outcome.kind == "refused" and any(out.iterdir()):
        outcome.kind, outcome.detail = "leftover", f"refused but left {sorted(p.name for p in out.iterdir())}"
    bad = record(fmt, [outcome], case)
    assert not bad, f"{case}:\n{describe(bad)}"
    return outcome


@pytest.mark.parametrize("index", range(3))
def test_caffe_commands_in_a_process(tmp_path, index):
    net, case = _mutated(tmp_path, "lenet_mnist_trained/lenet.prototxt", "net.prototxt", PROTOTXT, index)
    _run(tmp_path, "prototxt", case, ["upgrade", net, "-o", tmp_path / "up" / "up.prototxt"], tmp_path / "up")
    weights, case = _mutated(tmp_path, "mtcnn/det1.caffemodel", "w.caffemodel", CAFFEMODEL, index)
    _run(tmp_path, "caffemodel", case, ["upgrade", zoo_path("mtcnn/det1.prototxt"), "-o", tmp_path / "w" / "n.prototxt",
                                        "--weights", weights, "--weights-out", tmp_path / "w" / "w.caffemodel"],
         tmp_path / "w")


def test_keras_command_in_a_process(tmp_path):
    """A .keras archive whose weights inflate 1000 to 1: refused from the zip directory, exit 1, nothing written.

    One Keras command only: each process spends seconds importing TensorFlow.
    """
    bomb = tmp_path / "bomb.keras"
    bomb.write_bytes(keras_zip_bomb(zoo_path("keras3_mnist_bn_keras/mnist_model.keras").read_bytes(),
                                    SeededChoices(SEED)))
    outcome = _run(tmp_path, "keras", "zip bomb", ["keras2caffe", bomb, "-o", tmp_path / "out" / "n.prototxt"],
                   tmp_path / "out")
    assert outcome.kind == "refused" and "compression bomb" in outcome.detail, outcome
