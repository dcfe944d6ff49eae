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
Structured pruning (whole channels removed, so the model is physically smaller
and faster in Caffe) lives in ``keraffe.pruning.structured``; its main names are
re-exported here: ``from keraffe.pruning import prune_channels``.
See docs/pruning.md and docs/structured_pruning.md.
"""

from keraffe.pruning.api import prune_low_magnitude, prune_scope, pruning_wrappers, strip_pruning
from keraffe.pruning.callbacks import PruningSummaries, UpdatePruningStep, layer_sparsities
from keraffe.pruning.masks import SparsityPattern
from keraffe.pruning.prunable import PrunableLayer, WeightRule, register_prunable_layer
from keraffe.pruning.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule
from keraffe.pruning.summary import LayerSparsity, ModelSparsity, summary
from keraffe.pruning.structured import (
    ChannelGraph,
    ChannelGroup,
    ChannelPlan,
    ChannelPruningOptions,
    FoldResult,
    GradualChannelPruning,
    ModelMeasurements,
    PruneResult,
    SensitivityResult,
    StructuredReport,
    SweepResult,
    Taylor,
    UnfoldedConstant,
    copy_model,
    macs_sweep,
    model_macs,
    plan_channels,
    prune_channels,
    sensitivity,
    structured_report,
)
from keraffe.pruning.wrapper import PruneLowMagnitude

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "ChannelPlan",
    "ChannelPruningOptions",
    "ConstantSparsity",
    "FoldResult",
    "GradualChannelPruning",
    "LayerSparsity",
    "ModelMeasurements",
    "ModelSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneLowMagnitude",
    "PruneResult",
    "PruningSchedule",
    "PruningSummaries",
    "SensitivityResult",
    "SparsityPattern",
    "StructuredReport",
    "SweepResult",
    "Taylor",
    "UnfoldedConstant",
    "UpdatePruningStep",
    "WeightRule",
    "copy_model",
    "layer_sparsities",
    "macs_sweep",
    "model_macs",
    "plan_channels",
    "prune_channels",
    "prune_low_magnitude",
    "prune_scope",
    "pruning_wrappers",
    "register_prunable_layer",
    "sensitivity",
    "strip_pruning",
    "structured_report",
    "summary",
]
