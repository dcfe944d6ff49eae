"""keras.applications models pruned at ratio 0.5: much fewer MACs, and still exactly convertible to Caffe.

Each model is built with weights=None and a fixed seed; its BatchNormalization
statistics are randomised (seeded) so that removed channels leave non-zero
constants behind and bias folding is exercised. The pruned model is exported
with the default target (caffe1) and compared with real Caffe at every blob,
on one seeded 224x224 image.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.pruning.structured import _models

# The bar: MACs down by at least 40% (45% for VGG16) at ratio 0.5.
CASES = [("ResNet50", 0.40), ("MobileNetV2", 0.40), ("VGG16", 0.45), ("DenseNet121", 0.40), ("EfficientNetB0", 0.40)]


@pytest.mark.pycaffe
@pytest.mark.slow
@pytest.mark.parametrize("name, least_reduction", CASES)
def test_application_pruned_at_half_matches_real_caffe(name, least_reduction, tmp_path):
    import keras

    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.convert.keras_to_caffe.targets import CAFFE_1_0_TYPES
    from keraffe.pruning.structured import model_macs, plan_channels
    from keraffe.verify import verify

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None)
    _models.randomise_batchnorm(model, beta_std=0.2)
    before = [w.copy() for w in model.get_weights()]

    plan = plan_channels(model, 0.5)
    pruned = plan.apply().model

    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "the original model changed"
    assert model_macs(pruned) == plan.macs_after
    assert plan.macs_after <= (1 - least_reduction) * plan.macs_before, plan.summary()
    assert pruned.count_params() < 0.5 * model.count_params()
    assert pruned.output_shape == model.output_shape

    export = keraffe.keras_to_caffe(pruned, tmp_path / "pruned.prototxt")
    assert {layer.type for layer in export.net.layer} <= CAFFE_1_0_TYPES
    net = load_net(export.prototxt, export.caffemodel)
    report = verify(pruned, net, per_layer=True, runtime="caffe", tensor_map=export.tensor_map)
    bad = [(c.caffe_tensor, c.rel) for c in report.layers if not c.ok]
    assert report.ok and not bad, bad[:5]
    assert report.max_rel <= 1e-4
    assert len(report.layers) > 20


@pytest.mark.pycaffe
@pytest.mark.parametrize("builder, per_layer", [("residual_concat_model", True), ("squeeze_excite_model", True),
                                                ("nested_model", False)])
def test_small_pruned_models_match_real_caffe(builder, per_layer, tmp_path):
    """Every coupling the planner knows survives export; nested models are compared at their outputs
    (verify cannot build a feature model from tensors inside a nested model)."""
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.pruning.structured import prune_channels
    from keraffe.verify import verify

    pruned = prune_channels(getattr(_models, builder)(), 0.5)
    export = keraffe.keras_to_caffe(pruned, tmp_path / "pruned.prototxt")
    report = verify(pruned, load_net(export.prototxt, export.caffemodel), per_layer=per_layer, runtime="caffe",
                    tensor_map=export.tensor_map)
    assert report.ok and report.max_rel <= 1e-4
    assert all(c.ok for c in report.layers)
