"""``keraffe check``: every rule of a target over a Caffe net, every violation at once.

A net may come from anywhere (keraffe's export or not). It is read without
asking that keraffe knows every layer type: shapes are inferred layer by
layer as far as keraffe has rules for them, and a rule that needs a shape
skips (and the report says so) where none is known. Each violation names the
layer, the rule, the rule's source and the fix keraffe would apply, if any.
Errors make the check fail; advice (a channel count off the NPU's block
size) does not.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from keraffe.caffe.net import CaffeNet, LayerNode, Tensor, load_net
from keraffe.errors import KeraffeError
from keraffe.targets.profile import ADVICE, ERROR, Profile


@dataclasses.dataclass
class NetView:
    """What rules read: the net, the shapes known, who reads each tensor, and the weights file if given."""

    net: CaffeNet
    #: The weights file as stored (layer name -> LayerWeights, with each layer's type), or None.
    weights: object | None = None

    def __post_init__(self):
        self.consumers: dict[Tensor, list[LayerNode]] = {}
        for node in self.net.layers:
            for tensor in node.inputs:
                self.consumers.setdefault(tensor, []).append(node)

    def layers(self, *types: str):
        return [node for node in self.net.layers if not types or node.type in types]

    def shape(self, tensor: Tensor):
        return self.net.shapes.get(tensor)

    def bottom(self, node: LayerNode, index: int = 0):
        return self.shape(node.inputs[index]) if index < len(node.inputs) else None

    def top(self, node: LayerNode, index: int = 0):
        return self.shape(node.outputs[index]) if index < len(node.outputs) else None


@dataclasses.dataclass(frozen=True)
class Violation:
    layer: str | None
    layer_type: str | None
    rule: str
    severity: str
    message: str
    source: str
    confidence: str
    #: The rewrite keraffe applies for it (``keraffe check --fix``, and every export for the target), or None.
    fix: str | None
    remedy: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CheckReport:
    net: str
    target: str
    violations: list[Violation]
    #: Layers whose shapes keraffe could not infer (rules that need shapes skipped them).
    unchecked: list[str] = dataclasses.field(default_factory=list)

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == ERROR]

    @property
    def advice(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == ADVICE]

    @property
    def clean(self) -> bool:
        return not self.errors

    def to_json(self) -> str:
        return json.dumps({"net": self.net, "target": self.target, "clean": self.clean,
                           "errors": len(self.errors), "advice": len(self.advice),
                           "violations": [v.to_json() for v in self.violations],
                           "unchecked": self.unchecked}, indent=1)

    def render(self) -> str:
        head = (f"{self.net}: target {self.target}: " + (
            "clean" if not self.violations else
            f"{len(self.errors)} error(s), {len(self.advice)} advice"))
        lines = [head]
        for v in self.violations:
            where = f"layer '{v.layer}' ({v.layer_type})" if v.layer else "the net"
            lines.append(f"  {v.severity} {v.rule}: {where}: {v.message}")
            lines.append(f"      source: {v.source} [{v.confidence}]")
            lines.append(f"      fix: keraffe rewrites it ({v.fix}): {v.remedy}" if v.fix else f"      fix: {v.remedy}")
        if self.unchecked:
            shown = ", ".join(self.unchecked[:8]) + (" ..." if len(self.unchecked) > 8 else "")
            lines.append(f"  note: shapes unknown from layer(s) {shown}: rules on shapes skipped them")
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """One line per rule broken: 'R-12 (3 layers)', for tables."""
        counts: dict[str, int] = {}
        for v in self.errors:
            counts[v.rule] = counts.get(v.rule, 0) + 1
        return "; ".join(f"{rule} ({n} layer{'s' if n > 1 else ''})" for rule, n in counts.items())


def check_net(net: CaffeNet, profile: Profile, weights=None, unchecked=()) -> CheckReport:
    """Every rule of ``profile`` over ``net``; ``weights`` (a CaffeWeights) enables the rules on the weights file."""
    view = NetView(net, weights)
    violations = []
    for rule in profile.rules:
        for finding in rule.check(view):
            fix = finding.fix if finding.fix is not None else rule.fix
            if finding.fixable is False:
                fix = None
            remedy = _rewrite_description(fix) if fix else rule.remedy
            violations.append(Violation(finding.layer, finding.layer_type, rule.id, rule.severity, finding.message,
                                        rule.source, rule.confidence, fix, remedy))
    order = {node.name: index for index, node in enumerate(net.layers)}
    violations.sort(key=lambda v: (v.severity != ERROR, order.get(v.layer, -1)))
    return CheckReport(net.source, profile.name, violations, list(unchecked))


def _rewrite_description(fix: str) -> str:
    from keraffe.targets.fit import REWRITES

    return REWRITES[fix].description


def load_for_check(prototxt: str | os.PathLike, weights: str | os.PathLike | None = None,
                   input_shapes=None) -> tuple[CaffeNet, object, list[str]]:
    """A net read for checking: every layer type accepted, shapes inferred as far as keraffe knows them.

    Returns the net, the weights file as stored (or None), and the layers
    from which shapes are unknown. Weights are bound to the layers (checked
    against their shapes where those are known), for ``--fix`` to write back.
    """
    from keraffe.caffe.caffemodel import read_weights
    from keraffe.caffe.net import bind_weights, infer_known_shapes

    net = load_net(prototxt, None, input_shapes, infer_shapes=False)
    unchecked = infer_known_shapes(net)
    stored = None
    if weights is not None:
        stored = read_weights(weights)
        bind_weights(net, stored)
    return net, stored, unchecked


def check_files(prototxt, target: str, weights=None, input_shapes=None) -> CheckReport:
    from keraffe.targets import get_profile

    profile = get_profile(target)
    if not Path(prototxt).is_file():
        raise KeraffeError(f"{prototxt}: prototxt file not found")
    net, stored, unchecked = load_for_check(prototxt, weights, input_shapes)
    return check_net(net, profile, stored, unchecked)
