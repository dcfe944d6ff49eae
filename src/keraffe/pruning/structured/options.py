"""How much to prune and what to leave alone, checked once, before any work starts.

Every argument a user gives ``prune_channels`` lands in one frozen
:class:`ChannelPruningOptions`; a wrong value raises :class:`PruningError`
naming the argument and the value, before the model is read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from keraffe.errors import PruningError

#: The largest fraction of a group's channels one prune may remove (at least one channel survives anyway).
MAX_RATIO = 0.99


def _check_ratio(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= MAX_RATIO:
        raise PruningError(f"`{name}` must be a number in [0, {MAX_RATIO}], received {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class ChannelPruningOptions:
    """The amount of structured pruning, and its limits.

    Exactly one way of saying how much is used: ``ratio`` (the fraction of
    every coupled group's channels to remove), ``per_layer`` (ratios by the name
    of any layer whose output channels belong to a group; ``ratio`` then covers
    the groups not named), or ``target_macs`` (the model's multiply-accumulates
    after pruning: a count above 1, or a fraction of the dense model's at most 1;
    one uniform ratio is searched for).
    ``round_to`` rounds each group's kept channel count up to a multiple
    (hardware likes multiples of 8), ``min_channels`` is the fewest channels a
    group keeps, and ``exclude`` names layers whose channels stay as they are.
    """

    ratio: float | None = None
    per_layer: Mapping[str, float] | None = None
    target_macs: float | None = None
    round_to: int = 1
    min_channels: int = 1
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        if self.ratio is not None:
            object.__setattr__(self, "ratio", _check_ratio("ratio", self.ratio))
        if self.per_layer is not None:
            if not isinstance(self.per_layer, Mapping):
                raise PruningError(f"`per_layer` must map layer names to ratios, received {self.per_layer!r}")
            checked = {}
            for name, value in self.per_layer.items():
                if not isinstance(name, str):
                    raise PruningError(f"`per_layer` keys must be layer names, received {name!r}")
                checked[name] = _check_ratio(f"per_layer[{name!r}]", value)
            object.__setattr__(self, "per_layer", dict(checked))
        if self.target_macs is not None:
            value = self.target_macs
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    value > 0 and math.isfinite(value)):
                raise PruningError(f"`target_macs` must be a positive number, received {value!r}")
            if self.ratio is not None or self.per_layer is not None:
                raise PruningError(
                    "`target_macs` chooses the ratio itself; give it alone, not with `ratio` or `per_layer` "
                    f"(received ratio={self.ratio!r}, per_layer={self.per_layer!r})"
                )
        if self.ratio is None and self.per_layer is None and self.target_macs is None:
            raise PruningError("say how much to prune: give `ratio`, `per_layer` or `target_macs`")
        if isinstance(self.round_to, bool) or not isinstance(self.round_to, int) or self.round_to < 1:
            raise PruningError(f"`round_to` must be a positive int, received {self.round_to!r}")
        if isinstance(self.min_channels, bool) or not isinstance(self.min_channels, int) or self.min_channels < 1:
            raise PruningError(f"`min_channels` must be a positive int, received {self.min_channels!r}")
        exclude = self.exclude
        if isinstance(exclude, str) or not all(isinstance(name, str) for name in exclude):
            raise PruningError(f"`exclude` must be a list of layer names, received {exclude!r}")
        object.__setattr__(self, "exclude", tuple(exclude))

    def ratio_for(self, layer_names) -> float:
        """The ratio of the group whose sources are ``layer_names`` (per_layer first, then ratio)."""
        named = {name: self.per_layer[name] for name in layer_names if self.per_layer and name in self.per_layer}
        if len(set(named.values())) > 1:
            raise PruningError(
                f"`per_layer` gives different ratios to layers that must be pruned together: {named}"
            )
        if named:
            return next(iter(named.values()))
        return self.ratio or 0.0

    def kept_count(self, size: int, ratio: float, protected: int) -> int:
        """How many of a group's ``size`` channels survive ``ratio``: floor(ratio*size) go, rounded and bounded."""
        keep = size - math.floor(ratio * size + 1e-9)
        keep = min(size, math.ceil(keep / self.round_to) * self.round_to)
        return max(keep, min(size, self.min_channels), protected)
