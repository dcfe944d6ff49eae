"""keraffe check flags a hand-written net that breaks each rule of each target, with the rule's source and fix.

Every rule of every profile has a violating net here (a test fails when a
rule is added without one), and a plain net passes all three targets.
"""

from __future__ import annotations

import pytest

from keraffe.caffe.caffemodel import write_caffemodel
from keraffe.caffe.net import load_net
from keraffe.caffe.seeded import seeded_weights
from keraffe.targets import ADVICE, ERROR, profiles
from keraffe.targets.check import check_files


def image(c=3, h=8, w=8, name="data", n=1):
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }} }} }}\n'


def layer(name, type_, bottoms=("data",), tops=None, params=""):
    tops = tops or (name,)
    return (f'layer {{ name: "{name}" type: "{type_}" ' + " ".join(f'bottom: "{b}"' for b in bottoms) + " "
            + " ".join(f'top: "{t}"' for t in tops) + f" {params} }}\n")


CONV = 'convolution_param { num_output: 16 kernel_size: 3 pad: 1 }'

#: rule id -> (target, prototxt, the layer flagged (None: the net), the rewrite keraffe applies or None)
CASES = {
    ("nnie", "N-4"): (image() + layer("relu6", "ReLU6"), "relu6", None),
    ("nnie", "N-9"): (image() + layer("nchw", "Permute", params="permute_param { order: 0 order: 3 order: 1 order: 2 }"),
                      "nchw", None),
    ("nnie", "N-13"): (image(16, 250, 300) + layer("gap", "Pooling", params="pooling_param { pool: AVE global_pooling: true }"),
                       "gap", "chain_global_pooling"),
    ("nnie", "N-7"): (image(4) + layer("conv", "Convolution", params=CONV), "data", None),
    ("nnie", "N-5"): (image() + "".join(layer(f"relu{i}", "ReLU", tops=(f"out{i}",)) for i in range(17)), None, None),
    ("nnie", "N-6"): (image(name="an_input_blob_named_at_great_length_x"), "an_input_blob_named_at_great_length_x", None),
    ("nnie", "N-12"): (image() + layer("five", "Reshape", params="reshape_param { shape { dim: 0 dim: 3 dim: 2 dim: 4 dim: 8 } }"),
                       "five", None),
    ("ascend", "A-28"): (image() + layer("drop", "Dropout"), "drop", "dropout_as_identity"),
    ("ascend", "A-1"): (image() + layer("conv", "Convolution", params="convolution_param { num_output: 4 kernel_size: 3 "
                                                                    "pad_l: 1 pad_r: 1 pad_t: 1 pad_b: 1 }"), "conv", None),
    ("ascend", "A-2"): (image(1, 4, 5000), "data", None),
    ("ascend", "A-3"): (image() + layer("five", "Reshape", params="reshape_param { shape { dim: 0 dim: 3 dim: 2 dim: 4 dim: 8 } }"),
                        "five", None),
    ("ascend", "A-5"): ("weights", "conv", None),
    ("ascend", "A-10"): (image() + layer("dw", "ConvolutionDepthwise", params="convolution_param { num_output: 3 kernel_size: 3 }"),
                         "dw", "depthwise_as_grouped"),
    ("ascend", "A-11"): (image(1, 300, 300) + layer("conv", "Convolution", params="convolution_param { num_output: 1 kernel_size: 256 }"),
                         "conv", None),
    ("ascend", "A-13"): (image() + layer("up", "Deconvolution", params="convolution_param { num_output: 3 kernel_size: 16 stride: 16 }"),
                         "up", None),
    ("ascend", "A-14"): (image() + layer("pool", "Pooling", params="pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }"),
                         "pool", None),
    ("ascend", "A-15/16/17"): (image(3, 32, 32) + layer("pool", "Pooling", params="pooling_param { pool: MAX kernel_size: 3 stride: 7 }"),
                               "pool", None),
    ("ascend", "A-19"): (image() + layer("fc", "InnerProduct", params="inner_product_param { num_output: 4 axis: 2 }"), "fc", None),
    ("ascend", "A-20"): (image() + layer("cat", "Concat", bottoms=("data",) * 17), "cat", "split_wide_concat"),
    ("ascend", "A-24"): (image() + layer("bn", "BatchNorm", params="batch_norm_param { use_global_stats: false }"), "bn", None),
    ("ascend", "A-25"): (image() + layer("up", "Upsample", params="upsample_param { scale: 2 }"), "up", "upsample_stride_spelling"),
    ("ascend", "A-26/27"): (image() + layer("det", "YoloV3DetectionOutput", bottoms=("data", "data", "data")), "det", None),
    ("ascend", "A-C0"): (image() + layer("conv", "Convolution", params="convolution_param { num_output: 10 kernel_size: 1 }"),
                         "conv", None),
    ("rknn", "R-2"): (image() + layer("abs", "AbsVal"), "abs", None),
    ("rknn", "R-4/5/6/8/9"): (image(3, 40, 40) + layer("conv", "Convolution", params="convolution_param { num_output: 4 kernel_size: 33 }"),
                            "conv", None),
    ("rknn", "R-10"): (image() + layer("up", "Deconvolution", params="convolution_param { num_output: 3 kernel_size: 3 stride: 3 }"),
                       "up", None),
    ("rknn", "R-12"): (image(3, 12, 12) + layer("pool", "Pooling", params="pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }"),
                       "pool", "ceil_pooling_as_floor"),
    ("rknn", "R-13"): (image(3, 32, 32) + layer("pool", "Pooling", params="pooling_param { pool: MAX kernel_size: 9 stride: 9 }"),
                       "pool", None),
    ("rknn", "R-14"): (image(3, 10, 10) + layer("gap", "Pooling", params="pooling_param { pool: AVE global_pooling: true }"),
                       "gap", "chain_global_pooling"),
    ("rknn", "R-15"): (image(9000, 1, 1) + layer("sum", "Eltwise", bottoms=("data", "data")), "sum", None),
    ("rknn", "R-17"): (image() + layer("cat", "Concat", bottoms=("data", "data"), params="concat_param { axis: 0 }"), "cat", None),
    ("rknn", "R-18"): (image() + layer("prob", "Softmax", params="softmax_param { axis: 2 }"), "prob", None),
    ("rknn", "R-21"): (image() + layer("up", "Upsample", params="upsample_param { scale: 16 }"), "up", None),
}

