"""Input, Parameter, Dropout, Silence and Split against real Caffe, and the error for nets keraffe cannot convert.

ENet's spatial_dropout.SpatialDropoutLayer (a Python layer, which the Caffe
build here does not run) is compared with numpy written from its source,
caffe-enet's python/spatial_dropout.py: outside phase 'TRAIN' its forward is
``top = bottom * (1 / (1 - p))``.

An unsupported net must fail with one error that lists every layer type
keraffe cannot convert (with its layers), Python layers named as such, so a
user learns everything that is missing at once.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import keraffe
from keraffe.errors import ConversionError, UnsupportedLayerError

from ._harness import (Batch, Case, assert_case, assert_close, build_net, classes_of, convert, convert_case, inputs,
                       params)


def layer(type_name: str, param: str = "", bottoms=("x",), tops=("y",), name: str = "l") -> str:
    b = " ".join(f'bottom: "{{p}}{x}"' for x in bottoms)
    t = " ".join(f'top: "{{p}}{x}"' for x in tops)
    return f'layer {{ name: "{{p}}{name}" type: "{type_name}" {b} {t} {param} }}\n'


CONV = ('layer { name: "{p}conv" type: "Convolution" bottom: "{p}x" top: "{p}c" '
        "convolution_param { num_output: 2 kernel_size: 3 } }\n")

CASES = [
    # Several inputs of several ranks, one of them used twice.
    Case("inputs_of_several_ranks", inputs(x=(2, 3, 5, 4), v=(2, 6), s=(2, 3, 7)),
         CONV + layer("InnerProduct", "inner_product_param { num_output: 3 }", ("v",), ("d",), "ip")
         + layer("Softmax", "softmax_param { axis: 2 }", ("s",), ("t",), "softmax")
         + layer("ReLU", "", ("x",), ("r",), "relu")),
    # One Input layer with two tops (batch 2, see Case.batch).
    Case("input_two_tops", {},
         'layer { name: "{p}in" type: "Input" top: "{p}a" top: "{p}b" '
         "input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } shape { dim: 2 dim: 6 } } }\n"
         'layer { name: "{p}conv" type: "Convolution" bottom: "{p}a" top: "{p}c" '
         "convolution_param { num_output: 2 kernel_size: 1 } }\n"
         'layer { name: "{p}ip" type: "InnerProduct" bottom: "{p}b" top: "{p}d" '
         "inner_product_param { num_output: 2 } }\n"),
    Case("dropout", inputs(x=(2, 3, 5, 4)), CONV + layer("Dropout", "dropout_param { dropout_ratio: 0.3 }", ("c",),
                                                         ("c",), "drop"),
         check=lambda m, p: "Dropout" in classes_of(m, p)),
    Case("dropout_rank2", inputs(x=(2, 6)), layer("Dropout")),
    Case("silence", inputs(x=(2, 3, 5, 4)), CONV + layer("Silence", "", ("x",), (), "silence")),
    Case("split_explicit", inputs(x=(2, 3, 5, 4)), CONV + layer("Split", "", ("c",), ("s0", "s1"), "split")
         + layer("ReLU", "", ("s0",), ("r",), "relu") + layer("Eltwise", "", ("r", "s1"), ("y",), "sum")),
    # DummyData with constant fillers: one filler for both tops, and the default (0).
    Case("dummy_data", inputs(x=(2, 3, 4, 5)),
         layer("DummyData", "dummy_data_param { data_filler { type: \"constant\" value: 0.25 } shape { dim: 2 "
               "dim: 3 dim: 4 dim: 5 } shape { dim: 2 dim: 6 } }", (), ("d", "e"), "dummy")
         + layer("Eltwise", "", ("x", "d"), ("y",), "sum")),
    Case("dummy_data_default_zero", inputs(x=(2, 6)),
         layer("DummyData", "dummy_data_param { shape { dim: 2 dim: 6 } }", (), ("d",), "dummy")
         + layer("Eltwise", "eltwise_param { operation: MAX }", ("x", "d"), ("y",), "max")),
    # A Parameter with no blob in the weights is fed from outside, as DAN's are: an input of the model.
    Case("parameter_fed", inputs(x=(1, 3, 5, 4)),
         layer("Parameter", "parameter_param { shape { dim: 1 dim: 3 dim: 5 dim: 4 } }", (), ("w",), "param")
         + layer("Eltwise", "eltwise_param { operation: PROD }", ("x", "w"), ("y",), "prod"),
         check=lambda m, p: "InputLayer" in [type(layer).__name__ for layer in m.layers if layer.name == p + "w"]),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory.mktemp("io"))


@pytest.mark.pycaffe
@pytest.mark.parametrize("case", params(CASES))
def test_io_layer_matches_caffe(batch, case):
    assert_case(batch, case)


@pytest.mark.pycaffe
def test_cases_run_as_one_net(batch):
    batch.check_all_batches()


def test_dropout_scaled_at_test_time_matches_numpy_reference(tmp_path):
    """py-faster-rcnn's Dropout with scale_train: false multiplies by 1 - ratio at test time."""
    case = Case("dropout_scale", inputs(x=(2, 3, 5, 4)), layer("Dropout", "dropout_param { dropout_ratio: 0.3 "
                                                                           "scale_train: false }"))
    _, _, values, outputs = convert_case(case, tmp_path)
    assert_close(case.id, values["dropout_scale__x"] * 0.7, outputs["dropout_scale__y"])


