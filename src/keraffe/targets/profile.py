"""What a target is: its rules (each with its source), its rewrites, its channel multiple."""


from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

#: Severity of a finding: an error makes ``keraffe check`` fail; advice does not.
ERROR = "error"
ADVICE = "advice"


@dataclasses.dataclass(frozen=True)
class Finding:
    """What a rule found on one layer (or on the whole net when ``layer`` is None)."""

    layer: str | None
    layer_type: str | None
    message: str
    #: The rewrite that fixes this one, when it differs from the rule's (or the rule has none for this case).
    fix: str | None = None
    fixable: bool | None = None


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule of a toolchain, as its source states it, and how keraffe checks and fixes it."""

    #: The rule's key in docs/targets.md and the research notes (N-9, A-25, R-12...).
    id: str
    #: The layers (or the part of the net) the rule is about, in words.
    scope: str
    #: The rule, in words.
    text: str
    #: Where it comes from, as docs/targets.md cites it, and how sure that source is.
    source: str
    confidence: str
    #: check(view) -> the findings; ``view`` is a :class:`~keraffe.targets.check.NetView`.
    check: Callable[..., Iterable[Finding]]
    severity: str = ERROR
    #: The exact rewrite keraffe applies (a name in :data:`keraffe.targets.fit.REWRITES`), or None.
    fix: str | None = None
    #: What keraffe's rewrite does, or, without one, what the user can do.
    remedy: str = ""


@dataclasses.dataclass(frozen=True)
class Profile:
    """A toolchain: its layer types (in its spellings), its rules, its rewrites and its channel multiple."""

    name: str
    title: str
    #: The toolchain versions and products the rules were read for.
    versions: str
    layer_types: frozenset[str]
    rules: tuple[Rule, ...]
    #: Rewrites in the order :func:`keraffe.targets.fit.fit_net` runs them.
    rewrites: tuple[str, ...]
    #: The channel count the NPU works in blocks of, where its vendor documents one (else None).
    channel_multiple: int | None
    channel_note: str
    #: Layer types a Keras -> Caffe conversion may write before the rewrites run.
    keras_export_types: frozenset[str]
    description: str
    #: pooling_fits(kernel, stride, input_hw, global_pooling): the poolings the NPU takes (chained pooling's bound).
    pooling_fits: Callable | None = None
    #: The most inputs one Concat may have (split_wide_concat's bound).
    max_concat_inputs: int | None = None

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)
