"""A new Keras model from an old one's graph, with some layers replaced by cut copies.

The graph is replayed node by node, as Keras' own Functional model runs it:
each layer is recreated once from its (possibly changed) config and called
with the same arguments on the new tensors; raw keras.ops calls are replayed
as they are (or by a replacement with new channel counts); nested models
become new nested models. A composite layer whose call was traced (``inlined``,
from the channel graph) is not recreated: its traced graph is replayed in its
place, so the new model is flat, made of standard layers and ops only, which
is what the Keras -> Caffe converter reads. Weights are set after the graph is
built, so the original model is never touched.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import keras
import numpy as np

from keraffe.keras_graph import calls, functional_of, input_structure, is_model, output_structure, produced_by

LayerSpec = tuple[dict, list]
#: Given an old layer, its new (config, weights), or None to copy it unchanged.
SpecFunction = Callable[[object], "LayerSpec | None"]


class _Rebuilder:
    def __init__(self, spec_for: SpecFunction, input_channels: Callable[[object], "int | None"],
                 inlined: dict | None = None, op_for=None, name_for=None):
        self.spec_for = spec_for
        self.input_channels = input_channels
        self.inlined = inlined or {}
        self.op_for = op_for or (lambda operation: None)
        self.name_for = name_for
        self.layers: dict[int, tuple[object, list]] = {}
        self.models: dict[int, object] = {}

    def layer(self, old):
        key = id(old)
        if key not in self.layers:
            spec = self.spec_for(old)
            config, weights = spec if spec is not None else (layer_config(old), old.get_weights())
            if self.name_for is not None:
                config = dict(config, name=self.name_for(old))
            new = type(old).from_config(config)
            self.layers[key] = (new, weights)
        return self.layers[key][0]

    def model(self, old):
        key = id(old)
        if key not in self.models:
            inlined = {key[0] for key in self.inlined}
            if isinstance(old, keras.Sequential) and not any(id(layer) in inlined for layer in old.layers):
                self.models[key] = self._sequential(old)
            elif isinstance(old, keras.Sequential):  # a composite in it is inlined: the copy is functional
                self.models[key] = self._replay_functional(functional_of(old))
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

    def _replay_calls(self, graph, tensors: dict) -> None:
        for call in calls(graph):
            operation = call.operation
            traced = self.inlined.get((id(operation), call.index))
            if traced is not None:
                for inner, outer in zip(traced.inputs, call.inputs):
                    tensors[id(inner)] = tensors[id(outer)]
                self._replay_calls(traced, tensors)
                for outer, inner in zip(call.outputs, traced.outputs):
                    tensors[id(outer)] = tensors[id(inner)]
                continue
            if is_model(operation):
                new_operation = self.model(operation)
            elif isinstance(operation, keras.layers.Layer):
                new_operation = self.layer(operation)
            else:  # a raw keras.ops call: stateless, replayed as it is or with new channel counts
                new_operation = self.op_for(operation) or operation
            for old_tensor, new_tensor in zip(call.outputs, call.replay(new_operation, tensors)):
                tensors[id(old_tensor)] = new_tensor

    def _replay_functional(self, old):
        tensors: dict[int, object] = {}
        for tensor in old.inputs:
            tensors[id(tensor)] = self._input_like(tensor)
        self._replay_calls(old, tensors)
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


def layer_config(layer) -> dict:
    """``layer.get_config()``, or for a layer that takes no arguments of its own, its base fields.

    Keras builds the config of a layer without ``get_config`` from its
    constructor arguments and gives up when one is an object, such as the
    dtype policy keras_hub hands ``Identity``; a layer whose constructor takes
    nothing but the base keywords is fully described by them.
    """
    try:
        return layer.get_config()
    except NotImplementedError:
        parameters = inspect.signature(type(layer).__init__).parameters
        if layer.weights or any(p.kind not in (p.VAR_KEYWORD,) and name != "self" for name, p in parameters.items()):
            raise
        return {"name": layer.name, "trainable": layer.trainable,
                "dtype": keras.saving.serialize_keras_object(layer.dtype_policy)}


def rebuild_model(model, spec_for: SpecFunction, input_channels=lambda tensor: None, *, inlined=None, op_for=None,
                  name_for=None):
    """The model's graph replayed with each layer's (config, weights) from ``spec_for``.

    ``inlined`` maps (id(layer), call index) to the traced graph replayed in
    place of that composite layer call; ``op_for(op)`` gives a replacement for
    a raw keras.ops call (None: replay it as it is); ``name_for(layer)`` names
    each new layer (a flat model needs unique names).
    """
    builder = _Rebuilder(spec_for, input_channels, inlined, op_for, name_for)
    new = builder.model(model)
    builder.set_weights()
    return new


def copy_model(model):
    """An independent copy of a functional or Sequential model: same graph, same weights, new variables."""
    return rebuild_model(model, lambda layer: None)
