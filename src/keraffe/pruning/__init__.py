"""Magnitude pruning for Keras 3 models on the TensorFlow, JAX and PyTorch backends.

The names and arguments follow ``tensorflow_model_optimization.sparsity.keras``,
so migrating is an import change::

    from keraffe import pruning as sparsity   # was: tfmot.sparsity.keras

    pruned = sparsity.prune_low_magnitude(model, pruning_schedule=sparsity.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=1000))
    pruned.compile(...)
    pruned.fit(..., callbacks=[sparsity.UpdatePruningStep()])
    final = sparsity.strip_pruning(pruned)
    print(sparsity.summary(final))

Importing this package registers the pruning classes with Keras, which is all
``keras.saving.load_model`` needs to reload a model saved in the middle of pruning.
See docs/pruning.md.
"""

from keraffe.pruning.api import prune_low_magnitude, prune_scope, pruning_wrappers, strip_pruning
from keraffe.pruning.callbacks import PruningSummaries, UpdatePruningStep, layer_sparsities
from keraffe.pruning.masks import SparsityPattern
from keraffe.pruning.prunable import PrunableLayer, WeightRule, register_prunable_layer
from keraffe.pruning.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule
from keraffe.pruning.summary import LayerSparsity, ModelSparsity, summary
from keraffe.pruning.wrapper import PruneLowMagnitude

__all__ = [
    "ConstantSparsity",
    "LayerSparsity",
    "ModelSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneLowMagnitude",
    "PruningSchedule",
    "PruningSummaries",
    "SparsityPattern",
    "UpdatePruningStep",
    "WeightRule",
    "layer_sparsities",
    "prune_low_magnitude",
    "prune_scope",
    "pruning_wrappers",
    "register_prunable_layer",
    "strip_pruning",
    "summary",
]
