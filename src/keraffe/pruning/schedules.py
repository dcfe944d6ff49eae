"""Pruning schedules: at a given training step, whether to prune and to what sparsity.

A schedule is called with the pruning step (0 on the first training batch) and
returns ``(should_prune, sparsity)``, as in tfmot.  The pruning wrapper calls it
inside the compiled train step, where the step is a backend tensor, so a schedule
must compute with :mod:`keras.ops` only; it then runs unchanged on TensorFlow,
JAX and PyTorch, under ``jit_compile`` and in eager mode alike.

Differences from tfmot, on purpose:

* A schedule also prunes *at* ``end_step``, even when ``end_step - begin_step`` is
  not a multiple of ``frequency``.  tfmot prunes only on frequency boundaries, so
  with such an ``end_step`` it never reaches its final sparsity.
* Schedules are registered Keras objects: a model saved in the middle of pruning
  reloads with its schedule under ``safe_mode``.
"""

from __future__ import annotations

import keras
from keras import ops

from keraffe.errors import PruningError

__all__ = ["PruningSchedule", "ConstantSparsity", "PolynomialDecay"]


def _check_int(name: str, value, minimum: int | None = None) -> int:
    """Step counts come from user code and configs; reject floats and bools early."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PruningError(f"`{name}` must be an int, received {value!r}.")
    if minimum is not None and value < minimum:
        raise PruningError(f"`{name}` must be >= {minimum}, received {value!r}.")
    return value


def _check_sparsity(name: str, value) -> float:
    """Sparsity 1.0 would remove every weight; tfmot rejects it too."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PruningError(f"`{name}` must be a number in [0, 1), received {value!r}.")
    if not 0.0 <= float(value) < 1.0:
        raise PruningError(f"`{name}` must be in [0, 1), received {value!r}.")
    return float(value)


def _check_step_range(begin_step: int, end_step: int, frequency: int) -> None:
    _check_int("begin_step", begin_step, minimum=0)
    _check_int("end_step", end_step)
    _check_int("frequency", frequency, minimum=1)
    if end_step != -1 and end_step < begin_step:
        raise PruningError(
            f"`end_step` must be -1 (prune forever) or >= begin_step={begin_step}, "
            f"received end_step={end_step}."
        )


@keras.saving.register_keras_serializable(package="keraffe")
class PruningSchedule:
    """Base class for pruning schedules; subclass it to write your own.

    Implement ``__call__(step) -> (should_prune, sparsity)`` with :mod:`keras.ops`
    (``step`` may be a Python int or a scalar int32 tensor; return a boolean and a
    float32 scalar, as tensors or, for an int step, optionally as Python values)
    and ``get_config()``; register the subclass with
    ``keras.saving.register_keras_serializable`` so models that use it reload.
    :meth:`should_prune_in_step` gives the usual begin/end/frequency rule.
    """

    def __call__(self, step):
        raise NotImplementedError(
            f"{type(self).__name__} must implement __call__(step) -> (should_prune, sparsity)."
        )

    def get_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement get_config().")

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    @staticmethod
    def should_prune_in_step(step, begin_step: int, end_step: int, frequency: int):
        """True on steps ``begin_step + k * frequency`` up to ``end_step``, and at ``end_step``.

        ``end_step == -1`` means "keep pruning forever".  Pruning at ``end_step`` as
        well is what makes a schedule reach its final sparsity whatever the frequency.
        A Python int step gives a Python bool (PyTorch's eager train step passes
        one, where tensor ops on scalars would cost more than the rest of the wrapper).
        """
        if isinstance(step, int):
            on_turn = (step - begin_step) % frequency == 0 or step == end_step
            return step >= begin_step and (end_step < 0 or step <= end_step) and on_turn
        step = ops.convert_to_tensor(step, dtype="int32")
        started = ops.greater_equal(step, begin_step)
        on_frequency = ops.equal(ops.mod(step - begin_step, frequency), 0)
        if end_step < 0:
            return ops.logical_and(started, on_frequency)
        not_ended = ops.less_equal(step, end_step)
        on_turn = ops.logical_or(on_frequency, ops.equal(step, end_step))
        return ops.logical_and(ops.logical_and(started, not_ended), on_turn)

    def sparsity_at(self, step: int) -> float:
        """The schedule's sparsity at ``step`` as a Python float, for reports."""
        _, sparsity = self(int(step))
        return float(ops.convert_to_numpy(sparsity))

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


@keras.saving.register_keras_serializable(package="keraffe")
class ConstantSparsity(PruningSchedule):
    """Prune to one fixed sparsity, every ``frequency`` steps from ``begin_step``.

    Same arguments as ``tfmot.sparsity.keras.ConstantSparsity``.
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.target_sparsity = _check_sparsity("target_sparsity", target_sparsity)
        _check_step_range(begin_step, end_step, frequency)
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency

    def __call__(self, step):
        should_prune = self.should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )
        if isinstance(step, int):
            return should_prune, self.target_sparsity
        return should_prune, ops.convert_to_tensor(self.target_sparsity, dtype="float32")

    def get_config(self) -> dict:
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="keraffe")
class PolynomialDecay(PruningSchedule):
    """Raise sparsity from ``initial_sparsity`` to ``final_sparsity`` along a polynomial.

    ``sparsity(step) = final + (initial - final) * (1 - p) ** power`` with
    ``p = (step - begin_step) / (end_step - begin_step)`` clipped to [0, 1]: the
    gradual schedule of Zhu & Gupta (2017), pruning fast early while the network
    has redundancy and slowly near the end.  Same arguments as
    ``tfmot.sparsity.keras.PolynomialDecay``; it also prunes at ``end_step``.
    """

    def __init__(
        self,
        initial_sparsity,
        final_sparsity,
        begin_step,
        end_step,
        power=3,
        frequency=100,
    ):
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _check_sparsity("final_sparsity", final_sparsity)
        _check_step_range(begin_step, end_step, frequency)
        if end_step == -1 or end_step == begin_step:
            raise PruningError(
                f"PolynomialDecay needs end_step > begin_step={begin_step} to spread "
                f"pruning over, received end_step={end_step}."
            )
        if isinstance(power, bool) or not isinstance(power, (int, float)) or power <= 0:
            raise PruningError(f"`power` must be a positive number, received {power!r}.")
        self.begin_step = begin_step
        self.end_step = end_step
        self.power = power
        self.frequency = frequency

    def __call__(self, step):
        should_prune = self.should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )
        if isinstance(step, int):
            progress = min(1.0, max(0.0, (step - self.begin_step) / (self.end_step - self.begin_step)))
            sparsity = self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (
                1.0 - progress
            ) ** self.power
            return should_prune, sparsity
        step = ops.cast(ops.convert_to_tensor(step, dtype="int32"), "float32")
        progress = ops.clip(
            (step - float(self.begin_step)) / float(self.end_step - self.begin_step), 0.0, 1.0
        )
        sparsity = self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * ops.power(
            1.0 - progress, float(self.power)
        )
        return should_prune, ops.cast(sparsity, "float32")

    def get_config(self) -> dict:
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }
