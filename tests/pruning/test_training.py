"""Pruning under fit: jit_compile, callbacks, custom layers, and a step that counts batches."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest

from keraffe import pruning
from keraffe.errors import PruningError

from ._helpers import compile_for_test, numpy, random_classification, small_conv_model

pytestmark = pytest.mark.backends

BACKEND = keras.backend.backend()


def fit_pruned(jit_compile, epochs=2, samples=64, batch_size=16):
    x, y = random_classification(samples=samples)
    schedule = pruning.PolynomialDecay(0.0, 0.75, begin_step=1, end_step=5, frequency=2)
    model = pruning.prune_low_magnitude(small_conv_model(), pruning_schedule=schedule)
    compile_for_test(model, jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
                        callbacks=[pruning.UpdatePruningStep(), pruning.PruningSummaries()])
    return model, history, x


def check_pruned_fit(model, history, x, expected_steps):
    assert [w.current_step() for w in pruning.pruning_wrappers(model)] == [expected_steps - 1] * 2
    sparsities = pruning.layer_sparsities(model)
    assert sparsities["dense"] == pytest.approx(0.75, abs=1 / 1152)
    assert sparsities["conv"] == pytest.approx(1 - round(144 * 0.25) / 144)
    np.testing.assert_allclose(
        numpy(pruning.strip_pruning(model)(x)), numpy(model(x)), rtol=1e-5, atol=1e-5
    )
    assert history.history["dense/sparsity"][-1] == sparsities["dense"]


def test_fit_with_backend_default_compilation():
    model, history, x = fit_pruned(jit_compile="auto")
    check_pruned_fit(model, history, x, expected_steps=8)
    # PruningSummaries logged every epoch; sparsity only rises.
    assert len(history.history["conv/sparsity"]) == 2
    assert history.history["conv/sparsity"][0] <= history.history["conv/sparsity"][1]


@pytest.mark.skipif(BACKEND == "torch", reason="torch.compile takes about a minute; see the slow test below")
def test_fit_with_jit_compile():
    """XLA on TensorFlow, jax.jit on JAX."""
    model, history, x = fit_pruned(jit_compile=True)
    assert model.jit_compile is True
    check_pruned_fit(model, history, x, expected_steps=8)


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile is PyTorch's jit_compile")
def test_fit_with_torch_compile():
    model, history, x = fit_pruned(jit_compile=True, epochs=1, samples=96, batch_size=16)
    assert model.jit_compile is True
    check_pruned_fit(model, history, x, expected_steps=6)


def test_step_counts_training_batches_only():
    x, y = random_classification(samples=48)
    model = pruning.prune_low_magnitude(small_conv_model())
    compile_for_test(model)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y))
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert [w.current_step() for w in pruning.pruning_wrappers(model)] == [5, 5]


def test_update_pruning_step_fails_fast_without_wrappers():
    x, y = random_classification(samples=16)
    model = compile_for_test(small_conv_model())
    with pytest.raises(PruningError, match="has no PruneLowMagnitude layers"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])


TENSORBOARD = importlib.util.find_spec("tensorboard") is not None and importlib.util.find_spec("tensorflow")


@pytest.mark.skipif(not TENSORBOARD, reason="TensorBoard is not installed")
def test_pruning_summaries_write_tensorboard_events(tmp_path):
    x, y = random_classification(samples=32)
    model = compile_for_test(pruning.prune_low_magnitude(small_conv_model()))
    model.fit(x, y, batch_size=16, epochs=2, verbose=0,
              callbacks=[pruning.PruningSummaries(log_dir=tmp_path, update_freq=1)])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert sorted(events.Tags()["tensors"]) == ["conv/sparsity", "dense/sparsity"]
    # update_freq=1: one point per batch (2 per epoch); epoch ends write at the same steps.
    assert sorted({event.step for event in events.Tensors("dense/sparsity")}) == [1, 2, 3, 4]
    assert float(make_ndarray(events.Tensors("dense/sparsity")[-1].tensor_proto)) == pytest.approx(0.5)


@pytest.mark.skipif(bool(TENSORBOARD), reason="TensorBoard is installed; the test above covers it")
def test_pruning_summaries_without_tensorboard_warn_and_keep_keras_logs(tmp_path):
    x, y = random_classification(samples=32)
    model = compile_for_test(pruning.prune_low_magnitude(small_conv_model()))
    with pytest.warns(UserWarning, match="not installed, so sparsity goes to the Keras logs only"):
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0,
                            callbacks=[pruning.PruningSummaries(log_dir=tmp_path)])
    assert history.history["dense/sparsity"] == [0.5, 0.5]
    assert list(tmp_path.iterdir()) == []


def test_pruning_summaries_rejects_bad_update_freq():
    with pytest.raises(PruningError, match="`update_freq`.*'batch'"):
        pruning.PruningSummaries(update_freq="batch")


@keras.saving.register_keras_serializable(package="keraffe_tests")
class ScaledProjection(keras.layers.Layer, pruning.PrunableLayer):
    """A custom layer that opts in: prunes `projection`, not `scale`; input channels on axis 1."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.projection = self.add_weight(shape=(self.units, input_shape[-1]), name="projection")
        self.scale = self.add_weight(shape=(self.units,), initializer="ones", name="scale")

    def call(self, inputs):
        return keras.ops.matmul(inputs, keras.ops.transpose(self.projection)) * self.scale

    def get_prunable_weights(self):
        return [self.projection]

    def get_prunable_weight_axes(self):
        return [(1, 0)]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_custom_layer_protocol_prunes_its_chosen_weight_with_its_axes(tmp_path):
    inputs = keras.Input((8,))
    outputs = ScaledProjection(4, name="custom")(inputs)
    model = keras.Model(inputs, outputs)
    pruned = pruning.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    pruned.compile(optimizer="adam", loss="mse")
    pruned.fit(x, np.zeros((16, 4), "float32"), batch_size=8, epochs=1, verbose=0)
    wrapper = pruning.pruning_wrappers(pruned)[0]
    assert [v.name for v in wrapper.pruned_weights] == ["projection"]
    mask = numpy(wrapper.masks[0])
    assert (mask.reshape(4, 2, 4) == 0).sum(axis=-1).tolist() == [[2, 2]] * 4  # groups along axis 1
    pruned.save(tmp_path / "custom.keras")
    restored = keras.saving.load_model(tmp_path / "custom.keras")
    np.testing.assert_array_equal(numpy(pruning.pruning_wrappers(restored)[0].masks[0]), mask)
    np.testing.assert_allclose(numpy(restored(x)), numpy(pruned(x)), rtol=1e-5, atol=1e-5)


