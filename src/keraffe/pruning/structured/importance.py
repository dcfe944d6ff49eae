"""How important each coupled channel is: one score per channel of a group, higher kept first.

A criterion is any callable ``criterion(model, graph, group) -> np.ndarray``
with one score per channel of ``group`` (see :class:`ChannelGroup`:
``group.filters[layer]`` gives each channel's filter index in each source
layer). The built-in ones:

* ``"l1"`` / ``"l2"``: the L1 norm / squared L2 norm of each source filter
  (kernel and bias), averaged over the group's source layers, each layer's
  norms first divided by their mean so that big and small layers weigh alike.
* ``"bn_gamma"``: |gamma| of the BatchNormalization layers that see the channel
  (network slimming); groups without one fall back to ``"l1"``.
* ``"taylor"``: first-order Taylor, sum |w * dL/dw| over each filter, with the
  gradient summed over ``data`` (needs ``data=(x, y)``). Gradients come from
  Keras' own training step (an optimizer that records instead of updating), so
  it runs on TensorFlow, JAX and PyTorch alike.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from keraffe.errors import PruningError
from keraffe.pruning.structured import sources
from keraffe.pruning.structured.rules import CHANNELWISE

Criterion = Callable[..., np.ndarray]
NAMES = ("l1", "l2", "bn_gamma", "taylor")


def _filter_scores(layer, per_weight: Callable[[np.ndarray], np.ndarray], grads=None) -> np.ndarray:
    """One score per unit of a source layer from its own weights (or their products with the gradients).

    ``grads`` holds one gradient per ``layer.weights`` position (None where
    there is none, e.g. BatchNormalization statistics).
    """
    values = [np.asarray(keras.ops.convert_to_numpy(v.value), dtype=np.float64) for v in layer.weights]
    if grads is not None:
        values = [value * grad if grad is not None else np.zeros_like(value) for value, grad in zip(values, grads)]
    return sources.unit_scores(layer, values, per_weight)


def _reduce(group, per_layer_scores: dict[str, np.ndarray]) -> np.ndarray:
    total = np.zeros(len(group))
    count = np.zeros(len(group))
    for layer_name, scores in per_layer_scores.items():
        index = group.filters[layer_name]
        present = index >= 0
        values = scores[index[present]]
        mean = float(np.mean(scores)) or 1.0
        total[present] += values / mean
        count[present] += 1
    return total / np.maximum(count, 1)


def l1(model, graph, group) -> np.ndarray:
    return _reduce(group, {name: _filter_scores(graph.layers[name], np.abs) for name in group.sources})


def l2(model, graph, group) -> np.ndarray:
    return _reduce(group, {name: _filter_scores(graph.layers[name], np.square) for name in group.sources})


def bn_gamma(model, graph, group) -> np.ndarray:
    position = {int(root): i for i, root in enumerate(group.channels)}
    total = np.zeros(len(group))
    count = np.zeros(len(group))
    seen = set()
    for record in graph.records:
        layer = record.operation
        if record.kind != CHANNELWISE or type(layer).__name__ != "BatchNormalization" or not layer.scale:
            continue
        if layer.name in seen:
            continue
        seen.add(layer.name)
        gamma = np.abs(np.asarray(keras.ops.convert_to_numpy(layer.gamma.value), dtype=np.float64))
        roots = graph.roots[record.in_layouts[0]]
        for channel_position, root in enumerate(roots.tolist()):
            index = position.get(root)
            if index is not None:
                total[index] += gamma[channel_position]
                count[index] += 1
    if not count.any():
        return l1(model, graph, group)
    return total / np.maximum(count, 1)


class _GradientRecorder(keras.optimizers.Optimizer):
    """An optimizer that adds each gradient to a slot and leaves the variable alone."""

    def __init__(self):
        super().__init__(learning_rate=0.0, name="gradient_recorder")

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.sums = [self.add_variable_from_reference(v, name="gradient_sum") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        self.assign_add(self.sums[self._get_variable_index(variable)], gradient)


def _default_loss(model, y):
    loss = getattr(model, "loss", None)
    if loss:
        return loss
    last = model.layers[-1]
    softmax = getattr(getattr(last, "activation", None), "__name__", "") == "softmax" or \
        type(last).__name__ == "Softmax"
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer) and (y.ndim == 1 or y.shape[-1] == 1):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax)
    if y.ndim == 2 and y.shape[-1] == model.outputs[0].shape[-1] and y.shape[-1] > 1:
        return keras.losses.CategoricalCrossentropy(from_logits=not softmax)
    return keras.losses.MeanSquaredError()


class Taylor:
    """First-order Taylor importance over ``data``; ``loss`` defaults to the model's, or a guess from y."""

    def __init__(self, loss=None, batch_size: int = 32):
        self.loss = loss
        self.batch_size = batch_size
        self._cache_key = None
        self._grads = None

    def gradients(self, model, data) -> dict[str, list]:
        """Gradient of the loss summed over ``data``, by layer name, one per ``layer.weights`` position."""
        if self._cache_key == (id(model), id(data)):
            return self._grads
        from keraffe.pruning.structured.rebuild import copy_model

        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise PruningError(f"importance 'taylor' needs `data=(x, y)`, received {type(data).__name__}")
        x, y = data
        clone = copy_model(model)
        recorder = _GradientRecorder()
        clone.compile(optimizer=recorder, loss=self.loss or _default_loss(model, y))
        clone.fit(x, y, batch_size=self.batch_size, epochs=1, shuffle=False, verbose=0)
        index = {id(v): i for i, v in enumerate(clone.trainable_variables)}
        grads: dict[str, list] = {}
        for layer in _flat_layers(clone):
            grads[layer.name] = [
                np.asarray(keras.ops.convert_to_numpy(recorder.sums[index[id(v)]].value)) if id(v) in index else None
                for v in layer.weights]
        self._cache_key, self._grads = (id(model), id(data)), grads
        return grads

    def __call__(self, model, graph, group, data=None) -> np.ndarray:
        if data is None:
            raise PruningError("importance 'taylor' needs `data=(x, y)`: gradients are taken on it")
        grads = self.gradients(model, data)
        return _reduce(group, {name: _filter_scores(graph.layers[name], np.abs, self._for(graph, name, grads))
                               for name in group.sources})

    @staticmethod
    def _for(graph, name, grads) -> list:
        layer = graph.layers[name]
        found = grads.get(layer.name)
        if found is None or len(found) != len(layer.weights):
            raise PruningError(f"importance 'taylor' found no gradients for layer {name!r}")
        return found


def _flat_layers(model):
    """Every layer of a model, those inside nested models and composite layers included."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        yield layer


def resolve(importance) -> Criterion:
    """A criterion from a name or a callable; a wrong name raises PruningError."""
    if callable(importance):
        return importance
    table = {"l1": l1, "l2": l2, "bn_gamma": bn_gamma}
    if importance == "taylor":
        return Taylor()
    if importance not in table:
        raise PruningError(f"`importance` must be one of {', '.join(NAMES)} or a callable, received {importance!r}")
    return table[importance]


def score_groups(importance, model, graph, data=None) -> list[np.ndarray]:
    """Scores for every group, each a float array with one entry per channel."""
    criterion = resolve(importance)
    needs_data = isinstance(criterion, Taylor)
    scores = []
    for group in graph.groups:
        if not group.prunable.any():
            scores.append(np.zeros(len(group)))
            continue
        value = criterion(model, graph, group, data) if needs_data else criterion(model, graph, group)
        value = np.asarray(value, dtype=np.float64).reshape(-1)
        if value.shape != (len(group),):
            raise PruningError(f"`importance` returned {value.shape[0]} scores for group '{group.name}', "
                               f"which has {len(group)} channels")
        scores.append(value)
    return scores
