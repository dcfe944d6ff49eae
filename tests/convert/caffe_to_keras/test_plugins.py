"""keraffe.register_caffe_layer: users convert their own layer types and Python layers without editing keraffe.

The documented example (examples/caffe_plugins.py, shown in
docs/caffe_plugins.md) runs in a child process, since a plug-in stays
registered for the life of the process: a C++ type judged by real Caffe, and a
Python layer judged by its own forward pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import keraffe
from keraffe.caffe.net import load_net
from keraffe.errors import UnsupportedLayerError

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.pycaffe
def test_documented_plugins_convert_exactly(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, str(REPO / "examples" / "caffe_plugins.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "Pad plug-in against caffe: ok" in run.stdout
    assert "ScaleShift plug-in against the Python layer: ok" in run.stdout
    # The converted models load back with plain Keras (the plug-ins used standard layers).
    import keras

    assert keras.saving.load_model(tmp_path / "pad.keras").output_shape == (None, 4, 3, 4)


def test_types_keraffe_converts_cannot_be_taken_over():
    with pytest.raises(ValueError, match="already converts Caffe type 'Convolution'"):
        keraffe.register_caffe_layer("Convolution")
    with pytest.raises(ValueError, match="python_layer='module.Layer'"):
        keraffe.register_caffe_layer("Python")
    with pytest.raises(ValueError, match="'module.Layer'"):
        keraffe.register_caffe_layer(python_layer="NoModule")
    with pytest.raises(TypeError, match="one of them"):
        keraffe.register_caffe_layer("A", python_layer="m.B")
    with pytest.raises(TypeError, match=r"\(layer, inputs, weights, name\)"):
        keraffe.register_caffe_layer("KeraffeTestNeverRegistered")(lambda layer, inputs: None)
    # Nothing was registered by the refused calls.
    from keraffe.convert.caffe_to_keras import HANDLERS

    assert "KeraffeTestNeverRegistered" not in HANDLERS


def test_unknown_python_layers_are_all_listed_at_once(tmp_path):
    from keraffe.convert.caffe_to_keras import check_supported

    path = tmp_path / "net.prototxt"
    path.write_text("""
name: "python_layers"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "a" type: "Python" bottom: "data" top: "a" python_param { module: "mine" layer: "First" } }
layer { name: "b" type: "Python" bottom: "a" top: "b" python_param { module: "mine.sub" layer: "Second" } }
layer { name: "c" type: "Mystery" bottom: "b" top: "c" }
""")
    with pytest.raises(UnsupportedLayerError) as caught:
        load_net(path, check_types=check_supported)
    message = str(caught.value)
    assert "'a' (mine.First)" in message and "'b' (mine.sub.Second)" in message
    assert "Mystery: 1 layer(s): 'c'" in message
