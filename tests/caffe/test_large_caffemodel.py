"""A caffemodel just over 512 MiB: keraffe writes and reads it; this Caffe build refuses it.

Caffe's reader, like any protobuf reader with default settings, has stopped at
512 MiB (``SetTotalBytesLimit``); BVLC later raised its limit to 2 GiB, forks
differ. Measured on brocolli-caffe 9.0.2 (this project's reference Caffe): it
aborts with protobuf's "A protocol message was rejected because it was too
big (more than 536870912 bytes)". keraffe streams blob payloads itself, so it
reads and writes such files up to protobuf's 2 GiB message limit.

Memory: one InnerProduct of 33000 x 4096 floats (540 MB); the test holds the
written weights and the read-back copy once each (about 1.1 GB), and real
Caffe's child process aborts before allocating the blob.
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.caffe.caffemodel import read_weights, write_caffemodel
from keraffe.caffe.net import load_net
from keraffe.caffe.prototxt import parse_prototxt

OUTPUTS, INPUTS = 33_000, 4_096
PROTOBUF_DEFAULT_LIMIT = 512 * 2**20
NET = f"""
name: "over_512mb"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: {INPUTS} }} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param {{ num_output: {OUTPUTS} }} }}
"""


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    rng = np.random.default_rng(512)
    weight = rng.standard_normal((OUTPUTS, INPUTS), dtype=np.float32)
    bias = rng.standard_normal(OUTPUTS, dtype=np.float32)
    folder = tmp_path_factory.mktemp("big")
    prototxt = folder / "big.prototxt"
    prototxt.write_text(NET)
    caffemodel = folder / "big.caffemodel"
    size = write_caffemodel(caffemodel, parse_prototxt(NET), {"fc": [weight, bias]})
    yield prototxt, caffemodel, size, weight, bias
    caffemodel.unlink()


@pytest.mark.slow
def test_keraffe_writes_and_reads_a_caffemodel_over_512mb(big_model):
    prototxt, caffemodel, size, weight, bias = big_model
    assert size == caffemodel.stat().st_size > PROTOBUF_DEFAULT_LIMIT
    weights = read_weights(caffemodel)
    read_weight, read_bias = weights.arrays()["fc"]
    assert read_weight.shape == weight.shape and read_bias.shape == bias.shape
    # Compare in slices: the bit patterns, without a third full-size temporary.
    for start in range(0, OUTPUTS, 4_096):
        rows = slice(start, start + 4_096)
        assert np.array_equal(read_weight[rows].view(np.uint32), weight[rows].view(np.uint32)), start
    assert np.array_equal(read_bias.view(np.uint32), bias.view(np.uint32))
    net = load_net(prototxt, weights)
    assert net.layer("fc").weights[0] is read_weight
    del weights, read_weight, read_bias, net


@pytest.mark.slow
@pytest.mark.pycaffe
def test_brocolli_refuses_a_caffemodel_over_512mb(big_model):
    from keraffe.verify.caffe_runtime import CaffeRuntimeError, run_pycaffe

    prototxt, caffemodel, _, _, _ = big_model
    x = np.ones((1, INPUTS), dtype=np.float32)
    with pytest.raises(CaffeRuntimeError) as caught:
        run_pycaffe(prototxt, caffemodel, {"data": x}, ["fc"])
    message = str(caught.value)
    assert "killed by SIGABRT" in message
    assert "too big (more than 536870912 bytes)" in message
