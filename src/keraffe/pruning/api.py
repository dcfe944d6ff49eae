"""``prune_low_magnitude`` and ``strip_pruning``: tfmot's entry points for Keras 3 models.

Unlike tfmot, pruning a model copies it: the returned model has its own layers
(with the original weights), so training it leaves the dense model intact for
comparison.  A single layer (or a list of layers) is wrapped in place, which is
how a model is pruned from inside its own definition.
"""

from __future__ import annotations

import contextlib
import warnings

import keras

from keraffe.errors import PruningError
from keraffe.pruning import prunable as prunable_lib
from keraffe.pruning.masks import SparsityPattern
from keraffe.pruning.schedules import ConstantSparsity, PruningSchedule
from keraffe.pruning.wrapper import PruneLowMagnitude

__all__ = ["prune_low_magnitude", "strip_pruning", "prune_scope", "pruning_wrappers"]


def _copy_layer(layer, weights=None):
    """A new layer with the same config and (given or current) weights, ready to call."""
    copy = layer.__class__.from_config(layer.get_config())
    build_config = layer.get_build_config() if layer.built else None
    if build_config:
        copy.build_from_config(build_config)
        if len(copy.weights) != len(layer.weights):
            _build_by_calling(copy, build_config)
    if copy.built:
        copy.set_weights(layer.get_weights() if weights is None else weights)
    return copy


def _build_by_calling(layer, build_config) -> None:
    """Create a composite layer's weights: some (keras_hub's blocks) make their sublayers' only when called."""
    shapes = build_config.get("input_shape")
    if shapes is None:
        return
    single = not (isinstance(shapes, (list, tuple)) and shapes and isinstance(shapes[0], (list, tuple)))
    tensors = [keras.KerasTensor(tuple(shape)) for shape in ([shapes] if single else shapes)]
    layer(tensors[0] if single else tensors)


def _clone_uncompiled(model, clone_function):
    """``keras.models.clone_model`` (recursive), but without copying the compile state.

    Keras recompiles a clone of a compiled model with a fresh, built optimizer,
    whose zero-filled slots would then be saved with an exported model and
    inflate its ``.keras`` size.  A pruned or stripped model is compiled by its
    user, as with tfmot, so the source's ``compiled`` flag is lowered for the
    duration of the copy and restored afterwards.
    """
    was_compiled = model.compiled
    model.compiled = False
    try:
        return keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    finally:
        model.compiled = was_compiled


def _is_graph_model(model) -> bool:
    """Sequential or functional: the models ``keras.models.clone_model`` can rebuild layer by layer.

    Functional models are the ones that run a graph of layer calls
    (``_run_through_graph``, the method ``clone_model`` itself relies on);
    subclassed models run arbitrary Python and cannot be rebuilt around new layers.
    """
    return isinstance(model, keras.Sequential) or (
        isinstance(model, keras.Model) and hasattr(model, "_run_through_graph")
    )


def _check_clonable(model, argument: str) -> None:
    if _is_graph_model(model):
        return
    raise PruningError(
        f"`{argument}` must be a Sequential or functional Keras model, a layer, or a list of "
        f"layers; received a subclassed model {type(model).__name__}. Wrap its layers with "
        "prune_low_magnitude(layer) inside the model's own definition instead."
    )


