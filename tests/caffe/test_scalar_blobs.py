"""A one-value weight blob loads however it is spelled: Caffe's shapeless scalar, or a vector of one.

A PReLU with ``channel_shared: true`` holds one slope. Real Caffe keeps it in
a blob of shape () and writes that blob with no shape at all; other writers
give it shape (1,). Both must bind to the layer, and the converted model
must compute what Caffe computes from the file Caffe wrote.
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.caffe.caffemodel import read_weights, write_caffemodel
from keraffe.caffe.net import load_net

PRELU_NET = """
name: "shared_prelu"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "prelu" type: "PReLU" bottom: "data" top: "out"
        prelu_param { channel_shared: true filler { type: "constant" value: 0.3 } } }
"""


@pytest.fixture
def prototxt(tmp_path):
    path = tmp_path / "prelu.prototxt"
    path.write_text(PRELU_NET)
    return path


@pytest.mark.pycaffe
def test_shared_prelu_as_real_caffe_writes_it(prototxt, tmp_path):
    from keraffe.convert.caffe_to_keras import convert_net
    from keraffe.verify import verify
    from keraffe.verify.caffe_runtime import pycaffe_save

    written = tmp_path / "caffe.caffemodel"
    pycaffe_save(prototxt, written)
    assert read_weights(written).layers["prelu"].blobs[0].shape == ()
    net = load_net(prototxt, written)
    assert net.layer("prelu").weights[0].shape == ()
    assert np.isclose(float(net.layer("prelu").weights[0]), 0.3)
    model, tensor_map = convert_net(net)
    report = verify(model, net, tensor_map=tensor_map)
    assert report.ok, report.render()


def test_shared_prelu_as_a_vector_of_one(prototxt, tmp_path):
    net = load_net(prototxt)
    written = tmp_path / "vector.caffemodel"
    write_caffemodel(written, net.to_net_parameter(), {"prelu": [np.array([0.3], np.float32)]})
    assert read_weights(written).layers["prelu"].blobs[0].shape == (1,)
    loaded = load_net(prototxt, written)
    assert loaded.layer("prelu").weights[0].shape == ()
