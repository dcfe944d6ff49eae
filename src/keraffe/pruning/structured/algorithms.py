"""How much to cut: one-shot channel pruning by ratio, per-layer ratios, or a MAC target.

:func:`plan_channels` reads the model's channel groups (dependency), scores
their channels (importance), decides which go, and returns a
:class:`ChannelPlan` that states the result in numbers before anything is
built; :meth:`ChannelPlan.apply` builds the smaller model (shrink, folding,
rebuild). :func:`prune_channels` does both.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keraffe.errors import PruningError
from keraffe.pruning.structured.dependency import ChannelGraph
from keraffe.pruning.structured.folding import FoldResult, fold_constants
from keraffe.pruning.structured.importance import score_groups
from keraffe.pruning.structured.options import MAX_RATIO, ChannelPruningOptions
from keraffe.pruning.structured.rebuild import rebuild_model
from keraffe.pruning.structured.rules import BARRIER, SOURCE
from keraffe.pruning.structured.shrink import record_macs, shrink_layer, shrink_op, shrink_source


@dataclasses.dataclass
class PruneResult:
    """The smaller model, and what became of the removed channels' constant contributions."""

    model: object
    fold: FoldResult


class _MacCounter:
    """MACs of the model for any set of removed channels, without building anything."""

    def __init__(self, graph: ChannelGraph):
        self.graph = graph
        self.rows = []
        for record in graph.records:
            full = record_macs(record)
            if not full:
                continue
            in_roots = graph.roots[record.in_layouts[0]] if record.in_layouts[0] is not None else None
            unit_roots = graph.roots[graph.source_atoms[record.name]] if record.kind == SOURCE else None
            self.rows.append((record, full, in_roots, unit_roots))
        self.full = sum(row[1] for row in self.rows)

    def __call__(self, removed: np.ndarray) -> int:
        if not len(removed):
            return self.full
        total = 0
        for record, full, in_roots, unit_roots in self.rows:
            if record.kind == BARRIER:
                total += full
                continue
            kept_in = None if in_roots is None else int((~np.isin(in_roots, removed)).sum())
            alive_units = None if unit_roots is None else ~np.isin(unit_roots, removed)
            total += record_macs(record, kept_in, alive_units)
        return total

    def unprunable(self) -> dict[str, int]:
        """MACs no ratio can remove, by reason: barriers' whole MACs, and the share of protected channels."""
        protected = self.graph.protected_roots()
        keys = np.asarray(sorted(protected), dtype=np.int64)
        found: dict[str, int] = {}
        for record, full, in_roots, unit_roots in self.rows:
            if record.kind == BARRIER:
                reason = f"{record.name} is left whole: {record.reason}"
                found[reason] = found.get(reason, 0) + full
                continue
            kept_in = None if in_roots is None else np.isin(in_roots, keys)
            kept_units = None if unit_roots is None else np.isin(unit_roots, keys)
            floor = record_macs(record, None if kept_in is None else int(kept_in.sum()), kept_units)
            if floor:
                roots = [unit_roots[kept_units]] if kept_units is not None and kept_units.any() else []
                roots.append(in_roots[kept_in] if kept_in is not None else np.zeros(0, np.int64))
                first = next(int(r[0]) for r in roots if len(r))
                found[protected[first]] = found.get(protected[first], 0) + floor
        return dict(sorted(found.items(), key=lambda item: -item[1]))


