"""A converted model saved on one Keras backend loads and computes the same on the other two.

One net holds keraffe's own layers (LRN, Caffe's ceil-rounded AVE pooling, MAX
pooling with its mask and SegNet's unpooling, Interp, SSD's Normalize,
AbsVal). On each backend, in a child process of its own, it is converted
(seeded weights), checked blob by blob against real Caffe, and saved; then each
backend loads the other two backends' files with plain
``keras.saving.load_model`` after ``import keraffe`` and runs them on the same
image. Every backend's outputs of every file must agree with the outputs the
file's own backend computed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.pycaffe

JOB = Path(__file__).with_name("_backend_job.py")
BACKENDS = ("tensorflow", "jax", "torch")
#: Between backends only float32 round-off of different kernels separates the results.
TOLERANCE = 1e-5

NET = """name: "keraffe_layers"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 15 dim: 13 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "abs" type: "AbsVal" bottom: "conv" top: "abs" }
layer { name: "lrn" type: "LRN" bottom: "abs" top: "lrn" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "ave" type: "Pooling" bottom: "lrn" top: "ave" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "interp" type: "Interp" bottom: "ave" top: "interp" interp_param { height: 15 width: 13 } }
layer { name: "max" type: "Pooling" bottom: "conv" top: "max" top: "mask" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "unpool" type: "Upsample" bottom: "max" bottom: "mask" top: "unpool" upsample_param { scale: 2 upsample_h: 15 upsample_w: 13 } }
layer { name: "concat" type: "Concat" bottom: "interp" bottom: "unpool" top: "concat" }
layer { name: "norm" type: "Normalize" bottom: "concat" top: "norm" norm_param { across_spatial: false channel_shared: false } }
"""


def _job(backend: str, *argv) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO / "src"), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, str(JOB), *map(str, argv)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, f"{backend} {argv[0]}:\n{done.stderr[-4000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    return result


def test_saved_on_one_backend_computes_the_same_on_the_others(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    np.save(tmp_path / "image.npy", np.random.default_rng(0).normal(size=(2, 15, 13, 3)).astype(np.float32))
    for backend in BACKENDS:
        made = _job(backend, "convert", tmp_path / "net.prototxt", tmp_path)
        assert made["verified"], f"{backend}: differs from real Caffe (worst rel {made['worst']:.3g})"
        assert made["keraffe_layers"] == ["AbsVal", "CaffePooling2D", "Interp", "L2Normalize", "LRN",
                                          "MaxPoolingWithMask", "MaxUnpooling2D"], made
    for backend in BACKENDS:
        assert sorted(_job(backend, "load", tmp_path)["loaded"]) == sorted(set(BACKENDS) - {backend})
    for saved in BACKENDS:
        with np.load(tmp_path / f"{saved}__{saved}.npz") as npz:
            expected = [npz[k] for k in npz.files]
        for loaded in set(BACKENDS) - {saved}:
            with np.load(tmp_path / f"{saved}__{loaded}.npz") as npz:
                got = [npz[k] for k in npz.files]
            assert [g.shape for g in got] == [e.shape for e in expected]
            for g, e in zip(got, expected):
                rel = float(np.abs(g - e).max() / max(np.abs(e).max(), 1e-30))
                assert rel <= TOLERANCE, f"saved on {saved}, run on {loaded}: rel {rel:.3g}"
