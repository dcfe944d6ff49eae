"""keras_to_caffe.detection: PriorBox's expanded aspect ratios written back as Caffe's (aspect_ratio, flip).

The round trips through real Caffe are in test_keraffe_layers.py (PriorBox)
and tests/convert/test_round_trip.py (whole SSD nets, DetectionOutput).
"""

from __future__ import annotations

import pytest

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.shapes.detection import prior_aspect_ratios
from keraffe.convert.keras_to_caffe.detection import _caffe_aspect_ratios
from keraffe.errors import ConversionError


@pytest.mark.parametrize("ratios, flip", [([2.0], True), ([2.0, 3.0], True), ([2.0, 3.0], False), ([], True),
                                          ([0.5, 2.0], False), ([2.0, 2.0], True)])
def test_written_ratios_expand_to_the_same_list(ratios, flip):
    param = pb.PriorBoxParameter(aspect_ratio=ratios, flip=flip)
    expanded = prior_aspect_ratios(param)
    written, written_flip = _caffe_aspect_ratios(expanded)
    again = prior_aspect_ratios(pb.PriorBoxParameter(aspect_ratio=written, flip=written_flip))
    assert again == pytest.approx(expanded, abs=1e-6)


def test_ratio_inverse_pairs_are_written_as_ssd_writes_them():
    assert _caffe_aspect_ratios([1.0, 2.0, 0.5, 3.0, 1 / 3]) == ([2.0, 3.0], True)
    assert _caffe_aspect_ratios([1.0, 2.0, 3.0]) == ([2.0, 3.0], False)


def test_a_list_caffe_cannot_make_is_refused():
    with pytest.raises(ConversionError, match="do not start with 1"):
        _caffe_aspect_ratios([2.0, 0.5])