@dataclasses.dataclass
class ChannelPlan:
    """Which channels go, decided and counted; ``apply()`` builds the model.

    ``kept`` gives, per group name, (channels before, channels after).
    """

    graph: ChannelGraph
    options: ChannelPruningOptions
    removed: np.ndarray
    kept: dict
    macs_before: int
    macs_after: int
    #: MACs that no ratio could remove, by the reason their channels must stay.
    unprunable_macs: dict = dataclasses.field(default_factory=dict)

    @property
    def left_whole(self) -> dict:
        """Every layer the planner left whole (not understood, or not cuttable), with the reason."""
        return dict(self.graph.barriers)

    @property
    def model(self):
        return self.graph.model

    def apply(self) -> PruneResult:
        graph, removed = self.graph, self.removed
        fold = fold_constants(graph, removed)
        records = {}
        for record in graph.records:
            records.setdefault(id(record.operation), record)

        def spec_for(layer):
            record = records.get(id(layer))
            if record is None or record.kind == BARRIER:
                return None
            alive_in = graph.alive(record.in_layouts[0], removed) if record.in_layouts else None
            if record.kind == SOURCE:
                alive_units = graph.alive(graph.source_atoms[record.name], removed)
                replaced = fold.biases.get(record.name)
                if (alive_in is None or alive_in.all()) and alive_units.all() and not replaced:
                    return None
                return shrink_source(layer, alive_in, alive_units, replaced)
            if alive_in is None or alive_in.all():
                return None
            return shrink_layer(layer, alive_in)

        def op_for(operation):
            record = records.get(id(operation))
            if record is None or record.kind == BARRIER or not record.in_layouts:
                return None
            alive_outs = [graph.alive(layout, removed) for layout in record.out_layouts]
            return shrink_op(record, graph.alive(record.in_layouts[0], removed), alive_outs)

        def input_channels(tensor):
            layout = graph.layouts.get(id(tensor))
            return None if layout is None else int(graph.alive(layout, removed).sum())

        model = rebuild_model(graph.model, spec_for, input_channels, inlined=graph.inlined, op_for=op_for,
                              name_for=graph.name_of)
        return PruneResult(model, fold)

    def summary(self) -> str:
        changed = {name: counts for name, counts in self.kept.items() if counts[0] != counts[1]}
        lines = [f"{len(changed)} of {len(self.kept)} channel groups pruned; MACs {self.macs_before:,} -> "
                 f"{self.macs_after:,} ({1 - self.macs_after / max(self.macs_before, 1):.1%} fewer)"]
        for name, (before, after) in changed.items():
            lines.append(f"  {name}: {before} -> {after} channels")
        stuck = sum(self.unprunable_macs.values())
        if stuck:
            lines.append(f"MACs no ratio can remove: {stuck:,} ({stuck / max(self.macs_before, 1):.1%} of the model), "
                         "because:")
            lines += [f"  {macs:,}: {reason}" for reason, macs in self.unprunable_macs.items()]
        if self.left_whole:
            lines.append(f"left whole ({len(self.left_whole)} layer(s) the planner cannot cut through):")
            lines += [f"  {name}: {reason}" for name, reason in self.left_whole.items()]
        return "\n".join(lines)


def _select(graph, scores, ratios, options) -> tuple[np.ndarray, dict]:
    removed, kept = [], {}
    for group, score, ratio in zip(graph.groups, scores, ratios):
        size = len(group)
        protected = int((~group.prunable).sum())
        keep = options.kept_count(size, ratio, protected) if ratio > 0 else size
        candidates = np.flatnonzero(group.prunable)
        order = candidates[np.argsort(score[candidates], kind="stable")]
        chosen = order[: size - keep]
        removed.extend(group.channels[chosen].tolist())
        kept[group.name] = (size, size - len(chosen))
    return np.asarray(sorted(removed), dtype=np.int64), kept


def _check_per_layer(graph, options) -> None:
    if not options.per_layer:
        return
    for name in options.per_layer:
        if name not in graph.layers:
            raise PruningError(f"`per_layer` names layer {name!r}, which the model does not have")
        group = graph.group_of(name)
        if group is None:
            raise PruningError(
                f"`per_layer` names layer {name!r} ({type(graph.layers[name]).__name__}), which creates no "
                "channels; name a Conv, Dense or SeparableConv layer"
            )
        if not group.prunable.any():
            raise PruningError(f"`per_layer` names layer {name!r}, whose channels cannot be pruned: "
                               f"{group.protected_by}")


