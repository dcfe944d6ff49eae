"""Which weights of a layer may be pruned, and along which axes their channels run.

Built-in layers are looked up in a registry keyed by class (the first match along
the class's MRO, so a subclass of ``Dense`` is pruned like ``Dense``).  A custom
layer opts in through a small protocol instead, the same method tfmot's
``PrunableLayer`` asks for::

    class MyLayer(keras.layers.Layer):
        def get_prunable_weights(self):
            return [self.kernel]               # keras.Variable objects

        # optional: one (input_axis, output_axis) pair per weight, for m:n and
        # block sparsity; the default is (-2, -1), Keras' (..., in, out) layout.
        def get_prunable_weight_axes(self):
            return [(-2, -1)]

The layer must read those weights through Keras (``self.kernel`` in ``call``,
through ``keras.ops``), because the pruning wrapper substitutes the masked value
for the variable while the layer runs.

Axes of the built-in layers (input channel = the reduction axis of the layer's
matrix multiply; m:n groups and the first block dimension run along it):

=====================================  ====================  =====  ======
layer                                  kernel layout         input  output
=====================================  ====================  =====  ======
Dense                                  (in, out)             0      1
Conv1D/2D/3D, SeparableConv pointwise  (..., in, out)        -2     -1
Conv1D/2D/3DTranspose                  (..., out, in)        -1     -2
DepthwiseConv1D/2D, Separable depthw.  (..., in, multiplier) -2     -1
Embedding                              (vocab, dim)          0      1
=====================================  ====================  =====  ======

Embedding is treated as what it computes, ``one_hot(ids) @ table``, i.e. like a
Dense kernel with the vocabulary as input channels, so ``block_size`` means the
same ``(rows, cols)`` as in tfmot.  A depthwise kernel reduces over its taps,
not its channels, so m:n there gives a regular storage pattern rather than a
tensor-core speed-up.  Recurrent cells (LSTMCell, GRUCell, SimpleRNNCell) hold
a kernel ``(in, gates * units)`` and a recurrent kernel ``(units, gates * units)``,
both pruned like Dense kernels.

A layer with no rule of its own is pruned through the layers it holds: an
LSTM, GRU or ``RNN(cell)`` through its cell (``StackedRNNCells`` through each
cell), ``Bidirectional`` through both directions, ``TimeDistributed`` through
its layer, and a composite layer (a user's or keras_hub's block built from
other layers) through every prunable layer inside it, at any depth.  The
pruning wrapper then wraps the whole layer and masks the weights inside it,
so the layer's own ``call`` runs unchanged.
"""

from __future__ import annotations

import abc
import dataclasses

import keras

from keraffe.errors import PruningError

__all__ = [
    "PrunableLayer",
    "PrunableWeight",
    "WeightRule",
    "register_prunable_layer",
    "prunable_weights",
    "why_not_prunable",
]


class PrunableLayer(abc.ABC):
    """Mixin for custom layers that choose their own prunable weights (tfmot's name).

    Inheriting it is optional: any layer with a ``get_prunable_weights()`` method
    is prunable.  It exists so tfmot code that subclasses ``PrunableLayer`` keeps
    working after the import change.
    """

    @abc.abstractmethod
    def get_prunable_weights(self):
        """The ``keras.Variable`` objects to prune."""


@dataclasses.dataclass(frozen=True)
class WeightRule:
    """Where a built-in layer keeps one prunable weight.

    ``attribute_names`` are tried in order; the first that holds a
    ``keras.Variable`` wins (Keras keeps ``Dense``'s variable in ``_kernel``
    behind a ``kernel`` property that may add LoRA terms).
    """

    attribute_names: tuple[str, ...]
    input_axis: int
    output_axis: int


@dataclasses.dataclass(frozen=True)
class PrunableWeight:
    """One weight to mask, with its channel axes (see the module table)."""

    variable: keras.Variable
    input_axis: int
    output_axis: int


_KERNEL = WeightRule(("_kernel", "kernel"), input_axis=-2, output_axis=-1)
_TRANSPOSE_KERNEL = WeightRule(("_kernel", "kernel"), input_axis=-1, output_axis=-2)

