"""A new Keras model from an old one's graph, with some layers replaced by cut copies.

The graph is replayed node by node, as Keras' own Functional model runs it:
each layer is recreated once from its (possibly changed) config and called
with the same arguments on the new tensors; raw keras.ops calls are replayed
as they are; nested models become new nested models. Weights are set after
the graph is built, so the original model is never touched.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from keraffe.keras_graph import calls, functional_of, input_structure, is_model, output_structure, produced_by

LayerSpec = tuple[dict, list]
#: Given an old layer, its new (config, weights), or None to copy it unchanged.
SpecFunction = Callable[[object], "LayerSpec | None"]


class _Rebuilder:
    def __init__(self, spec_for: SpecFunction, input_channels: Callable[[object], "int | None"]):
        self.spec_for = spec_for
        self.input_channels = input_channels
        self.layers: dict[int, tuple[object, list]] = {}
        self.models: dict[int, object] = {}

    def layer(self, old):
        key = id(old)
        if key not in self.layers:
            spec = self.spec_for(old)
            config, weights = spec if spec is not None else (old.get_config(), old.get_weights())
            new = type(old).from_config(config)
            self.layers[key] = (new, weights)
        return self.layers[key][0]

    def model(self, old):
        key = id(old)
        if key not in self.models:
            if isinstance(old, keras.Sequential):
                self.models[key] = self._sequential(old)
            else:
                self.models[key] = self._replay_functional(old)
        return self.models[key]

    def _input_like(self, tensor):
        shape = list(tensor.shape)
        channels = self.input_channels(tensor)
        if channels is not None:
            shape[-1] = channels
        return keras.Input(batch_shape=tuple(shape), dtype=tensor.dtype, name=produced_by(tensor)[0].name)

    def _sequential(self, old):
        inputs = [self._input_like(t) for t in functional_of(old).inputs]
        layers = [self._child(layer) for layer in old.layers]
        return keras.Sequential([inputs[0], *layers], name=old.name)

    def _child(self, operation):
        return self.model(operation) if is_model(operation) else self.layer(operation)

    def _replay_functional(self, old):
        tensors: dict[int, object] = {}
        for tensor in old.inputs:
            tensors[id(tensor)] = self._input_like(tensor)
        for call in calls(old):
            operation = call.operation
            if is_model(operation):
                new_operation = self.model(operation)
            elif isinstance(operation, keras.layers.Layer):
                new_operation = self.layer(operation)
            else:
                new_operation = operation  # a raw keras.ops call: stateless, replayed as it is
            for old_tensor, new_tensor in zip(call.outputs, call.replay(new_operation, tensors)):
                tensors[id(old_tensor)] = new_tensor
        outputs = keras.tree.map_structure(lambda t: tensors[id(t)], output_structure(old))
        inputs = keras.tree.map_structure(lambda t: tensors[id(t)], input_structure(old))
        return keras.Model(inputs, outputs, name=old.name)

    def set_weights(self) -> None:
        for new, weights in self.layers.values():
            if weights:
                new.set_weights([np.asarray(w) for w in weights])
            finalize = getattr(new, "finalize_state", None)
            if callable(finalize):
                finalize()


def rebuild_model(model, spec_for: SpecFunction, input_channels=lambda tensor: None):
    """The model's graph replayed with each layer's (config, weights) from ``spec_for``."""
    builder = _Rebuilder(spec_for, input_channels)
    new = builder.model(model)
    builder.set_weights()
    return new


def copy_model(model):
    """An independent copy of a functional or Sequential model: same graph, same weights, new variables."""
    return rebuild_model(model, lambda layer: None)