def test_monte_carlo_dropout_is_refused(tmp_path):
    case = Case("mc_dropout", inputs(x=(2, 6)), layer("Dropout", "dropout_param { sample_weights_test: true }"))
    with pytest.raises(ConversionError, match="sample_weights_test"):
        convert(build_net([case], tmp_path / "net.prototxt"))


@pytest.mark.pycaffe
def test_parameter_with_a_blob_is_a_constant(tmp_path):
    """Real Caffe outputs the stored blob; the Keras model holds it as a weight, fed by no input."""
    import numpy as np

    from keraffe.caffe.caffemodel import write_caffemodel
    from keraffe.caffe.net import load_net
    from keraffe.convert.caffe_to_keras import convert_net
    from keraffe.verify import verify

    path = tmp_path / "constant.prototxt"
    path.write_text('name: "constant"\n' + 'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 '
                    'dim: 3 dim: 5 dim: 4 } } }\n' + layer("Parameter", "parameter_param { shape { dim: 1 dim: 3 "
                    "dim: 5 dim: 4 } }", (), ("w",), "param").replace("{p}", "") + layer(
                        "Eltwise", "", ("x", "w"), ("y",), "sum").replace("{p}", ""))
    value = np.random.default_rng(3).standard_normal((1, 3, 5, 4)).astype(np.float32)
    write_caffemodel(tmp_path / "constant.caffemodel", load_net(path).to_net_parameter(), {"param": [value]})
    net = load_net(path, tmp_path / "constant.caffemodel")
    assert [str(t) for t in net.inputs] == ["x"]
    model, tensor_map = convert_net(net)
    assert len(model.inputs) == 1
    report = verify(model, net, per_layer=True, tensor_map=tensor_map)
    assert report.ok and all(row.ok for row in report.layers), report.render()
    np.testing.assert_array_equal(tensor_map["w"].layout.to_caffe(np.asarray(model.get_layer("w").weights[0])),
                                  value)


SPATIAL_DROPOUT = ('layer { name: "{p}drop" type: "Python" bottom: "{p}x" top: "{p}y" python_param { '
                   "module: \"spatial_dropout\" layer: \"SpatialDropoutLayer\" param_str: \"{\\'phase\\': "
                   "\\'%s\\', \\'p\\': \\'%s\\'}\" } }\n")


@pytest.mark.parametrize("p", ["0.01", "0.1"])
def test_enet_spatial_dropout_matches_numpy_reference(p, tmp_path):
    case = Case(f"spatial_dropout_{p.replace('.', '_')}", inputs(x=(2, 3, 5, 4)), SPATIAL_DROPOUT % ("TEST", p))
    _, _, values, outputs = convert_case(case, tmp_path)
    prefix = case.id + "__"
    scale = np.float32(1.0 / (1.0 - float(p)))  # the layer's setup(): scale_ = 1. / (1. - p), a float32 product
    assert_close(case.id, values[prefix + "x"] * scale, outputs[prefix + "y"], tolerance=1e-7)


