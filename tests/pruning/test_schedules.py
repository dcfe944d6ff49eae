"""Schedules: when they prune and to what sparsity, with tensor and Python-int steps."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keraffe.errors import KeraffeError, PruningError
from keraffe.pruning import ConstantSparsity, PolynomialDecay, PruningSchedule

pytestmark = pytest.mark.backends


def evaluate(schedule, step, as_tensor):
    argument = keras.ops.convert_to_tensor(step, dtype="int32") if as_tensor else step
    should_prune, sparsity = schedule(argument)
    return bool(keras.ops.convert_to_numpy(should_prune)), float(keras.ops.convert_to_numpy(sparsity))


def polynomial_reference(step, initial, final, begin, end, power):
    progress = min(1.0, max(0.0, (step - begin) / (end - begin)))
    return final + (initial - final) * (1.0 - progress) ** power


@pytest.mark.parametrize("as_tensor", [True, False], ids=["tensor-step", "int-step"])
def test_polynomial_decay_follows_zhu_gupta_curve(as_tensor):
    schedule = PolynomialDecay(0.1, 0.9, begin_step=10, end_step=110, power=3, frequency=10)
    for step in (0, 10, 35, 60, 110, 500):
        _, sparsity = evaluate(schedule, step, as_tensor)
        assert sparsity == pytest.approx(polynomial_reference(step, 0.1, 0.9, 10, 110, 3), abs=1e-6)


@pytest.mark.parametrize("as_tensor", [True, False], ids=["tensor-step", "int-step"])
def test_prunes_on_frequency_grid_and_at_an_off_grid_end_step(as_tensor):
    # end_step 105 is off the grid 10, 40, 70, 100: tfmot never prunes at 105.
    schedule = PolynomialDecay(0.0, 0.8, begin_step=10, end_step=105, frequency=30)
    pruned_steps = [step for step in range(0, 200) if evaluate(schedule, step, as_tensor)[0]]
    assert pruned_steps == [10, 40, 70, 100, 105]
    assert evaluate(schedule, 105, as_tensor)[1] == pytest.approx(0.8)


@pytest.mark.parametrize("as_tensor", [True, False], ids=["tensor-step", "int-step"])
def test_constant_sparsity_keeps_pruning_forever_by_default(as_tensor):
    schedule = ConstantSparsity(0.6, begin_step=5, frequency=7)
    pruned_steps = [step for step in range(0, 40) if evaluate(schedule, step, as_tensor)[0]]
    assert pruned_steps == list(range(5, 40, 7))
    assert [evaluate(schedule, step, as_tensor)[1] for step in (0, 5, 39)] == pytest.approx([0.6] * 3)


def test_sparsity_at_reports_python_floats():
    schedule = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4, power=1)
    assert [schedule.sparsity_at(step) for step in range(6)] == pytest.approx(
        [0.0, 0.125, 0.25, 0.375, 0.5, 0.5]
    )


@pytest.mark.parametrize(
    "build, argument, value",
    [
        (lambda: ConstantSparsity(1.0, 0), "target_sparsity", "1.0"),
        (lambda: ConstantSparsity(-0.1, 0), "target_sparsity", "-0.1"),
        (lambda: ConstantSparsity(0.5, -1), "begin_step", "-1"),
        (lambda: ConstantSparsity(0.5, 0, frequency=0), "frequency", "0"),
        (lambda: ConstantSparsity(0.5, 10, end_step=5), "end_step", "5"),
        (lambda: ConstantSparsity(0.5, 1.5), "begin_step", "1.5"),
        (lambda: PolynomialDecay(0.0, 0.8, 0, end_step=-1), "end_step", "-1"),
        (lambda: PolynomialDecay(0.0, 0.8, 0, 100, power=0), "power", "0"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(build, argument, value):
    with pytest.raises(PruningError) as raised:
        build()
    assert argument in str(raised.value)
    assert value in str(raised.value)
    assert isinstance(raised.value, KeraffeError)


def test_schedules_serialize_and_compare_by_config():
    original = PolynomialDecay(0.2, 0.7, begin_step=3, end_step=90, power=2, frequency=9)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    assert type(restored) is PolynomialDecay
    assert restored == original
    assert restored.get_config() == original.get_config()
    assert restored != PolynomialDecay(0.2, 0.7, begin_step=3, end_step=91, power=2, frequency=9)


def test_custom_schedule_protocol():
    @keras.saving.register_keras_serializable(package="keraffe_tests")
    class EveryOtherStep(PruningSchedule):
        def __init__(self, sparsity):
            self.sparsity = sparsity

        def __call__(self, step):
            step = keras.ops.convert_to_tensor(step, dtype="int32")
            return keras.ops.equal(keras.ops.mod(step, 2), 0), keras.ops.convert_to_tensor(
                self.sparsity * 1.0, "float32"
            )

        def get_config(self):
            return {"sparsity": self.sparsity}

    schedule = EveryOtherStep(0.3)
    assert [evaluate(schedule, step, True)[0] for step in range(4)] == [True, False, True, False]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert np.isclose(evaluate(restored, 2, False)[1], 0.3)
