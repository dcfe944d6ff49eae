"""When a reference runtime fails inside ``keraffe verify``: one message naming the runtime, the layer and its text.

Real Caffe aborts the process on a failed CHECK (it runs in a child, so
keraffe survives); OpenCV throws a C++ exception. Either way the user gets one
``keraffe verify: error:`` message saying which runtime, in which layer (when
it can be known) and the runtime's own words, and the command exits 1.
"""

from __future__ import annotations

import numpy as np
import pytest

import keraffe
from keraffe.caffe.caffemodel import write_caffemodel
from keraffe.caffe.prototxt import parse_prototxt
from keraffe.cli.main import main
from keraffe.verify.caffe_runtime import CaffeRuntimeError, caffe_failure, pycaffe_available, run_pycaffe
from keraffe.verify.opencv_runtime import OpenCVRuntimeError, run_opencv

HEAD = ('name: "t"\nlayer { name: "data" type: "Input" top: "data" '
        'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
        'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
        'convolution_param { num_output: 4 kernel_size: 3 } }\n')

no_caffe = pytest.mark.skipif(not pycaffe_available(), reason="real Caffe not built: run tools/build_pycaffe.sh")


def converted(tmp_path, last_layer: str):
    """A small Caffe net ending in ``last_layer``, its weights, and its Keras conversion saved as .keras."""
    text = HEAD + last_layer
    net, weights, model = tmp_path / "net.prototxt", tmp_path / "w.caffemodel", tmp_path / "m.keras"
    net.write_text(text)
    rng = np.random.default_rng(0)
    write_caffemodel(weights, parse_prototxt(text),
                     {"conv": [rng.standard_normal((4, 3, 3, 3)).astype(np.float32), np.zeros(4, np.float32)]})
    keraffe.caffe_to_keras(net, weights).save(model)
    return model, net, weights


def verify_fails(capsys, *argv) -> str:
    assert main(["verify", *map(str, argv)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    assert err.startswith("keraffe verify: error: ") and err.count("keraffe verify: error:") == 1, err
    return err


@pytest.mark.pycaffe
@no_caffe
def test_a_caffe_check_failure_names_the_runtime_the_layer_and_the_check(tmp_path, capsys):
    # This Caffe build has no Swish: its layer factory CHECK-fails while setting the net up.
    model, net, weights = converted(tmp_path, 'layer { name: "act" type: "Swish" bottom: "conv" top: "act" }\n')
    err = verify_fails(capsys, model, net, "--weights", weights)
    headline = err.splitlines()[0]
    assert "pycaffe run on" in headline and "killed by SIGABRT: real Caffe aborted in layer 'act': " in headline
    assert "Check failed: registry.count(type) == 1 (0 vs. 1) Unknown layer type: Swish" in headline
    assert "--- Caffe log ---" in err and "*** Check failure stack trace" not in err
    assert main(["inspect", str(net)]) == 0  # the process lives on
    capsys.readouterr()


@pytest.mark.pycaffe
@no_caffe
def test_a_check_failure_while_running_names_the_layer_that_ran(tmp_path):
    """The worker runs the net layer by layer, so a CHECK in a layer's reshape or forward names that layer."""
    net = tmp_path / "net.prototxt"
    net.write_text(HEAD + 'layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" '
                          "inner_product_param { num_output: 5 } }\n")
    with pytest.raises(CaffeRuntimeError) as failed:
        run_pycaffe(net, None, {"data": np.zeros((1, 3, 10, 10), np.float32)})  # 4 x 8 x 8 values, not 4 x 6 x 6
    assert ("real Caffe aborted in layer 'ip': Check failed: K_ == new_K (144 vs. 256) Input size incompatible with "
            "inner product parameters.") in str(failed.value)


def test_caffe_failure_reads_the_fatal_line_and_the_last_layer_begun():
    stderr = ("keraffe-worker: layer data\nkeraffe-worker: layer conv\n"
              "F20261206 11:42:33.470779 31740 conv_layer.cpp:12] Check failed: x > 0 (0 vs. 0) why\n"
              "*** Check failure stack trace: ***\n    @ 0x7f abort\n")
    assert caffe_failure(stderr) == ("conv", "Check failed: x > 0 (0 vs. 0) why")
    assert caffe_failure("F0101 00:00:00.000000 1 net.cpp:1] Check failed: y\n") == (None, "Check failed: y")
    assert caffe_failure("") == (None, None)


def test_an_opencv_exception_names_the_runtime_the_layer_and_its_text(tmp_path, capsys):
    # OpenCV 4.x has no Threshold layer: its importer throws.
    model, net, weights = converted(tmp_path, 'layer { name: "thr" type: "Threshold" bottom: "conv" top: "thr" '
                                              "threshold_param { threshold: 0.1 } }\n")
    err = verify_fails(capsys, model, net, "--weights", weights, "--runtime", "opencv")
    assert err.strip() == ("keraffe verify: error: OpenCV DNN failed in layer 'thr' (Threshold): (-2:Unspecified "
                           "error) Can't create layer \"thr\" of type \"Threshold\" in function 'getLayerInstance'")


def test_opencv_layer_comes_from_its_log_when_the_exception_lacks_it(tmp_path, capfd):
    net = tmp_path / "concat.prototxt"
    net.write_text('layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
                   'layer { name: "b" type: "Input" top: "b" input_param { shape { dim: 1 dim: 3 dim: 5 dim: 5 } } }\n'
                   'layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" }\n')
    inputs = {"a": np.zeros((1, 3, 8, 8), np.float32), "b": np.zeros((1, 3, 5, 5), np.float32)}
    with pytest.raises(OpenCVRuntimeError, match=r"^OpenCV DNN failed in layer 'cat' \(Concat\): \(-201:Incorrect size "
                                                 r"of input array\) Inconsistent shape for ConcatLayer"):
        run_opencv(net, None, inputs, ["cat"])
    inputs["b"] = np.ones((1, 3, 8, 8), np.float32)
    assert run_opencv(net, None, inputs, ["cat"])["cat"][0].shape == (1, 6, 8, 8)
    capfd.readouterr()


def test_the_verify_function_stays_a_function(tmp_path):
    """keraffe.verify (the function) shares its name with the keraffe.verify package; importing the package
    must not replace the function, or a second verify in one process would call a module."""
    import importlib

    importlib.import_module("keraffe.verify")
    assert callable(keraffe.verify)