def pruning_wrappers(model) -> list[PruneLowMagnitude]:
    """Every ``PruneLowMagnitude`` layer in ``model``, nested models included."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, PruneLowMagnitude):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(pruning_wrappers(layer))
    return found


def prune_low_magnitude(
    to_prune,
    pruning_schedule: PruningSchedule | None = None,
    block_size=(1, 1),
    block_pooling_type: str = "AVG",
    pruning_policy=None,
    sparsity_m_by_n=None,
    **kwargs,
):
    """Wrap layers so their smallest-magnitude weights are zeroed while training.

    Same arguments as ``tfmot.sparsity.keras.prune_low_magnitude``.

    ``to_prune``: a Sequential or functional model (returns a pruned copy; every
    prunable layer is wrapped, nested models included, and other layers pass
    through untouched), a layer (returns it wrapped), or a list of layers.
    ``pruning_schedule``: defaults to ``ConstantSparsity(0.5, begin_step=0)``.
    ``block_size``: ``(along input channels, along output channels)``, for
    dense and conv kernels alike.  ``block_pooling_type``: ``"AVG"`` or ``"MAX"``.
    ``sparsity_m_by_n``: ``(m, n)``, m zeros in every n weights along the
    input-channel axis; in a whole model, layers whose input channels are not a
    multiple of n stay dense (with a warning); a single such layer is an error.
    ``pruning_policy`` (tfmot's XNNPack latency policy) is not supported.
    ``kwargs`` go to each ``PruneLowMagnitude`` (e.g. ``name`` for a single layer).

    A pruned model comes back uncompiled, as with tfmot: compile it, train with
    ``callbacks=[UpdatePruningStep()]`` (see the callback for what it does
    here), then call :func:`strip_pruning` to export.
    """
    if pruning_policy is not None:
        raise PruningError(
            f"`pruning_policy` is not supported by keraffe.pruning, received {pruning_policy!r}; "
            "pass pruning_policy=None."
        )
    if pruning_schedule is None:
        pruning_schedule = ConstantSparsity(0.5, begin_step=0)
    if not isinstance(pruning_schedule, PruningSchedule):
        raise PruningError(
            "`pruning_schedule` must be a keraffe.pruning.PruningSchedule (e.g. ConstantSparsity "
            f"or PolynomialDecay), received {pruning_schedule!r}."
        )
    # Validate the pattern once, before any layer is touched.
    pattern = SparsityPattern(
        block_size=tuple(block_size) if isinstance(block_size, list) else block_size,
        block_pooling_type=block_pooling_type,
        m_by_n=tuple(sparsity_m_by_n) if isinstance(sparsity_m_by_n, list) else sparsity_m_by_n,
    )
    wrapper_arguments = dict(
        pruning_schedule=pruning_schedule,
        block_size=pattern.block_size,
        block_pooling_type=pattern.block_pooling_type,
        sparsity_m_by_n=pattern.m_by_n,
        **kwargs,
    )

    if isinstance(to_prune, (list, tuple)):
        return [_prune_single_layer(layer, wrapper_arguments) for layer in to_prune]
    if isinstance(to_prune, keras.Model):
        _check_clonable(to_prune, "to_prune")
        return _prune_model(to_prune, pattern, wrapper_arguments)
    if isinstance(to_prune, keras.layers.Layer):
        return _prune_single_layer(to_prune, wrapper_arguments)
    raise PruningError(
        "`to_prune` must be a Keras model, a layer, or a list of layers, received "
        f"{type(to_prune).__name__}: {to_prune!r}."
    )


def _prune_single_layer(layer, wrapper_arguments):
    if isinstance(layer, PruneLowMagnitude):
        return layer
    if isinstance(layer, keras.Model):
        raise PruningError(
            f"A list given to `to_prune` must hold layers, received the model '{layer.name}'; "
            "pass models on their own."
        )
    return PruneLowMagnitude(layer, **wrapper_arguments)


def _prune_model(model, pattern, wrapper_arguments):
    if not model.built:
        raise PruningError(
            f"`to_prune` model '{model.name}' is not built; call it on data or give it an "
            "Input so its weights exist before pruning."
        )
    wrapper_arguments = {k: v for k, v in wrapper_arguments.items() if k != "name"}
    left_dense = []

    def wrap_or_copy(layer):
        if isinstance(layer, PruneLowMagnitude):
            return _copy_layer(layer)
        copy = _copy_layer(layer)
        if prunable_lib.why_not_prunable(layer) is not None or not copy.built:
            return copy
        targets = prunable_lib.prunable_weights(copy)
        unfit = [t for t in targets if not pattern.fits(t.variable.shape, t.input_axis)]
        if unfit:
            left_dense.append(
                f"'{layer.name}' ({unfit[0].variable.name} has "
                f"{unfit[0].variable.shape[unfit[0].input_axis]} input channels)"
            )
            return copy
        wrapper = PruneLowMagnitude(copy, **wrapper_arguments)
        wrapper.build_from_config(layer.get_build_config())
        return wrapper

    pruned = _clone_uncompiled(model, wrap_or_copy)
    if left_dense:
        warnings.warn(
            f"sparsity_m_by_n={pattern.m_by_n} needs input channels in multiples of "
            f"{pattern.m_by_n[1]}; these layers stay dense: {', '.join(left_dense)}.",
            stacklevel=3,
        )
    return pruned


def strip_pruning(model):
    """A plain Keras model with the masks baked into the weights and no wrapper left.

    Pruned weights become exact zeros, so the model saves, converts (e.g. to
    Caffe) and compresses like any Keras model.  It comes back uncompiled, so
    no optimizer state is saved with it; compile it to evaluate or train it.
    Also accepts a single ``PruneLowMagnitude`` layer and returns its stripped
    layer.
    """
    if isinstance(model, PruneLowMagnitude):
        return _copy_layer(model.layer, weights=model.masked_weight_values())
    if not isinstance(model, keras.Model):
        raise PruningError(
            f"`model` must be a Keras model or a PruneLowMagnitude layer, received "
            f"{type(model).__name__}: {model!r}."
        )
    _check_clonable(model, "model")

    def unwrap_or_copy(layer):
        if isinstance(layer, PruneLowMagnitude):
            return _copy_layer(layer.layer, weights=layer.masked_weight_values())
        return _copy_layer(layer)

    return _clone_uncompiled(model, unwrap_or_copy)


@contextlib.contextmanager
def prune_scope():
    """tfmot's loading scope, kept so migrated code runs; keraffe needs none.

    The pruning classes are registered Keras objects, so ``keras.saving.load_model``
    finds them once ``keraffe.pruning`` is imported.
    """
    with keras.saving.custom_object_scope({"PruneLowMagnitude": PruneLowMagnitude}):
        yield
