"""Training callbacks with tfmot's names: ``UpdatePruningStep`` and ``PruningSummaries``."""

from __future__ import annotations

import importlib.util
import warnings

import keras
import numpy as np

from keraffe.errors import PruningError
from keraffe.pruning.api import pruning_wrappers

__all__ = ["UpdatePruningStep", "PruningSummaries", "layer_sparsities"]


def layer_sparsities(model) -> dict[str, float]:
    """Fraction of zeros in the masks of each pruning wrapper, keyed by wrapped layer name."""
    result = {}
    for wrapper in pruning_wrappers(model):
        masks = [keras.ops.convert_to_numpy(mask) for mask in wrapper.masks]
        total = sum(mask.size for mask in masks)
        zeros = sum(int(np.count_nonzero(mask == 0)) for mask in masks)
        result[wrapper.layer.name] = zeros / total if total else 0.0
    return result


def _sync_jax_state(model) -> None:
    """The JAX trainer keeps variables in its own state between epochs; fetch them first."""
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()


class UpdatePruningStep(keras.callbacks.Callback):
    """Counts the training steps and updates the masks on pruning steps, between batches (tfmot's callback).

    While it is in a ``fit``, the compiled train step of the pruned model only
    applies the masks, so it compiles and runs about as fast as the dense
    model's: the step count lives in Python here, and on a pruning step the
    masks are recomputed eagerly before the batch (on JAX, after syncing the
    trainer's state into the variables, which the trainer then reads back).
    ``pruning_step`` is written on pruning steps and at the end of every epoch,
    so a model saved then resumes where it stopped.

    Pruning also proceeds without this callback: the train step then counts and
    prunes by itself (see :mod:`keraffe.pruning.wrapper`), at the price of a
    bigger step to compile.  Each mode keeps its own compiled train step, so
    alternating fits with and without the callback compile each once.  With it,
    ``fit`` also fails fast when the model has nothing to prune, which is
    usually a forgotten ``prune_low_magnitude``.
    """

    def __init__(self):
        super().__init__()
        self._wrappers = []
        self._steps = []

    def on_train_begin(self, logs=None):
        wrappers = pruning_wrappers(self.model)
        if not wrappers:
            raise PruningError(
                f"UpdatePruningStep was given model '{self.model.name}', which has no "
                "PruneLowMagnitude layers; call prune_low_magnitude on it before fit."
            )
        _sync_jax_state(self.model)
        self._wrappers = wrappers
        self._steps = [wrapper.current_step() for wrapper in wrappers]
        _switch_train_function(self.model, wrappers, driven=True)

    def on_train_batch_begin(self, batch, logs=None):
        synced = False
        for index, wrapper in enumerate(self._wrappers):
            self._steps[index] += 1
            should_prune, _ = wrapper.pruning_schedule(self._steps[index])
            if not bool(ops_to_bool(should_prune)):
                continue
            if not synced:
                _sync_jax_state(self.model)
                synced = True
            wrapper.prune_at(self._steps[index])

    def on_epoch_end(self, epoch, logs=None):
        self._write_steps()

    def on_train_end(self, logs=None):
        self._write_steps()
        _switch_train_function(self.model, self._wrappers, driven=False)

    def _write_steps(self) -> None:
        _sync_jax_state(self.model)
        for wrapper, step in zip(self._wrappers, self._steps):
            wrapper.pruning_step.assign(step)


def ops_to_bool(value) -> bool:
    return bool(value) if isinstance(value, bool) else bool(keras.ops.convert_to_numpy(value))


def _switch_train_function(model, wrappers, driven: bool) -> None:
    """Put the wrappers in callback-driven mode (or back) with the train step compiled for that mode.

    Keras keeps one compiled train step per model across fits; the two modes
    trace different steps, so each is kept and restored rather than retraced
    (``compile`` makes a new step, which starts the cache afresh).
    """
    if all(wrapper.driven_by_callback == driven for wrapper in wrappers):
        return
    cache = getattr(model, "_keraffe_train_functions", None)
    current = getattr(model, "train_function", None)
    if cache is None or cache.get(not driven) is not current:
        cache = {not driven: current}
    for wrapper in wrappers:
        wrapper.driven_by_callback = driven
    if cache.get(driven) is not None:
        model.train_function = cache[driven]
    elif current is not None:
        _remake_train_function(model)
    cache[driven] = getattr(model, "train_function", None)
    model._keraffe_train_functions = cache


def _remake_train_function(model) -> None:
    """A new compiled train step, traced afresh on its first call.

    JAX caches traces by the function it jits, and Keras jits the bound method
    ``model.train_step``, equal for every remake: a distinct function object
    makes JAX trace the step again for the new mode.
    """
    if keras.backend.backend() != "jax":
        model.make_train_function(force=True)
        return
    method = type(model).train_step
    model.train_step = lambda state, data: method(model, state, data)
    try:
        model.make_train_function(force=True)
    finally:
        del model.train_step


class PruningSummaries(keras.callbacks.Callback):
    """Logs the sparsity of every pruned layer: into Keras' logs, and to TensorBoard if asked.

    Each wrapped layer adds ``"<layer name>/sparsity"`` to the epoch logs, which
    ``History`` (``fit``'s return value), ``CSVLogger`` and the progress bar pick
    up.  With ``log_dir``, the same scalars are also written as TensorBoard
    summaries through ``tf.summary`` where TensorFlow and TensorBoard are
    installed (on any Keras backend); elsewhere a warning says they are not.
    ``update_freq``: ``"epoch"``, or an int N to also write TensorBoard scalars
    every N batches.
    """

    def __init__(self, log_dir=None, update_freq="epoch"):
        super().__init__()
        if update_freq != "epoch" and (
            isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1
        ):
            raise PruningError(
                f'`update_freq` must be "epoch" or a positive int, received {update_freq!r}.'
            )
        self.log_dir = None if log_dir is None else str(log_dir)
        self.update_freq = update_freq
        self._writer = None
        self._batches_seen = 0

    @property
    def async_safe(self) -> bool:
        """Epoch-only logging reads nothing per batch, so Keras may keep dispatching batches asynchronously."""
        return self.update_freq == "epoch"

    def _tensorboard_writer(self):
        if self.log_dir is None:
            return None
        if self._writer is None:
            missing = [name for name in ("tensorflow", "tensorboard") if importlib.util.find_spec(name) is None]
            if missing:
                warnings.warn(
                    f"PruningSummaries(log_dir={self.log_dir!r}): {' and '.join(missing)} not installed, "
                    "so sparsity goes to the Keras logs only.",
                    stacklevel=2,
                )
                self.log_dir = None
                return None
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def _write(self, sparsities: dict[str, float], step: int) -> None:
        writer = self._tensorboard_writer()
        if writer is None:
            return
        import tensorflow as tf

        with writer.as_default():
            for name, value in sparsities.items():
                tf.summary.scalar(f"{name}/sparsity", value, step=step)
        writer.flush()

    def on_train_begin(self, logs=None):
        self._batches_seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches_seen += 1
        if self.update_freq == "epoch" or self._batches_seen % self.update_freq:
            return
        _sync_jax_state(self.model)
        self._write(layer_sparsities(self.model), self._batches_seen)

    def on_epoch_end(self, epoch, logs=None):
        sparsities = layer_sparsities(self.model)
        if logs is not None:
            for name, value in sparsities.items():
                logs[f"{name}/sparsity"] = value
        self._write(sparsities, self._batches_seen if self.update_freq != "epoch" else epoch)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