CLEAN = image(3, 14, 14) + layer("conv", "Convolution", params=CONV) + layer("relu", "ReLU", ("conv",), ("conv",)) + \
    layer("pool", "Pooling", ("conv",), params="pooling_param { pool: MAX kernel_size: 2 stride: 2 }") + \
    layer("gap", "Pooling", ("pool",), params="pooling_param { pool: AVE global_pooling: true }") + \
    layer("fc", "InnerProduct", ("gap",), params="inner_product_param { num_output: 32 }") + \
    layer("prob", "Softmax", ("fc",))


def _write(tmp_path, text):
    path = tmp_path / "net.prototxt"
    path.write_text('name: "case"\n' + text)
    return path


def _weights_case(tmp_path):
    """A caffemodel whose layer 'conv' says Convolution in lower case: ATC wants names and types identical."""
    path = _write(tmp_path, image() + layer("conv", "Convolution", params=CONV))
    net = load_net(path)
    param = net.to_net_parameter()
    weights = seeded_weights(net)
    next(l for l in param.layer if l.name == "conv").type = "convolution"
    caffemodel = tmp_path / "net.caffemodel"
    write_caffemodel(caffemodel, param, weights)
    return path, caffemodel


def test_every_rule_of_every_target_has_a_violating_net():
    expected = {(name, rule.id) for name, profile in profiles().items() for rule in profile.rules}
    assert set(CASES) == expected


@pytest.mark.parametrize("case", sorted(CASES), ids=lambda case: f"{case[0]}:{case[1]}")
def test_check_flags_the_rule(case, tmp_path):
    target, rule_id = case
    text, layer_name, fix = CASES[case]
    if text == "weights":
        path, caffemodel = _weights_case(tmp_path)
        report = check_files(path, target, weights=caffemodel)
        assert not [v for v in check_files(path, target).violations if v.rule == rule_id]  # needs the weights file
    else:
        report = check_files(_write(tmp_path, text), target)
    rule = profiles()[target].rule(rule_id)
    found = [v for v in report.violations if v.rule == rule_id]
    assert found, report.render()
    violation = found[0]
    assert violation.layer == layer_name
    assert (violation.source, violation.confidence, violation.severity) == (rule.source, rule.confidence, rule.severity)
    assert violation.fix == fix
    assert violation.remedy
    assert report.clean == (rule.severity == ADVICE and not report.errors)


@pytest.mark.parametrize("target", ["nnie", "ascend", "rknn"])
def test_a_plain_net_is_clean(target, tmp_path):
    report = check_files(_write(tmp_path, CLEAN), target)
    assert report.clean and not report.errors, report.render()
    assert [v.severity for v in report.violations] in ([], [ADVICE])


def test_unknown_types_are_checked_by_type_and_shape_rules_skip_them(tmp_path):
    text = image() + layer("mystery", "NoSuchLayer") + layer("conv", "Convolution", ("mystery",), params=CONV)
    report = check_files(_write(tmp_path, text), "rknn")
    assert [(v.rule, v.layer) for v in report.errors] == [("R-2", "mystery")]
    assert report.unchecked == ["'mystery' (NoSuchLayer)"]
    assert "shapes unknown" in report.render()


def test_a_fixable_case_can_still_be_refused(tmp_path):
    """AVE pooling whose roundings differ has no exact rewrite; an AVE global pooling over a prime size neither."""
    text = image(3, 12, 13) + layer("ave", "Pooling", params="pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }") + \
        layer("gap", "Pooling", params="pooling_param { pool: AVE global_pooling: true }")
    report = check_files(_write(tmp_path, text), "rknn")
    assert {(v.rule, v.layer, v.fix) for v in report.errors} == {("R-12", "ave", None), ("R-14", "gap", None)}
    assert all(v.severity == ERROR for v in report.errors)
