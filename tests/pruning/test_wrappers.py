"""Magnitude pruning through wrappers and composite layers: recurrent layers and their cells, Bidirectional,
TimeDistributed, and the layers inside a composite block; strip_pruning gives the original classes back."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keraffe import pruning
from keraffe.errors import PruningError

from ._helpers import numpy

pytestmark = pytest.mark.backends

L = keras.layers


@keras.saving.register_keras_serializable(package="keraffe_tests")
class ResidualConvBlock(L.Layer):
    """A composite layer in the style of keras_hub's blocks: two convolutions, a norm and a residual add."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.expand = L.Conv2D(filters, 1, name="expand")
        self.norm = L.BatchNormalization(name="norm")
        self.project = L.Conv2D(filters, 3, padding="same", name="project")

    def build(self, input_shape):
        self.expand.build(input_shape)
        shape = self.expand.compute_output_shape(input_shape)
        self.norm.build(shape)
        self.project.build(shape)

    def call(self, x, training=None):
        y = self.expand(x)
        return keras.ops.add(y, self.project(keras.ops.relu(self.norm(y, training=training))))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def sequence_model():
    x = keras.Input((4, 3))
    y = L.LSTM(8, return_sequences=True, name="lstm")(x)
    y = L.Bidirectional(L.GRU(4, return_sequences=True), name="bi")(y)
    y = L.RNN(L.StackedRNNCells([L.SimpleRNNCell(6), L.LSTMCell(4)]), return_sequences=True, name="stacked")(y)
    y = L.TimeDistributed(L.Dense(3), name="td")(y)
    return keras.Model(x, y, name="sequences")


def block_model():
    x = keras.Input((6, 6, 2))
    y = ResidualConvBlock(8, name="block")(x)
    y = L.GlobalAveragePooling2D()(y)
    return keras.Model(x, L.Dense(3, name="logits")(y), name="blocks")


#: model, input shape, the kernels (owner layer name, weight name) each wrapped layer must prune
CASES = {
    "sequences": (sequence_model, (4, 3), {
        "lstm": 2, "bi": 4, "stacked": 4, "td": 1}),
    "blocks": (block_model, (6, 6, 2), {"block": 2, "logits": 1}),
}


def _fit(model, shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *shape)).astype("float32")
    y = rng.normal(size=(8, *model.output_shape[1:])).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    return x


@pytest.mark.parametrize("case", sorted(CASES))
def test_wrappers_and_blocks_reach_the_target_and_strip_back(case):
    build, shape, expected = CASES[case]
    model = build()
    pruned = pruning.prune_low_magnitude(model, pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1))
    wrappers = {w.layer.name: w for w in pruning.pruning_wrappers(pruned)}
    assert {name: len(w.masks) for name, w in wrappers.items()} == expected
    x = _fit(pruned, shape)
    for name, wrapper in wrappers.items():
        for mask in wrapper.masks:
            assert abs(1.0 - numpy(mask).mean() - 0.5) < 0.05, (name, mask.name)
    stripped = pruning.strip_pruning(pruned)
    assert [type(layer) for layer in stripped.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_allclose(numpy(stripped(x)), numpy(pruned(x)), rtol=1e-5, atol=1e-6)
    kernels = [w for layer in stripped.layers for w in layer.weights if "kernel" in w.name and len(w.shape) > 1]
    assert all(0.45 < float(np.mean(numpy(k) == 0)) < 0.55 for k in kernels)


def test_pruned_block_saves_and_reloads(tmp_path):
    pruned = pruning.prune_low_magnitude(block_model(), pruning_schedule=pruning.ConstantSparsity(0.5, 0, 1))
    x = _fit(pruned, (6, 6, 2))
    pruned.save(tmp_path / "pruned.keras")
    again = keras.saving.load_model(tmp_path / "pruned.keras")
    np.testing.assert_allclose(numpy(again(x)), numpy(pruned(x)), rtol=1e-5, atol=1e-6)


def test_a_bare_cell_names_the_layer_to_wrap_instead():
    cell = L.LSTMCell(4)
    with pytest.raises(PruningError, match=r"wrap keras.layers.RNN\(cell\)"):
        pruning.prune_low_magnitude(cell)
    wrapped = pruning.prune_low_magnitude(L.RNN(cell))
    assert isinstance(wrapped, pruning.PruneLowMagnitude)
