"""Round trips between the two directions, and converted models reloaded on every backend.

* Caffe -> Keras -> Caffe (the project's origin: every OpenPose prototxt in the
  zoo, seeded weights): the Caffe weights come back bit-identical, layer by
  layer, and real Caffe gives identical outputs from the original and the
  round-tripped net.
* SSD nets the same way, back for target opencv (PriorBox, DetectionOutput):
  real Caffe gives bit-identical detections and head blobs.
* A converted model saved as .keras reloads in a fresh process (safe_mode on,
  after `import keraffe`) and gives the same outputs: identical on the backend
  that saved it, equal to float round-off on JAX and PyTorch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ZOO, zoo_available

OPENPOSE = sorted(str(p.relative_to(ZOO)) for p in ZOO.glob("openpose_*/*.prototxt")) if zoo_available() else []
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.pycaffe
@pytest.mark.parametrize("relpath", OPENPOSE)
def test_openpose_caffe_keras_caffe(relpath, zoo, tmp_path):
    from keraffe.caffe.caffemodel import read_weights, write_caffemodel
    from keraffe.caffe.net import load_net
    from keraffe.caffe.prototxt import Dialect, write_prototxt
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.convert.caffe_to_keras import convert_net
    from keraffe.convert.keras_to_caffe import convert_model
    from keraffe.verify.caffe_runtime import run_pycaffe

    net = attach_seeded_weights(load_net(zoo / relpath, input_shapes=(1, 3, 64, 64)), seed=0)
    model, tensor_map = convert_net(net)
    export = convert_model(model, "caffe1")
    # A Caffe layer comes back under the name of the Keras layer that holds its top: the same
    # name, except where Caffe named a layer differently from its output blob (a net output
    # keeps its blob's name in Keras).
    original = {tensor_map[str(n.outputs[0])].keras_layer: n.weights for n in net.layers if n.weights}
    assert set(export.weights) == set(original)
    renamed = [n.name for n in net.layers if n.weights and tensor_map[str(n.outputs[0])].keras_layer != n.name]
    assert len(renamed) <= 1, renamed
    for name, arrays in original.items():
        back = export.weights[name]
        assert len(back) == len(arrays)
        for a, b in zip(arrays, back):
            assert a.shape == b.shape and np.array_equal(a, b), name

    first, second = tmp_path / "original", tmp_path / "round_trip"
    write_prototxt(first.with_suffix(".prototxt"), net.to_net_parameter(), Dialect.FORK)
    write_caffemodel(first.with_suffix(".caffemodel"), net.to_net_parameter(), net.weight_arrays())
    write_prototxt(second.with_suffix(".prototxt"), export.net, Dialect.FORK)
    write_caffemodel(second.with_suffix(".caffemodel"), export.net, export.weights)
    image = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    outputs = [str(t) for t in net.outputs]
    a = run_pycaffe(first.with_suffix(".prototxt"), first.with_suffix(".caffemodel"), {str(net.inputs[0]): image},
                    outputs)
    b = run_pycaffe(second.with_suffix(".prototxt"), second.with_suffix(".caffemodel"),
                    {export.tensor_map.inputs[0]: image}, export.tensor_map.outputs)
    for name, other in zip(outputs, export.tensor_map.outputs):
        assert np.array_equal(a[name], b[other]), name


SSD = ["mobilenet_ssd/deploy.prototxt", "mobilenet_ssd/MobileNetSSD_deploy_voc_bnmerged.prototxt",
       "pelee_ssd/deploy.prototxt", "ssd300_vgg_voc/VGG_VOC0712_SSD_300x300_iter_120000.prototxt"]
#: Besides the detections: the three blobs DetectionOutput reads, so a difference shows before NMS hides it.
SSD_BLOBS = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]


def _layer_shapes(net_parameter, weights, types) -> list:
    return sorted((layer.type, tuple(tuple(np.shape(a)) for a in weights.get(layer.name, [])))
                  for layer in net_parameter.layer if layer.type in types)


@pytest.mark.pycaffe
@pytest.mark.parametrize("relpath", SSD)
def test_ssd_caffe_keras_caffe(relpath, zoo, tmp_path):
    """SSD to Keras (to fine-tune or prune) and back for OpenCV's SSD layers: real Caffe runs both nets alike.

    PriorBox and DetectionOutput come back as themselves, every convolution with
    its own kernel (no zero rows for the padding Keras holds unevenly), and the
    detections, boxes, scores and priors are bit-identical.
    """
    from keraffe.caffe.caffemodel import write_caffemodel
    from keraffe.caffe.net import load_net
    from keraffe.caffe.prototxt import Dialect, write_prototxt
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.convert.caffe_to_keras import convert_net
    from keraffe.convert.keras_to_caffe import convert_model
    from keraffe.verify.caffe_runtime import run_pycaffe

    net = attach_seeded_weights(load_net(zoo / relpath), seed=0)
    original = net.to_net_parameter()
    model, _ = convert_net(net)
    export = convert_model(model, "opencv")
    kinds = {"Convolution", "PriorBox", "DetectionOutput", "Normalize"}
    assert _layer_shapes(export.net, export.weights, kinds) == _layer_shapes(original, net.weight_arrays(), kinds)

    first, second = tmp_path / "original", tmp_path / "round_trip"
    write_prototxt(first.with_suffix(".prototxt"), original, Dialect.FORK)
    write_caffemodel(first.with_suffix(".caffemodel"), original, net.weight_arrays())
    write_prototxt(second.with_suffix(".prototxt"), export.net, Dialect.FORK)
    write_caffemodel(second.with_suffix(".caffemodel"), export.net, export.weights)
    image = np.random.default_rng(0).normal(size=net.shapes[net.inputs[0]]).astype(np.float32)
    outputs = [str(t) for t in net.outputs]
    a = run_pycaffe(first.with_suffix(".prototxt"), first.with_suffix(".caffemodel"), {str(net.inputs[0]): image},
                    outputs + SSD_BLOBS)
    b = run_pycaffe(second.with_suffix(".prototxt"), second.with_suffix(".caffemodel"),
                    {export.tensor_map.inputs[0]: image}, export.tensor_map.outputs + SSD_BLOBS)
    assert a[outputs[0]].shape[2] > 1, "the seeded net should detect something, or the comparison says little"
    for name, other in zip(outputs + SSD_BLOBS, export.tensor_map.outputs + SSD_BLOBS):
        assert np.array_equal(a[name], b[other]), name


RELOAD = """
import json, sys
import numpy as np
import keras
import keraffe
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
y = model.predict(x, verbose=0)
np.save(sys.argv[3], np.asarray(y))
print(json.dumps({"backend": keras.backend.backend()}))
"""

SMALL_NET = """
name: "reload"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 13 dim: 11 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "norm" type: "LRN" bottom: "conv" top: "norm" lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 } }
layer { name: "pool" type: "Pooling" bottom: "norm" top: "pool" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "power" type: "Power" bottom: "pool" top: "power" power_param { power: 2 scale: 0.5 shift: 1 } }
layer { name: "scale" type: "Scale" bottom: "power" top: "scale" scale_param { bias_term: true } }
layer { name: "ip" type: "InnerProduct" bottom: "scale" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


@pytest.mark.slow
def test_converted_model_reloads_on_every_backend(tmp_path):
    from keraffe.caffe.net import load_net
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.convert.caffe_to_keras import convert_net
    from keraffe.keras_io import save_keras_model

    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(SMALL_NET)
    model, _ = convert_net(attach_seeded_weights(load_net(prototxt), seed=0))
    custom = {type(layer).__module__.split(".")[0] for layer in model.layers}
    assert "keraffe" in custom, "the net must exercise keraffe's own layers"
    path = tmp_path / "model.keras"
    save_keras_model(model, path)
    x = np.random.default_rng(0).normal(size=(2, 13, 11, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    here = np.asarray(model.predict(x, verbose=0))
    results = {}
    for backend in ("tensorflow", "jax", "torch"):
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO / "src"))
        out = tmp_path / f"{backend}.npy"
        done = subprocess.run([sys.executable, "-c", RELOAD, str(path), str(tmp_path / "x.npy"), str(out)],
                              capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout.strip().splitlines()[-1])["backend"] == backend
        results[backend] = np.load(out)
    current = os.environ.get("KERAS_BACKEND", "tensorflow")
    assert np.array_equal(results[current], here)
    for backend, values in results.items():
        np.testing.assert_allclose(values, here, rtol=1e-5, atol=1e-6 * np.abs(here).max(), err_msg=backend)