_RULES: dict[type, tuple[WeightRule, ...]] = {
    keras.layers.Dense: (_KERNEL,),
    keras.layers.Conv1D: (_KERNEL,),
    keras.layers.Conv2D: (_KERNEL,),
    keras.layers.Conv3D: (_KERNEL,),
    keras.layers.Conv1DTranspose: (_TRANSPOSE_KERNEL,),
    keras.layers.Conv2DTranspose: (_TRANSPOSE_KERNEL,),
    keras.layers.Conv3DTranspose: (_TRANSPOSE_KERNEL,),
    keras.layers.DepthwiseConv1D: (_KERNEL,),
    keras.layers.DepthwiseConv2D: (_KERNEL,),
    keras.layers.SeparableConv1D: (
        WeightRule(("depthwise_kernel",), input_axis=-2, output_axis=-1),
        WeightRule(("pointwise_kernel",), input_axis=-2, output_axis=-1),
    ),
    keras.layers.SeparableConv2D: (
        WeightRule(("depthwise_kernel",), input_axis=-2, output_axis=-1),
        WeightRule(("pointwise_kernel",), input_axis=-2, output_axis=-1),
    ),
    keras.layers.Embedding: (WeightRule(("_embeddings", "embeddings"), input_axis=0, output_axis=1),),
    keras.layers.LSTMCell: (_KERNEL, WeightRule(("recurrent_kernel",), input_axis=-2, output_axis=-1)),
    keras.layers.GRUCell: (_KERNEL, WeightRule(("recurrent_kernel",), input_axis=-2, output_axis=-1)),
    keras.layers.SimpleRNNCell: (_KERNEL, WeightRule(("recurrent_kernel",), input_axis=-2, output_axis=-1)),
}


