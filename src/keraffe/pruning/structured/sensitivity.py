"""How much each channel group can lose on its own, how much the model loses at each MAC budget.

:func:`sensitivity` prunes each group alone at several ratios, measures a
metric on ``data`` each time, and returns a :class:`SensitivityResult`: the
table, a PNG plot of metric against ratio (matplotlib, the ``plot`` extra), and
:meth:`SensitivityResult.suggest`, which spends a MAC budget greedily where
the metric suffers least per MAC saved. Its answer is a ``per_layer`` dict
for :func:`prune_channels`.

:func:`macs_sweep` prunes the whole model to several MAC budgets, optionally
fine-tunes each result, and returns a :class:`SweepResult`: the metric against
MACs, before and after fine-tuning, and its PNG plot (other pruners' points,
e.g. Torch-Pruning's from bench/vs_torch_pruning.py, may be drawn beside).
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
        plt = _pyplot()
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
        return _save(figure, path)

    def to_dict(self) -> dict:
        return {"metric": self.metric, "dense_score": self.dense_score, "ratios": list(self.ratios),
                "scores": {g: list(v) for g, v in self.scores.items()},
                "macs": {g: list(v) for g, v in self.macs.items()}, "macs_before": self.macs_before,
                "higher_is_better": self.higher_is_better}


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend; a clear error where the ``plot`` extra is missing."""
    try:
        import matplotlib
    except ImportError:
        raise PruningError("plots need matplotlib: pip install 'keraffe[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _measure_of(metric):
    if isinstance(metric, str):
        if metric not in METRICS:
            raise PruningError(f"`metric` must be one of {sorted(METRICS)} or a callable, received {metric!r}")
        return metric, METRICS[metric]
    if callable(metric):
        return getattr(metric, "__name__", "metric"), metric
    raise PruningError(f"`metric` must be a name or a callable, received {metric!r}")


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """The model pruned to one MAC budget: its MACs and the metric before and after fine-tuning."""

    budget: float
    macs: int
    score_pruned: float
    score: float


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The metric against MACs: the dense model's point and one per budget."""

    metric: str
    dense_score: float
    macs_before: int
    points: tuple
    label: str = "keraffe"

    def plot(self, path, others: dict | None = None) -> Path:
        """Write metric against MACs as a PNG; ``others`` maps a label to more (macs, score) points to draw."""
        plt = _pyplot()
        path = Path(path)
        figure, axes = plt.subplots(figsize=(8, 5))
        macs = [self.macs_before] + [p.macs for p in self.points]
        axes.plot(macs, [self.dense_score] + [p.score for p in self.points], marker="o",
                  label=f"{self.label}, fine-tuned")
        if any(p.score != p.score_pruned for p in self.points):
            axes.plot(macs, [self.dense_score] + [p.score_pruned for p in self.points], marker="x",
                      linestyle="--", label=f"{self.label}, right after pruning")
        for label, points in (others or {}).items():
            xs, ys = zip(*sorted(points))
            axes.plot(xs, ys, marker="s", linestyle=":", label=label)
        axes.set_xscale("log")
        axes.set_xlabel("multiply-accumulates per input (log scale)")
        axes.set_ylabel(self.metric)
        axes.set_title("the whole model pruned to each MAC budget")
        axes.legend(fontsize="small")
        axes.grid(True, which="both", alpha=0.3)
        return _save(figure, path)

    def to_dict(self) -> dict:
        return {"metric": self.metric, "dense_score": self.dense_score, "macs_before": self.macs_before,
                "label": self.label, "points": [dataclasses.asdict(p) for p in self.points]}


def macs_sweep(model, data, budgets=(0.75, 0.5, 0.35, 0.25), metric="accuracy", *, importance="l1",
               fine_tune: Callable | None = None, plot=None, label="keraffe") -> SweepResult:
    """Prune ``model`` to each MAC budget (a fraction of its MACs, or a count) and measure ``metric`` on ``data``.

    ``fine_tune(pruned)``, when given, trains each pruned model before it is
    measured again (compile and fit it there); ``plot`` is a PNG path to write.
    ``model`` is left untouched.
    """
    from keraffe.pruning.structured.algorithms import plan_channels

    metric_name, measure = _measure_of(metric)
    if not budgets:
        raise PruningError("`budgets` is empty: give MAC budgets, e.g. (0.5, 0.25)")
    dense = float(measure(model, data))
    points = []
    for budget in budgets:
        plan = plan_channels(model, target_macs=budget, importance=importance,
                             data=data if importance == "taylor" else None)
        pruned = plan.apply().model
        before = float(measure(pruned, data))
        if fine_tune is not None:
            fine_tune(pruned)
        points.append(SweepPoint(float(budget), plan.macs_after, before, float(measure(pruned, data))))
        macs_before = plan.macs_before
    result = SweepResult(metric_name, dense, macs_before, tuple(points), label)
    if plot is not None:
        result.plot(plot)
    return result


def sensitivity(model, data, metric="accuracy", ratios=DEFAULT_RATIOS, *, importance="l1", groups=None,
                higher_is_better=True, plot=None) -> SensitivityResult:
    """Prune each channel group alone at each ratio and measure ``metric(model, data)``.

    ``metric`` is "accuracy" (top-1 on ``data=(x, y)``) or a callable
    ``(model, data) -> float``; ``groups`` limits the study to some groups
    (by name, as in ``ChannelGraph(model).groups``); ``plot`` is a PNG path to write.
    """
    metric_name, measure = _measure_of(metric)
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