def test_random_dummy_data_is_refused(tmp_path):
    case = Case("dummy_random", inputs(x=(2, 6)), layer(
        "DummyData", "dummy_data_param { data_filler { type: \"gaussian\" } shape { dim: 2 dim: 6 } }", (), ("d",),
        "dummy"))
    with pytest.raises(ConversionError, match="'gaussian' random numbers"):
        convert(build_net([case], tmp_path / "net.prototxt"))


def test_enet_spatial_dropout_in_training_phase_is_refused(tmp_path):
    case = Case("spatial_dropout_train", inputs(x=(2, 3, 5, 4)), SPATIAL_DROPOUT % ("TRAIN", "0.1"))
    with pytest.raises(ConversionError, match="phase 'TRAIN'"):
        convert(build_net([case], tmp_path / "net.prototxt"))


# ---------------------------------------------------------------- unsupported nets

HEAD = 'name: "unsupported"\nlayer { name: "data" type: "Input" top: "data" ' \
       "input_param { shape { dim: 1 dim: 4 dim: 8 dim: 8 } } }\n"
#: Types keraffe reads (they have shape rules) but cannot convert.
NO_HANDLER = ('layer { name: "acc" type: "Accuracy" bottom: "data" bottom: "data" top: "r" }\n'
              'layer { name: "hs1" type: "SmoothL1Loss" bottom: "data" bottom: "data" top: "q1" }\n'
              'layer { name: "hs2" type: "SmoothL1Loss" bottom: "data" bottom: "data" top: "q2" }\n')
#: Types keraffe does not know at all, and a Python layer.
UNKNOWN = ('layer { name: "foo1" type: "FooBar" bottom: "data" top: "f1" }\n'
           'layer { name: "foo2" type: "FooBar" bottom: "data" top: "f2" }\n'
           'layer { name: "roi" type: "FancyPooling" bottom: "data" bottom: "data" top: "p" }\n'
           'layer { name: "proposal" type: "Python" bottom: "data" top: "rois" '
           'python_param { module: "my.proposal_layer" layer: "MyProposalLayer" } }\n')


def _error(tmp_path, text):
    path = tmp_path / "unsupported.prototxt"
    path.write_text(HEAD + text)
    with pytest.raises(UnsupportedLayerError) as info:
        keraffe.caffe_to_keras(path)
    return str(info.value)


def test_unsupported_types_listed_in_one_error(tmp_path):
    message = _error(tmp_path, NO_HANDLER)
    assert re.search(r"Accuracy: 1 layer\(s\): 'acc'", message), message
    assert re.search(r"SmoothL1Loss: 2 layer\(s\): 'hs1', 'hs2'", message), message


def test_unknown_and_python_layers_listed_in_one_error(tmp_path):
    message = _error(tmp_path, UNKNOWN)
    assert re.search(r"FooBar: 2 layer\(s\): 'foo1', 'foo2'", message), message
    assert re.search(r"FancyPooling: 1 layer\(s\): 'roi'", message), message
    assert re.search(r"Python: 1 layer\(s\) running user Python code.*'proposal' "
                     r"\(my\.proposal_layer\.MyProposalLayer\)", message), message


def test_every_missing_type_listed_in_one_error(tmp_path):
    message = _error(tmp_path, NO_HANDLER + UNKNOWN)
    for type_name in ("FooBar", "FancyPooling", "Python", "Accuracy", "SmoothL1Loss"):
        assert f"{type_name}:" in message, message


def test_unsupported_error_reports_each_type_once(tmp_path):
    many = "".join(f'layer {{ name: "reorg{i}" type: "Accuracy" bottom: "data" bottom: "data" top: "r{i}" }}\n'
                   for i in range(7))
    message = _error(tmp_path, many)
    assert message.count("Accuracy:") == 1
    assert "7 layer(s): 'reorg0', 'reorg1', 'reorg2', 'reorg3', 'reorg4' ..." in message, message
