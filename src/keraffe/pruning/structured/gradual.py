"""Gradual structured pruning inside ``fit``: rank, mask, keep training, then remove.

:class:`GradualChannelPruning` is a Keras callback. From ``start_epoch`` to
``end_epoch`` it raises the pruned fraction of every channel group along
Zhu & Gupta's cubic ramp (fast at first, gently at the end), each epoch
re-ranking channels on the current weights and zeroing the filters of the
lowest ones in every source layer of the group. Masked channels stay masked
(their filters are zeroed again after every batch, so momentum cannot regrow
them) and the network learns around them. At the end of training the masked
channels are removed for real: ``callback.pruned_model`` is the smaller model.
Because a masked channel's filter is exactly zero, removing it (with its
constant folded into the next layer's bias) changes nothing wherever the fold
is exact.

On the JAX backend the trainer holds variables in its own state; the callback
syncs that state before reading weights and after writing them, through
Keras' ``jax_state_sync``.
"""

from __future__ import annotations

import keras
import numpy as np

from keraffe.errors import PruningError
from keraffe.pruning.structured.algorithms import ChannelPlan, _MacCounter, _select
from keraffe.pruning.structured import sources
from keraffe.pruning.structured.dependency import ChannelGraph
from keraffe.pruning.structured.importance import score_groups
from keraffe.pruning.structured.options import ChannelPruningOptions


def _sync_jax_state(model) -> None:
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()


class GradualChannelPruning(keras.callbacks.Callback):
    """Prune ``ratio`` of every channel group gradually during ``fit``; read ``pruned_model`` afterwards.

    ``end_epoch`` defaults to the last epoch but one, leaving at least one
    epoch of training at the final ratio. ``importance``, ``data``,
    ``round_to``, ``min_channels`` and ``exclude`` mean what they mean for
    :func:`prune_channels`.
    """

    def __init__(self, ratio, *, start_epoch=0, end_epoch=None, importance="l1", data=None, round_to=1,
                 min_channels=1, exclude=()):
        super().__init__()
        self.options = ChannelPruningOptions(ratio=ratio, round_to=round_to, min_channels=min_channels,
                                             exclude=tuple(exclude))
        for name, value in (("start_epoch", start_epoch), ("end_epoch", end_epoch)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise PruningError(f"`{name}` must be a non-negative int, received {value!r}")
        if end_epoch is not None and end_epoch < start_epoch:
            raise PruningError(f"`end_epoch` ({end_epoch}) comes before `start_epoch` ({start_epoch})")
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.importance = importance
        self.data = data
        self.graph = None
        self.removed = np.zeros(0, dtype=np.int64)
        self.pruned_model = None
        self.plan = None
        self.history: list[tuple[int, float, int]] = []  # (epoch, ratio, channels masked)
        self._masks = []

    def ratio_at(self, epoch: int) -> float:
        end = self._end()
        if epoch < self.start_epoch:
            return 0.0
        progress = min(1.0, (epoch - self.start_epoch + 1) / (end - self.start_epoch + 1))
        return self.options.ratio * (1.0 - (1.0 - progress) ** 3)

    def _end(self) -> int:
        if self.end_epoch is not None:
            return self.end_epoch
        epochs = int(self.params.get("epochs", 1)) if self.params else 1
        return max(self.start_epoch, epochs - 2)

    def on_train_begin(self, logs=None):
        self.graph = ChannelGraph(self.model, self.options.exclude)
        self.removed = np.zeros(0, dtype=np.int64)
        self.pruned_model = None

    def on_epoch_begin(self, epoch, logs=None):
        ratio = self.ratio_at(epoch)
        if ratio <= 0 or epoch > self._end():
            return
        _sync_jax_state(self.model)
        scores = score_groups(self.importance, self.model, self.graph, self.data)
        masked = set(self.removed.tolist())
        for group, score in zip(self.graph.groups, scores):
            already = np.isin(group.channels, list(masked))
            score[already] = -np.inf  # a masked channel stays masked
        options = self.options
        self.removed, _ = _select(self.graph, scores, [ratio] * len(self.graph.groups), options)
        self._masks = self._build_masks()
        self._apply_masks()
        self.history.append((epoch, ratio, len(self.removed)))

    def on_train_batch_end(self, batch, logs=None):
        if self._masks:
            _sync_jax_state(self.model)
            self._apply_masks()

    def on_train_end(self, logs=None):
        _sync_jax_state(self.model)
        if self._masks:
            self._apply_masks()
        counter = _MacCounter(self.graph)
        kept = {}
        removed = set(self.removed.tolist())
        for group in self.graph.groups:
            kept[group.name] = (len(group), int(sum(1 for r in group.channels.tolist() if r not in removed)))
        self.plan = ChannelPlan(self.graph, self.options, self.removed, kept, counter.full, counter(self.removed),
                                counter.unprunable())
        self.pruned_model = self.plan.apply().model

    def _build_masks(self):
        """(variable, mask) pairs zeroing every masked unit's own weights in every source layer of its group."""
        removed = set(self.removed.tolist())
        masks = []
        for group in self.graph.groups:
            gone = np.array([root in removed for root in group.channels.tolist()])
            if not gone.any():
                continue
            for name in group.sources:
                layer = self.graph.layers[name]
                units = group.filters[name][gone]
                masked = np.zeros(sources.unit_count(layer), dtype=bool)
                masked[units[units >= 0]] = True
                for position, mask in sources.unit_masks(layer, masked):
                    variable = layer.weights[position]
                    masks.append((variable, mask.astype(variable.dtype)))
        return masks

    def _apply_masks(self):
        for variable, mask in self._masks:
            variable.assign(keras.ops.multiply(variable.value, mask))