def plan_channels(model, ratio=None, *, per_layer=None, target_macs=None, importance="l1", data=None,
                  round_to=1, min_channels=1, exclude=()) -> ChannelPlan:
    """Decide which channels to remove (see :func:`prune_channels`); nothing is built yet."""
    options = ChannelPruningOptions(ratio, per_layer, target_macs, round_to, min_channels, exclude)
    graph = ChannelGraph(model, options.exclude)
    _check_per_layer(graph, options)
    scores = score_groups(importance, model, graph, data)
    macs = _MacCounter(graph)
    if options.target_macs is None:
        ratios = [options.ratio_for(group.sources) for group in graph.groups]
        removed, kept = _select(graph, scores, ratios, options)
    else:
        removed, kept = _search_uniform_ratio(graph, scores, options, macs)
    return ChannelPlan(graph, options, removed, kept, macs.full, macs(removed), macs.unprunable())


def _search_uniform_ratio(graph, scores, options, macs) -> tuple[np.ndarray, dict]:
    target = options.target_macs * macs.full if options.target_macs <= 1 else options.target_macs
    low, high = 0.0, MAX_RATIO
    best = _select(graph, scores, [high] * len(graph.groups), options)
    if macs(best[0]) > target:
        raise PruningError(
            f"`target_macs`={options.target_macs!r} cannot be reached: removing {MAX_RATIO:.0%} of every prunable "
            f"group still leaves {macs(best[0]):,} MACs (dense: {macs.full:,})"
        )
    for _ in range(30):
        middle = (low + high) / 2
        candidate = _select(graph, scores, [middle] * len(graph.groups), options)
        if macs(candidate[0]) <= target:
            high, best = middle, candidate
        else:
            low = middle
        if high - low < 1e-4:
            break
    return _fill(graph, scores, options, macs, target, *best)


def _fill(graph, scores, options, macs, target, removed, kept) -> tuple[np.ndarray, dict]:
    """Spend what the uniform ratio left of the MAC budget: give channels back while the model stays within it.

    One ratio for every group rounds each group's count down on its own, so
    the model usually lands below the target. Group by group, in turns, the
    best-scored removed channels (``round_to`` at a time) come back whenever
    the whole model still fits: the ratios stay within a step of uniform and
    the budget is used.
    """
    removed = set(removed.tolist())
    waiting = []
    for group, score in zip(graph.groups, scores):
        gone = [i for i in np.argsort(-score, kind="stable") if int(group.channels[i]) in removed]
        waiting.append([int(group.channels[i]) for i in gone])
    step = options.round_to
    changed = True
    while changed:
        changed = False
        for group, queue in zip(graph.groups, waiting):
            if len(queue) < step:
                continue
            trial = removed - set(queue[:step])
            if macs(np.asarray(sorted(trial), dtype=np.int64)) <= target:
                removed = trial
                del queue[:step]
                size, after = kept[group.name]
                kept[group.name] = (size, after + step)
                changed = True
    return np.asarray(sorted(removed), dtype=np.int64), kept


def prune_channels(model, ratio=None, *, per_layer=None, target_macs=None, importance="l1", data=None,
                   round_to=1, min_channels=1, exclude=()):
    """A new, plain Keras model with physically fewer channels; ``model`` is left untouched.

    Say how much with one of ``ratio`` (fraction of each coupled group's
    channels removed), ``per_layer`` (ratios by layer name; ``ratio`` covers
    the rest) or ``target_macs`` (a MAC count, or a fraction <= 1 of the
    model's). ``importance`` ranks channels: "l1", "l2", "bn_gamma", "taylor"
    (needs ``data=(x, y)``) or a callable ``(model, graph, group) -> scores``.
    Coupled layers (residual adds, concatenations, depthwise and per-channel
    layers, Flatten -> Dense, squeeze-excite gates) are cut together; layers the
    planner does not understand, ``exclude``d layers and model outputs keep
    their channels. Removed channels' constant contributions are folded into
    the next layer's bias where that is exact (see keraffe.pruning.structured.folding).
    """
    plan = plan_channels(model, ratio, per_layer=per_layer, target_macs=target_macs, importance=importance,
                         data=data, round_to=round_to, min_channels=min_channels, exclude=exclude)
    return plan.apply().model
