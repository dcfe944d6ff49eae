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
    """Kept from tfmot so training code migrates unchanged; here it only checks the model.

    tfmot's callback writes the optimizer step into every wrapper before each
    batch.  keraffe advances the step inside the compiled train step instead,
    which costs nothing per batch and also works where a callback cannot reach the
    variables between batches (the JAX trainer keeps them in its own state).  So
    pruning proceeds with or without this callback; with it, ``fit`` fails fast
    when the model has nothing to prune, which is usually a forgotten
    ``prune_low_magnitude``.
    """

    def on_train_begin(self, logs=None):
        if not pruning_wrappers(self.model):
            raise PruningError(
                f"UpdatePruningStep was given model '{self.model.name}', which has no "
                "PruneLowMagnitude layers; call prune_low_magnitude on it before fit."
            )


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
