"""``pip install keraffe[jax]`` into a fresh virtual environment converts both ways, without TensorFlow.

The environment gets keraffe (built from this checkout) and its ``jax`` extra,
nothing else: the test proves TensorFlow, PyTorch and OpenCV are absent, runs
tests/_fresh_install_job.py there (the ``keraffe`` command's Caffe -> Keras and
Keras -> Caffe, Caffe-only commands, a machine without a backend), and then
judges the files and the Keras outputs made there against real Caffe, here.
TensorFlow must never have entered the job's ``sys.modules``.

pip resolves keraffe's own dependency set, pinned (by a constraints file) to
the versions this environment already runs, so pip's cache or the local
package index serves them and the test stays fast. It takes a minute or two:
marked ``fresh_install``, run once by ``make test``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, zoo_file

pytestmark = [pytest.mark.fresh_install, pytest.mark.pycaffe]

JOB = Path(__file__).with_name("_fresh_install_job.py")
#: What `pip install keraffe` must bring, and what it must not.
CORE = {"keras", "numpy", "protobuf", "h5py", "rich"}
ABSENT = {"tensorflow", "tensorflow-cpu", "tf-keras", "torch", "opencv-python", "opencv-python-headless"}
#: Relative tolerance, verify's default.
TOLERANCE = 1e-4


def _source_copy(folder: Path) -> Path:
    """The files `pip install .` reads, copied, so that building leaves nothing in the checkout."""
    folder.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, folder / name)
    shutil.copytree(REPO / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return folder


def _constraints(path: Path) -> Path:
    """Every distribution installed here, pinned: pip then picks versions it already has (cache, local index)."""
    pins = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != "keraffe":
            pins.add(f"{re.sub(r'[-_.]+', '-', name).lower()}=={dist.version}")
    path.write_text("\n".join(sorted(pins)) + "\n")
    return path


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{argv[:4]} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def fresh_jax_env(tmp_path_factory):
    """A virtual environment holding `pip install keraffe[jax]` only: its python."""
    base = tmp_path_factory.mktemp("fresh_install")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    source = _source_copy(base / "source")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--disable-pip-version-check",
          "-c", _constraints(base / "constraints.txt"), f"{source}[jax]"], timeout=1200)
    return python


def test_jax_only_install_converts_both_ways_without_tensorflow(fresh_jax_env, tmp_path):
    from keraffe.caffe.net import load_net
    from keraffe.verify.caffe_runtime import run_pycaffe
    from keraffe.verify.report import compare

    # Trained weights, and AbsVal, one of keraffe's own layers: the saved model loads only if they are registered.
    prototxt = zoo_file("vanilla_cnn_landmarks", "vanilla_deploy.prototxt")
    weights = zoo_file("vanilla_cnn_landmarks", "vanillaCNN.caffemodel")
    net = load_net(prototxt, weights)
    (data,) = [str(t) for t in net.inputs]
    out = tmp_path / "out"
    out.mkdir()
    rng = np.random.default_rng(0)
    caffe_input = rng.uniform(-1, 1, net.shapes[net.inputs[0]]).astype(np.float32)
    keras_input = rng.normal(size=(2, 33, 31, 3)).astype(np.float32)
    np.save(tmp_path / "caffe_input.npy", caffe_input)
    np.save(tmp_path / "keras_input.npy", keras_input)
    request = {"out": str(out), "caffe_prototxt": str(prototxt), "caffe_weights": str(weights),
               "caffe_input": str(tmp_path / "caffe_input.npy"), "keras_input": str(tmp_path / "keras_input.npy")}
    (tmp_path / "request.json").write_text(json.dumps(request))
    # The user's shell: no backend chosen, nothing of this checkout on the path.
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH", "KERAFFE_PYCAFFE")}
    _run([fresh_jax_env, JOB, tmp_path / "request.json"], env=env, cwd=tmp_path, timeout=900)
    report = json.loads((out / "report.json").read_text())

    # What pip installed: keraffe's core dependencies and JAX, no TensorFlow, PyTorch or OpenCV.
    installed = set(report["installed"])
    assert CORE | {"keraffe", "jax", "jaxlib"} <= installed, sorted(installed)
    assert not installed & ABSENT, sorted(installed & ABSENT)
    assert report["findable"] == {"tensorflow": False, "jax": True, "torch": False, "cv2": False}
    assert not [r for r in report["keraffe_requires"] if "extra ==" not in r and r.split(">")[0].split("=")[0].strip()
                not in CORE], report["keraffe_requires"]

    # Caffe-only commands never import Keras; with no backend at all the Keras commands say what to install.
    assert report["inspect"]["code"] == 0 and report["inspect"]["layers"] > 5, report["inspect"]
    assert report["upgrade"]["code"] == 0, report["upgrade"]
    assert report["after_caffe_commands"] == []
    no_backend = report["no_backend"]
    assert no_backend["code"] == 1 and no_backend["stderr"].count("\n") == 1, no_backend
    assert "pip install 'keraffe[jax]'" in no_backend["stderr"], no_backend

    # The command chose the installed backend by itself, and TensorFlow never entered the process.
    assert report["KERAS_BACKEND"] is None and report["backend"] == "jax"
    assert report["caffe2keras"]["code"] == 0 and report["keras2caffe"]["code"] == 0, report
    # OpenCV is an extra: without it, verify's OpenCV runtime says how to get it.
    assert report["verify_opencv"] == {"code": 1, "stderr": "keraffe verify: error: OpenCV is not installed: "
                                       "pip install 'keraffe[opencv]' (OpenCV 4.x DNN)\n"}, report["verify_opencv"]
    assert report["keraffe_layers"] == ["AbsVal"], report["keraffe_layers"]
    assert "tensorflow" not in report["modules"] and "jax" in report["modules"], report["modules"]

    # Caffe -> Keras, judged by real Caffe: the outputs JAX computed there, and every blob of the saved model here.
    reference = run_pycaffe(prototxt, weights, {data: caffe_input})
    with np.load(out / "from_caffe_outputs.npz") as npz:
        made = [npz[k] for k in npz.files]
    for blob, expected in reference.items():
        matches = [m for m in made if m.shape == expected.shape]
        assert len(matches) == 1, (blob, expected.shape, [m.shape for m in made])
        row = compare(blob, None, expected, matches[0], TOLERANCE)
        assert row.ok, f"{blob}: rel {row.rel:.3g}"
    _assert_every_blob_matches(out / "from_caffe.keras", prototxt, weights, {data: caffe_input})

    # Keras -> Caffe, judged by real Caffe: the export made there against the outputs JAX computed there.
    exported, exported_weights = out / "to_caffe.prototxt", out / "to_caffe.caffemodel"
    (name,) = [str(t) for t in load_net(exported).inputs]
    feed = {name: np.ascontiguousarray(np.transpose(keras_input, (0, 3, 1, 2)))}
    (expected,) = run_pycaffe(exported, exported_weights, feed).values()
    row = compare("classes", None, expected, np.load(out / "to_caffe_output.npy"), TOLERANCE)
    assert row.ok, f"Keras -> Caffe output: rel {row.rel:.3g}"
    _assert_every_blob_matches(out / "written_here.keras", exported, exported_weights, feed)


def _assert_every_blob_matches(model_path, prototxt, weights, inputs) -> None:
    from keraffe.caffe.net import load_net
    from keraffe.keras_io import load_keras_model
    from keraffe.verify import verify

    report = verify(load_keras_model(model_path), load_net(prototxt, weights), inputs, per_layer=True, runtime="caffe")
    assert report.ok and len(report.layers) > 4 and all(r.ok for r in report.layers), report.render()
