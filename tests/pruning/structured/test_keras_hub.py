"""keras_hub CNN backbones: the planner looks inside their composite blocks, and the pruned model is flat.

Each backbone is small, built from constructor arguments with a fixed seed
and randomised BatchNormalization statistics, and pruned at ratio 0.5. The
pruned model holds standard Keras layers and keras.ops calls only (the
composite blocks are inlined), so the Keras -> Caffe converter exports it;
real Caffe then matches it at every blob.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.pruning.structured import _models

pytest.importorskip("keras_hub")

#: family, fewest MACs removed at ratio 0.5, composite layers it has.
CASES = [
    ("ResNet", 0.65, 0),
    ("MobileNet", 0.55, 6),
    ("EfficientNet", 0.65, 3),
    ("DenseNet", 0.45, 0),
    ("CSPNet", 0.65, 0),
    ("HGNetV2", 0.55, 2),
]


def _pruned(family):
    from keraffe.pruning.structured import model_macs, plan_channels

    model = _models.keras_hub_backbone(family)
    before = [w.copy() for w in model.get_weights()]
    plan = plan_channels(model, 0.5)
    pruned = plan.apply().model
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "the original model changed"
    assert model_macs(pruned) == plan.macs_after
    return model, plan, pruned


@pytest.mark.parametrize("family, least_reduction, composites", CASES)
def test_backbone_is_pruned_through_its_blocks_into_a_flat_model(family, least_reduction, composites):
    model, plan, pruned = _pruned(family)
    assert len(plan.graph.inlined) >= composites
    assert plan.macs_after <= (1 - least_reduction) * plan.macs_before, plan.summary()
    assert plan.left_whole == {}, plan.left_whole  # every block was understood
    assert [type(layer).__module__ for layer in pruned.layers if not type(layer).__module__.startswith("keras.")] == []
    assert [tuple(t.shape) for t in pruned.outputs] == [tuple(t.shape) for t in model.outputs]  # outputs stay
    import keras

    outputs = keras.tree.flatten(pruned(_models.images(_models.KERAS_HUB_IMAGE, count=1)))
    assert all(np.all(np.isfinite(keras.ops.convert_to_numpy(o))) for o in outputs)


def test_unprunable_macs_and_layers_are_reported():
    """A grouped convolution keraffe cannot cut is left whole and named; its MACs are counted as unprunable, and
    the block feeding it keeps its channels, saying why."""
    import keras

    from keraffe.pruning.structured import plan_channels

    model = _models.keras_hub_backbone("ResNet")
    x = keras.layers.Conv2D(32, 3, groups=4, padding="same", name="grouped")(model.output)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outer = keras.Model(model.input, keras.layers.Dense(3, name="logits")(x))
    plan = plan_channels(outer, 0.5)
    assert plan.left_whole == {"grouped": "grouped convolution (groups=4)"}
    stuck = plan.unprunable_macs
    assert stuck["grouped is left whole: grouped convolution (groups=4)"] == 32 * 8 * 10 * 9 * 32 // 4
    assert plan.graph.group_of("stack1_block0_3_conv").protected_by.startswith("it enters grouped")
    assert "left whole (1 layer(s)" in plan.summary() and "MACs no ratio can remove" in plan.summary()


@pytest.mark.pycaffe
@pytest.mark.parametrize("family, least_reduction, composites", CASES)
def test_pruned_backbone_matches_real_caffe(family, least_reduction, composites, tmp_path):
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.verify import verify

    _, _, pruned = _pruned(family)
    export = keraffe.keras_to_caffe(pruned, tmp_path / "pruned.prototxt")
    report = verify(pruned, load_net(export.prototxt, export.caffemodel), per_layer=True, runtime="caffe",
                    tensor_map=export.tensor_map)
    bad = [(c.caffe_tensor, c.rel) for c in report.layers if not c.ok]
    assert report.ok and not bad, bad[:5]
    assert report.max_rel <= 1e-4
    assert len(export.tensor_map.outputs) == len(pruned.outputs)


def test_magnitude_pruning_reaches_inside_keras_hub_blocks():
    """prune_low_magnitude wraps each composite block whole and masks the convolutions inside it."""
    import keras

    from keraffe import pruning

    model = _models.keras_hub_backbone("EfficientNet")
    pruned = pruning.prune_low_magnitude(model, pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1))
    wrapped = {w.layer.name: type(w.layer).__name__ for w in pruning.pruning_wrappers(pruned)}
    assert sorted(set(wrapped.values())) == ["Conv2D", "FusedMBConvBlock", "MBConvBlock"]
    x = _models.images(_models.KERAS_HUB_IMAGE, count=4)
    pruned.compile(optimizer="adam", loss="mse")
    pruned.fit(x, np.zeros((4, *pruned.output_shape[1:]), np.float32), batch_size=4, verbose=0)
    assert all(abs(s - 0.5) < 0.02 for s in pruning.layer_sparsities(pruned).values())
    stripped = pruning.strip_pruning(pruned)
    assert [type(layer).__name__ for layer in stripped.layers] == [type(layer).__name__ for layer in model.layers]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(stripped(x)), keras.ops.convert_to_numpy(pruned(x)),
                               rtol=1e-5, atol=1e-6)
