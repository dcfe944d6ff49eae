"""The command's Keras backend: KERAS_BACKEND when set, else the first installed; one line when none is.

Each case runs in a fresh interpreter (the backend is chosen before Keras is
imported, once per process). A backend is made to look uninstalled by a None
entry in ``sys.modules``, which makes both ``importlib.util.find_spec`` and
``import`` fail as they do for an absent package. The last cases check the
front door stays quiet: no TensorFlow/CUDA start-up lines unless --debug.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LENET = REPO.parent / "shared" / "zoo" / "bvlc_lenet" / "lenet.prototxt"


def run(code: str, backend: str | None = None, hidden=()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = str(REPO / "src")
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    prelude = f"import sys\nsys.modules.update(dict.fromkeys({list(hidden)!r}))\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=env,
                          timeout=300)


CHOOSE = ("import json, os\nfrom keraffe.cli.backend import choose_backend\n"
          "print(json.dumps([choose_backend(), os.environ.get('KERAS_BACKEND')]))")


@pytest.mark.parametrize("backend, hidden, expected", [
    (None, (), "tensorflow"),
    (None, ("tensorflow",), "jax"),
    (None, ("tensorflow", "jax"), "torch"),
    ("torch", (), "torch"),
    ("jax", ("tensorflow",), "jax"),
], ids=["first_installed", "no_tensorflow", "torch_only", "keras_backend_set", "keras_backend_set_jax_only"])
def test_backend_is_keras_backend_else_the_first_installed(backend, hidden, expected):
    done = run(CHOOSE, backend, hidden)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [expected, expected]


@pytest.mark.parametrize("backend, hidden, message", [
    (None, ("tensorflow", "jax", "torch"),
     "this command runs Keras, and no Keras backend is installed: pip install 'keraffe[jax]' "
     "(or keraffe[torch], keraffe[tensorflow])"),
    ("torch", ("torch",), "KERAS_BACKEND=torch, but torch is not installed: pip install 'keraffe[torch]', "
                          "or set KERAS_BACKEND to an installed backend"),
    ("pytorch", (), "KERAS_BACKEND=pytorch is not a Keras backend; Keras 3 runs on tensorflow, jax, torch, numpy, "
                    "openvino"),
], ids=["none_installed", "chosen_not_installed", "not_a_backend"])
def test_missing_backend_is_one_line_naming_the_extra(backend, hidden, message, tmp_path):
    code = (f"from keraffe.cli.main import main\n"
            f"code = main(['caffe2keras', {str(LENET)!r}, '-o', {str(tmp_path / 'm.keras')!r}])\n"
            f"assert 'keras' not in sys.modules\nsys.exit(code)")
    done = run(code, backend, hidden)
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"keraffe caffe2keras: error: {message}\n"
    assert not (tmp_path / "m.keras").exists()


NOISE = ("cuda", "cuInit", "oneDNN", "absl::InitializeLog", "TF_ENABLE_ONEDNN_OPTS", "port.cc")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_command_shows_no_native_log_noise(backend, tmp_path):
    if not LENET.exists():
        pytest.skip(f"model zoo not found beside the repository ({LENET})")
    code = (f"from keraffe.cli.main import main\n"
            f"sys.exit(main(['caffe2keras', {str(LENET)!r}, '-o', {str(tmp_path / 'm.keras')!r}]))")
    done = run(code, backend)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "Keras layers" in done.stdout


def test_debug_leaves_native_output_alone(tmp_path):
    """--debug hides nothing: what TensorFlow prints at start-up reaches the user."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed")
    code = (f"from keraffe.cli.main import main\n"
            f"sys.exit(main(['--debug', 'caffe2keras', {str(LENET)!r}, '-o', {str(tmp_path / 'm.keras')!r}]))")
    quiet = run(code.replace("'--debug', ", ""), "tensorflow")
    loud = run(code, "tensorflow")
    assert quiet.returncode == loud.returncode == 0
    if not loud.stderr:
        pytest.skip("TensorFlow printed nothing at start-up on this machine: nothing for --debug to show")
    assert quiet.stderr == ""
