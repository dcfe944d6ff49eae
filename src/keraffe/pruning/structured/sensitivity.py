"""How much each channel group can lose on its own, and per-layer ratios for a MAC target.

:func:`sensitivity` prunes each group alone at several ratios, measures a
metric on ``data`` each time, and returns a :class:`SensitivityResult`: the
table, a PNG plot of metric against ratio (matplotlib), and
:meth:`SensitivityResult.suggest`, which spends a MAC budget greedily where
the metric suffers least per MAC saved. Its answer is a ``per_layer`` dict
for :func:`prune_channels`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keraffe.errors import PruningError
from keraffe.pruning.structured.algorithms import ChannelPlan, _MacCounter, _select
from keraffe.pruning.structured.dependency import ChannelGraph
from keraffe.pruning.structured.importance import score_groups
from keraffe.pruning.structured.options import ChannelPruningOptions

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def accuracy(model, data) -> float:
    """Top-1 accuracy of ``model`` on ``data=(x, y)`` with integer or one-hot labels, in percent."""
    x, y = data
    predicted = np.argmax(np.asarray(model.predict(x, verbose=0, batch_size=256)), axis=-1)
    y = np.asarray(y)
    labels = np.argmax(y, axis=-1) if y.ndim == predicted.ndim + 1 and y.shape[-1] > 1 else y.reshape(predicted.shape)
    return float(np.mean(predicted == labels) * 100.0)


METRICS: dict[str, Callable] = {"accuracy": accuracy}


@dataclasses.dataclass(frozen=True)
class SensitivityResult:
    """Metric of the model with one group pruned at each ratio; ``scores[group][i]`` is at ``ratios[i]``."""

    metric: str
    dense_score: float
    ratios: tuple[float, ...]
    scores: dict
    macs: dict  # group -> MACs of the whole model with that group alone pruned at each ratio
    macs_before: int
    higher_is_better: bool = True
    _planner: object = dataclasses.field(default=None, repr=False, compare=False)

    def drop(self, group: str, index: int) -> float:
        """How much worse than dense the metric is with ``group`` pruned at ``ratios[index]`` (>= 0 is worse)."""
        change = self.dense_score - self.scores[group][index]
        return change if self.higher_is_better else -change

    def suggest(self, target_macs: float) -> dict[str, float]:
        """Per-group ratios (keyed by each group's first layer) reaching ``target_macs`` (count, or fraction <= 1).

        Greedy: repeatedly raise the ratio of the group whose next step costs
        the least metric per MAC saved, until the whole model is at or under
        the target. MACs are counted exactly for each combination.
        """
        if isinstance(target_macs, bool) or not isinstance(target_macs, (int, float)) or target_macs <= 0:
            raise PruningError(f"`target_macs` must be a positive number, received {target_macs!r}")
        target = target_macs * self.macs_before if target_macs <= 1 else target_macs
        current = {group: -1 for group in self.scores}  # index into ratios; -1 = not pruned
        count = self._planner
        macs_now = count({})
        while macs_now > target:
            best = None
            for group, index in current.items():
                if index + 1 >= len(self.ratios):
                    continue
                trial = dict(current, **{group: index + 1})
                macs = count({g: self.ratios[i] for g, i in trial.items() if i >= 0})
                saving = macs_now - macs
                if saving <= 0:
                    continue
                cost = (max(self.drop(group, index + 1), 0.0) + 1e-9) / saving
                if best is None or cost < best[0]:
                    best = (cost, group, macs)
            if best is None:
                raise PruningError(
                    f"`target_macs`={target_macs!r} cannot be reached with ratios up to {self.ratios[-1]}: "
                    f"the lowest is {macs_now:,} MACs"
                )
            _, group, macs_now = best
            current[group] += 1
        return {group: self.ratios[index] for group, index in current.items() if index >= 0}

    def plot(self, path) -> Path:
        """Write metric against ratio, one line per group, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        figure, axes = plt.subplots(figsize=(8, 5))
        for group, values in self.scores.items():
            axes.plot(self.ratios, values, marker="o", linewidth=1, label=group)
        axes.axhline(self.dense_score, color="black", linestyle="--", linewidth=1, label="dense")
        axes.set_xlabel("ratio of the group's channels removed")
        axes.set_ylabel(self.metric)
        axes.set_title("sensitivity: each group pruned alone")
        if len(self.scores) <= 16:
            axes.legend(fontsize="small", ncol=2)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path

    def to_dict(self) -> dict:
        return {"metric": self.metric, "dense_score": self.dense_score, "ratios": list(self.ratios),
                "scores": {g: list(v) for g, v in self.scores.items()},
                "macs": {g: list(v) for g, v in self.macs.items()}, "macs_before": self.macs_before,
                "higher_is_better": self.higher_is_better}


def sensitivity(model, data, metric="accuracy", ratios=DEFAULT_RATIOS, *, importance="l1", groups=None,
                higher_is_better=True, plot=None) -> SensitivityResult:
    """Prune each channel group alone at each ratio and measure ``metric(model, data)``.

    ``metric`` is "accuracy" (top-1 on ``data=(x, y)``) or a callable
    ``(model, data) -> float``; ``groups`` limits the study to some groups
    (by name, as in ``ChannelGraph(model).groups``); ``plot`` is a PNG path to write.
    """
    if isinstance(metric, str):
        if metric not in METRICS:
            raise PruningError(f"`metric` must be one of {sorted(METRICS)} or a callable, received {metric!r}")
        metric_name, measure = metric, METRICS[metric]
    elif callable(metric):
        metric_name, measure = getattr(metric, "__name__", "metric"), metric
    else:
        raise PruningError(f"`metric` must be a name or a callable, received {metric!r}")
    ratios = tuple(sorted(float(r) for r in ratios))
    for value in ratios:
        ChannelPruningOptions(ratio=value)  # checks each value
    graph = ChannelGraph(model)
    scores = score_groups(importance, model, graph, data)
    prunable = [g.name for g in graph.groups if g.prunable.any()]
    if groups is not None:
        unknown = sorted(set(groups) - set(prunable))
        if unknown:
            raise PruningError(f"`groups` names {unknown}, which are not prunable groups of the model: {prunable}")
        prunable = [name for name in prunable if name in set(groups)]
    options = ChannelPruningOptions(ratio=0.0)
    counter = _MacCounter(graph)

    def removal(per_group: dict[str, float]):
        return _select(graph, scores, [per_group.get(g.name, 0.0) for g in graph.groups], options)

    def count(per_group: dict[str, float]) -> int:
        return counter(removal(per_group)[0])

    dense = float(measure(model, data))
    table, macs = {}, {}
    for name in prunable:
        row, row_macs = [], []
        for ratio in ratios:
            removed, kept = removal({name: ratio})
            plan = ChannelPlan(graph, options, removed, kept, counter.full, counter(removed), {})
            row.append(float(measure(plan.apply().model, data)))
            row_macs.append(plan.macs_after)
        table[name], macs[name] = tuple(row), tuple(row_macs)
    result = SensitivityResult(metric_name, dense, ratios, table, macs, counter.full, higher_is_better, count)
    if plot is not None:
        result.plot(plot)
    return result
