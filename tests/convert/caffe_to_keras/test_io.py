"""Input, Dropout, Silence and Split against real Caffe, and the error for nets keraffe cannot convert.

An unsupported net must fail with one error that lists every layer type
keraffe cannot convert (with its layers), Python layers named as such, so a
user learns everything that is missing at once.
"""

from __future__ import annotations

import re

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


# ---------------------------------------------------------------- unsupported nets

HEAD = 'name: "unsupported"\nlayer { name: "data" type: "Input" top: "data" ' \
       "input_param { shape { dim: 1 dim: 4 dim: 8 dim: 8 } } }\n"
#: Types keraffe reads (they have shape rules) but cannot convert.
NO_HANDLER = ('layer { name: "reorg" type: "Reorg" bottom: "data" top: "r" reorg_param { stride: 2 } }\n'
              'layer { name: "hs1" type: "HardSigmoid" bottom: "data" top: "q1" }\n'
              'layer { name: "hs2" type: "HardSigmoid" bottom: "data" top: "q2" }\n')
#: Types keraffe does not know at all, and a Python layer.
UNKNOWN = ('layer { name: "foo1" type: "FooBar" bottom: "data" top: "f1" }\n'
           'layer { name: "foo2" type: "FooBar" bottom: "data" top: "f2" }\n'
           'layer { name: "roi" type: "ROIPooling" bottom: "data" bottom: "data" top: "p" }\n'
           'layer { name: "proposal" type: "Python" bottom: "data" top: "rois" '
           'python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" } }\n')


def _error(tmp_path, text):
    path = tmp_path / "unsupported.prototxt"
    path.write_text(HEAD + text)
    with pytest.raises(UnsupportedLayerError) as info:
        keraffe.caffe_to_keras(path)
    return str(info.value)


def test_unsupported_types_listed_in_one_error(tmp_path):
    message = _error(tmp_path, NO_HANDLER)
    assert re.search(r"Reorg: 1 layer\(s\): 'reorg'", message), message
    assert re.search(r"HardSigmoid: 2 layer\(s\): 'hs1', 'hs2'", message), message


def test_unknown_and_python_layers_listed_in_one_error(tmp_path):
    message = _error(tmp_path, UNKNOWN)
    assert re.search(r"FooBar: 2 layer\(s\): 'foo1', 'foo2'", message), message
    assert re.search(r"ROIPooling: 1 layer\(s\): 'roi'", message), message
    assert re.search(r"Python: 1 layer\(s\) running user Python code.*'proposal' "
                     r"\(rpn\.proposal_layer\.ProposalLayer\)", message), message


def test_every_missing_type_listed_in_one_error(tmp_path):
    message = _error(tmp_path, NO_HANDLER + UNKNOWN)
    for type_name in ("FooBar", "ROIPooling", "Python", "Reorg", "HardSigmoid"):
        assert f"{type_name}:" in message, message


def test_unsupported_error_reports_each_type_once(tmp_path):
    many = "".join(f'layer {{ name: "reorg{i}" type: "Reorg" bottom: "data" top: "r{i}" '
                   f"reorg_param {{ stride: 2 }} }}\n" for i in range(7))
    message = _error(tmp_path, many)
    assert message.count("Reorg:") == 1
    assert "7 layer(s): 'reorg0', 'reorg1', 'reorg2', 'reorg3', 'reorg4' ..." in message, message
