"""Deployment targets: what each NPU toolchain takes of Caffe, checked before the vendor tool runs.

Most Caffe exports today feed an embedded NPU toolchain: HiSilicon's NNIE
mapper, Huawei's ATC (Ascend), Rockchip's RKNN-Toolkit2. Each accepts a
subset of Caffe with its own spellings and limits, and users otherwise find
the violations one at a time by running the vendor tool. A :class:`Profile`
holds one toolchain's rules, each with the public document it comes from
and how sure that source is (docs/targets.md lists them all):

* :mod:`.check` runs every rule over a Caffe net and lists every violation
  at once (``keraffe check``);
* :mod:`.fit` applies the exact rewrites (passes in :mod:`keraffe.passes`)
  that make a net fit where one exists; the rest are refusals with reasons.

This part reads Caffe nets only (no Keras): the Keras -> Caffe converter
asks it for the layer types a target takes, and runs :mod:`.fit` on its
result.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

from keraffe.errors import KeraffeError

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


def profiles() -> dict[str, Profile]:
    """Every target profile by name (nnie, ascend, rknn)."""
    from keraffe.targets import ascend, nnie, rknn

    return {profile.name: profile for profile in (nnie.PROFILE, ascend.PROFILE, rknn.PROFILE)}


TARGET_NAMES = ("nnie", "ascend", "rknn")


def get_profile(name: str) -> Profile:
    found = profiles()
    if name not in found:
        raise KeraffeError(f"target must be one of {', '.join(found)}, received {name!r}")
    return found[name]
