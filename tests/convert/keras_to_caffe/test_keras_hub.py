"""keras_hub's CNN vision backbones export and match real Caffe, blob by blob.

The backbones are built from constructor arguments by bench/hub_backbones.py
(small configurations, a non-square input, seeded weights); MobileNet's,
EfficientNet's and HGNetV2's blocks are composite layers that convert by
inlining. Three families run in every test pass (composite blocks with
squeeze-excite, a Variable times a tensor, keras.ops padding with -inf before
pooling); the whole sweep, whose results make the README's keras_hub table, is
the slow test (and the bench).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.pycaffe

BENCH = Path(__file__).resolve().parents[3] / "bench" / "hub_backbones.py"


def backbones():
    spec = importlib.util.spec_from_file_location("hub_backbones", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HUB = backbones()
REPRESENTATIVE = ("MobileNet", "HGNetV2", "ResNetV2")


def check_backbone(family, tmp_path):
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.convert.keras_to_caffe.targets import CAFFE_1_0_TYPES
    from keraffe.verify import verify

    pytest.importorskip("keras_hub")
    model = HUB.build(family)
    assert model.input_shape[1] != model.input_shape[2]
    export = keraffe.keras_to_caffe(model, tmp_path / "net.prototxt")
    assert {layer.type for layer in export.net.layer} <= CAFFE_1_0_TYPES
    report = verify(model, load_net(export.prototxt, export.caffemodel), per_layer=True, runtime="caffe",
                    tensor_map=export.tensor_map)
    bad = [(c.caffe_tensor, c.rel) for c in report.layers if not c.ok]
    assert not bad and report.outputs and all(c.ok for c in report.outputs), bad[:5]
    return export, report


@pytest.mark.parametrize("family", REPRESENTATIVE)
def test_representative_backbones_match_real_caffe(family, tmp_path):
    export, report = check_backbone(family, tmp_path)
    assert len(report.layers) >= 5
    inlined = [item for item in export.report if item.note.startswith("composite layer inlined")]
    assert bool(inlined) == (family != "ResNetV2"), [item.keras_layer for item in inlined]


@pytest.mark.slow
@pytest.mark.parametrize("family", [f for f in HUB.BACKBONES if f not in REPRESENTATIVE])
def test_every_backbone_family_matches_real_caffe(family, tmp_path):
    check_backbone(family, tmp_path)


def test_the_readme_table_covers_every_family_the_issue_names():
    import json

    results = json.loads((BENCH.parent / "results" / "keras_hub.json").read_text())
    assert set(results) == set(HUB.BACKBONES)
    assert {"ResNet", "MobileNet", "EfficientNet", "DenseNet", "VGG", "Xception", "CSPNet", "HGNetV2"} <= set(results)
    assert all(not value["caffe"].startswith("failed") and "MISMATCH" not in value["caffe"]
               for value in results.values())
