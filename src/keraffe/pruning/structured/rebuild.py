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
                self.models[key] = self._functional(old)
        return self.models[key]

    def _input_like(self, tensor, name):
        shape = list(tensor.shape)
        channels = self.input_channels(tensor)
        if channels is not None:
            shape[-1] = channels
        return keras.Input(batch_shape=tuple(shape), dtype=tensor.dtype, name=name)

    def _sequential(self, old):
        functional = old._functional
        inputs = [self._input_like(t, t._keras_history.operation.name) for t in functional.inputs]
        layers = [self._child(layer) for layer in old.layers]
        return keras.Sequential([inputs[0], *layers], name=old.name)

    def _child(self, operation):
        from keras.src.models.functional import Functional

        if isinstance(operation, (Functional, keras.Sequential)):
            return self.model(operation)
        return self.layer(operation)

    def _functional(self, old):
        from keras.src.models.functional import Functional

        tensors: dict[int, object] = {}
        new_inputs = []
        for tensor in old.inputs:
            new = self._input_like(tensor, tensor._keras_history.operation.name)
            tensors[id(tensor)] = new
            new_inputs.append(new)
        for depth in sorted(old._nodes_by_depth, reverse=True):
            for node in old._nodes_by_depth[depth]:
                if node.is_input or not node.operation:
                    continue
                operation = node.operation
                if isinstance(operation, (Functional, keras.Sequential)):
                    new_operation = self.model(operation)
                elif isinstance(operation, keras.layers.Layer):
                    new_operation = self.layer(operation)
                else:
                    new_operation = operation  # a raw keras.ops call: stateless, replayed as it is
                args, kwargs = node.arguments.fill_in(tensors)
                outputs = keras.tree.flatten(new_operation(*args, **kwargs))
                for old_tensor, new_tensor in zip(node.outputs, outputs):
                    tensors[id(old_tensor)] = new_tensor
        outputs = keras.tree.map_structure(lambda t: tensors[id(t)], old._outputs_struct)
        inputs = keras.tree.map_structure(lambda t: tensors[id(t)], old._inputs_struct)
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
