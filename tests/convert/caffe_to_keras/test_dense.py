"""InnerProduct against real Caffe: on rank-2 blobs, straight on NHWC images, after Flatten, with
axis 2 and 3, with transpose: true and without a bias.

An image flattened in Keras' NHWC order feeds a Dense layer whose weight rows
are reordered at conversion: no Permute layer may appear for that.
"""

from __future__ import annotations

import pytest

from ._harness import Batch, Case, assert_case, classes_of, inputs, params

pytestmark = pytest.mark.pycaffe


def ip(param: str, bottom: str = "x", top: str = "y", name: str = "ip") -> str:
    return (f'layer {{ name: "{{p}}{name}" type: "InnerProduct" bottom: "{{p}}{bottom}" top: "{{p}}{top}" '
            f"inner_product_param {{ {param} }} }}\n")


CONV = ('layer { name: "{p}conv" type: "Convolution" bottom: "{p}x" top: "{p}c" '
        "convolution_param { num_output: 3 kernel_size: 3 stride: 2 } }\n")
FLATTEN = 'layer { name: "{p}flat" type: "Flatten" bottom: "{p}c" top: "{p}f" }\n'


def no_permute(model, p):
    assert "Permute" not in classes_of(model, p), classes_of(model, p)


def exactly(*classes):
    def check(model, p):
        assert classes_of(model, p) == list(classes), classes_of(model, p)
    return check


CASES = [
    Case("rank2", inputs(x=(2, 10)), ip("num_output: 4"), check=exactly("Dense")),
    Case("rank2_nobias", inputs(x=(2, 10)), ip("num_output: 4 bias_term: false")),
    Case("rank2_transpose", inputs(x=(2, 10)), ip("num_output: 4 transpose: true")),
    Case("chain", inputs(x=(2, 6)), ip("num_output: 5", top="h", name="ip1") + ip("num_output: 3", bottom="h",
                                                                                   name="ip2")),
    # On an NHWC image: Keras flattens H, W, C; the weight rows follow.
    Case("on_image", inputs(x=(2, 3, 5, 4)), ip("num_output: 4"), check=exactly("Flatten", "Dense")),
    Case("on_image_transpose", inputs(x=(2, 3, 5, 4)), ip("num_output: 4 transpose: true"), check=no_permute),
    Case("on_one_channel_image", inputs(x=(2, 1, 5, 4)), ip("num_output: 3"), check=no_permute),
    Case("on_pooled_1x1", inputs(x=(2, 6, 1, 1)), ip("num_output: 3"), check=no_permute),
    # conv -> Flatten -> InnerProduct, as LeNet and VGG end.
    Case("flatten_then_ip", inputs(x=(2, 2, 7, 9)), CONV + FLATTEN + ip("num_output: 5", bottom="f"),
         check=exactly("Conv2D", "Flatten", "Dense")),
    Case("flatten_then_ip_transpose_nobias", inputs(x=(2, 2, 8, 6)),
         CONV + FLATTEN + ip("num_output: 5 transpose: true bias_term: false", bottom="f"), check=no_permute),
    Case("flatten_then_ip_then_ip", inputs(x=(2, 2, 7, 9)),
         CONV + FLATTEN + ip("num_output: 5", bottom="f", top="h", name="ip1") + ip("num_output: 2", bottom="h",
                                                                                    name="ip2"),
         check=no_permute),
    # axis 2: one Dense per (N, C) row over the flattened H, W.
    Case("axis2_on_image", inputs(x=(2, 3, 5, 4)), ip("num_output: 6 axis: 2")),
    Case("axis2_transpose", inputs(x=(2, 3, 5, 4)), ip("num_output: 6 axis: 2 transpose: true")),
    Case("axis3_on_image", inputs(x=(2, 3, 5, 4)), ip("num_output: 2 axis: 3")),
    Case("axis_minus1", inputs(x=(2, 3, 5, 4)), ip("num_output: 2 axis: -1 bias_term: false")),
    Case("axis2_rank3", inputs(x=(2, 3, 7)), ip("num_output: 5 axis: 2"), check=exactly("Dense")),
    Case("axis1_rank3", inputs(x=(2, 3, 7)), ip("num_output: 5 axis: 1")),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory.mktemp("dense"))


@pytest.mark.parametrize("case", params(CASES))
def test_inner_product_matches_caffe(batch, case):
    assert_case(batch, case)


def test_cases_run_as_one_net(batch):
    batch.check_all_batches()
