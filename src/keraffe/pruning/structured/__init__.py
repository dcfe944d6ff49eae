"""Structured pruning: physically smaller Keras models, whole channels removed.

Four questions, four places (as in Torch-Pruning):

* which channels are coupled — :mod:`.dependency` (a channel graph read from
  the Keras graph; unknown layers are barriers);
* how important each channel is — :mod:`.importance`;
* how to cut one layer — :mod:`.shrink` (and :mod:`.folding` for the constant
  a removed channel leaves behind, :mod:`.rebuild` for the new graph);
* how much to cut, and when — :mod:`.algorithms` (one shot),
  :mod:`.gradual` (during ``fit``), :mod:`.sensitivity` (per-layer ratios).

:mod:`.sensitivity` also sweeps MAC budgets (accuracy against MACs, with a plot).
:mod:`.report` measures the result: parameters, MACs, file sizes and OpenCV
DNN latency of the Caffe export. See docs/structured_pruning.md.
"""

from keraffe.pruning.structured.algorithms import ChannelPlan, PruneResult, plan_channels, prune_channels
from keraffe.pruning.structured.dependency import ChannelGraph, ChannelGroup
from keraffe.pruning.structured.folding import FoldResult, UnfoldedConstant
from keraffe.pruning.structured.gradual import GradualChannelPruning
from keraffe.pruning.structured.importance import Taylor
from keraffe.pruning.structured.options import ChannelPruningOptions
from keraffe.pruning.structured.rebuild import copy_model
from keraffe.pruning.structured.report import ModelMeasurements, StructuredReport, structured_report
from keraffe.pruning.structured.sensitivity import SensitivityResult, SweepPoint, SweepResult, macs_sweep, sensitivity
from keraffe.pruning.structured.shrink import model_macs

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "ChannelPlan",
    "ChannelPruningOptions",
    "FoldResult",
    "GradualChannelPruning",
    "ModelMeasurements",
    "PruneResult",
    "SensitivityResult",
    "StructuredReport",
    "SweepPoint",
    "SweepResult",
    "Taylor",
    "UnfoldedConstant",
    "copy_model",
    "macs_sweep",
    "model_macs",
    "plan_channels",
    "prune_channels",
    "sensitivity",
    "structured_report",
]
