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

from keraffe.errors import KeraffeError
from keraffe.targets.profile import ADVICE, ERROR, Finding, Profile, Rule

__all__ = ["ADVICE", "ERROR", "Finding", "Profile", "Rule", "TARGET_NAMES", "get_profile", "profiles"]


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