def test_custom_layer_protocol_errors_name_the_layer():
    class BadAxes(ScaledProjection):
        def get_prunable_weight_axes(self):
            return [(1, 0), (0, 1)]

    wrapper = pruning.PruneLowMagnitude(BadAxes(4, name="bad"))
    with pytest.raises(PruningError, match=r"layer 'bad' must return one .* \(1\), received 2"):
        wrapper.build((None, 8))


def test_fits_with_and_without_the_callback_prune_alike_and_compile_each_step_once():
    """With UpdatePruningStep the callback drives the masks and the step only applies them; without it the step
    prunes by itself. Steps count on across fits, and each mode's compiled step is kept, not retraced."""
    x, y = random_classification(samples=48)
    schedule = pruning.PolynomialDecay(0.0, 0.6, begin_step=0, end_step=8, frequency=1)
    model = compile_for_test(pruning.prune_low_magnitude(small_conv_model(), pruning_schedule=schedule))
    steps, functions = [], []
    for callbacks in ([pruning.UpdatePruningStep()], [], [pruning.UpdatePruningStep()]):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=callbacks)
        steps.append([w.current_step() for w in pruning.pruning_wrappers(model)])
        functions.append(model._keraffe_train_functions[True])
        if len(steps) == 2:
            assert pruning.layer_sparsities(model)["dense"] == pytest.approx(schedule.sparsity_at(5), abs=1e-3)
    assert steps == [[2, 2], [5, 5], [8, 8]]
    assert functions[0] is functions[2]
    assert pruning.layer_sparsities(model)["dense"] == pytest.approx(0.6, abs=1e-3)
    assert not any(w.driven_by_callback for w in pruning.pruning_wrappers(model))