def register_prunable_layer(layer_class: type, rules) -> None:
    """Make a layer class you cannot edit prunable, e.g. one from another library.

    ``rules``: a sequence of :class:`WeightRule`.  For your own layers, prefer the
    ``get_prunable_weights()`` protocol.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise PruningError(
            f"`layer_class` must be a keras.layers.Layer subclass, received {layer_class!r}."
        )
    rules = tuple(rules)
    if not rules or not all(isinstance(rule, WeightRule) for rule in rules):
        raise PruningError(f"`rules` must be a non-empty sequence of WeightRule, received {rules!r}.")
    _RULES[layer_class] = rules


def _rules_for(layer) -> tuple[WeightRule, ...] | None:
    for cls in type(layer).__mro__:
        if cls in _RULES:
            return _RULES[cls]
    return None


def _has_protocol(layer) -> bool:
    return callable(getattr(layer, "get_prunable_weights", None))


def _sublayers(layer) -> list:
    """The layers a layer holds directly (a cell, both directions, a block's layers), in tracking order.

    Once the layer is built, sublayers it never built (keras_hub's blocks make
    squeeze-excite convs they do not use) are not part of it.
    """
    inner = layer._flatten_layers(include_self=False, recursive=False)
    return [sub for sub in inner if sub.built or not layer.built]


def _is_bare_cell(layer) -> bool:
    """A recurrent cell used on its own: the RNN layer that runs it over a sequence is what gets wrapped."""
    return hasattr(layer, "state_size") and not isinstance(layer, keras.layers.RNN)


def _own_reason(layer) -> str | None:
    """Why a layer cannot be pruned by a rule or protocol of its own (None: it can)."""
    policy = getattr(layer, "dtype_policy", None)
    if getattr(policy, "quantization_mode", None) is not None:
        return f"quantized ({policy.quantization_mode}); prune before quantizing"
    if getattr(layer, "lora_enabled", False):
        return "LoRA is enabled; its low-rank update would refill the pruned kernel"
    if _has_protocol(layer) or _rules_for(layer) is not None:
        return None
    return f"no pruning rule for {type(layer).__name__}"


def _reason(layer) -> str | None:
    if isinstance(layer, keras.Model):
        return "a nested model; its own layers are pruned one by one"
    reason = _own_reason(layer)
    if reason is None or reason.startswith(("quantized", "LoRA")):
        return reason
    inner = _sublayers(layer)
    if inner and any(_reason(sub) is None for sub in inner):
        return None
    return reason


def why_not_prunable(layer) -> str | None:
    """Why ``layer`` passes through unpruned, or None when it can be pruned.

    Quantized and LoRA layers are left alone: their effective kernel is not the
    variable the mask would act on.  A layer with no rule of its own is
    prunable when a layer inside it is (see the module docstring).
    """
    if not isinstance(layer, keras.layers.Layer):
        return f"{type(layer).__name__} is not a Keras layer"
    if _is_bare_cell(layer) and _reason(layer) is None:
        return ("a recurrent cell is pruned through the layer that runs it: wrap keras.layers.RNN(cell) "
                "(or the LSTM, GRU or SimpleRNN layer) instead")
    return _reason(layer)


def _check_variable(layer, variable, where: str) -> None:
    if not isinstance(variable, keras.Variable):
        raise PruningError(
            f"{where} of layer '{layer.name}' must be a keras.Variable, "
            f"received {type(variable).__name__}."
        )
    if "float" not in str(variable.dtype):
        raise PruningError(
            f"{where} of layer '{layer.name}' must be a float variable to prune by "
            f"magnitude, received dtype {variable.dtype}."
        )
    if len(variable.shape) == 0:
        raise PruningError(f"{where} of layer '{layer.name}' is a scalar; there is nothing to prune.")


def _axes_from_protocol(layer, variables) -> list[tuple[int, int]]:
    getter = getattr(layer, "get_prunable_weight_axes", None)
    if getter is None:
        return [(-2, -1) if len(v.shape) >= 2 else (0, 0) for v in variables]
    axes = [tuple(pair) for pair in getter()]
    if len(axes) != len(variables):
        raise PruningError(
            f"get_prunable_weight_axes() of layer '{layer.name}' must return one "
            f"(input_axis, output_axis) pair per prunable weight ({len(variables)}), "
            f"received {len(axes)}."
        )
    for variable, (input_axis, output_axis) in zip(variables, axes):
        rank = len(variable.shape)
        for name, axis in (("input_axis", input_axis), ("output_axis", output_axis)):
            if not -rank <= axis < rank:
                raise PruningError(
                    f"get_prunable_weight_axes() of layer '{layer.name}' gives {name}={axis} "
                    f"for weight '{variable.name}' of rank {rank}."
                )
    return axes


def prunable_weights(layer) -> list[PrunableWeight]:
    """The weights to mask in a built layer, with their channel axes.

    Raises :class:`~keraffe.errors.PruningError` when the layer cannot be pruned,
    with the reason from :func:`why_not_prunable`.
    """
    reason = why_not_prunable(layer)
    if reason is not None:
        raise PruningError(f"Layer '{getattr(layer, 'name', layer)}' cannot be pruned: {reason}.")
    return _collect(layer, set())


def _collect(layer, seen: set) -> list[PrunableWeight]:
    """The layer's own prunable weights, or those of the layers inside it; each variable once."""
    if _own_reason(layer) is not None:
        found = []
        for sub in _sublayers(layer):
            if not isinstance(sub, keras.Model) and _reason(sub) is None:
                found += _collect(sub, seen)
        return found
    found = [w for w in _own_weights(layer) if id(w.variable) not in seen]
    seen.update(id(w.variable) for w in found)
    return found


def _own_weights(layer) -> list[PrunableWeight]:
    if _has_protocol(layer):
        variables = list(layer.get_prunable_weights())
        for index, variable in enumerate(variables):
            _check_variable(layer, variable, f"get_prunable_weights()[{index}]")
        axes = _axes_from_protocol(layer, variables)
        return [PrunableWeight(v, a[0], a[1]) for v, a in zip(variables, axes)]

    weights = []
    for rule in _rules_for(layer):
        variable = None
        for attribute in rule.attribute_names:
            candidate = getattr(layer, attribute, None)
            if isinstance(candidate, keras.Variable):
                variable = candidate
                break
        _check_variable(layer, variable, f"weight '{rule.attribute_names[-1]}'")
        weights.append(PrunableWeight(variable, rule.input_axis, rule.output_axis))
    return weights
