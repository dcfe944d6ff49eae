"""Before and after, in numbers: parameters, MACs and file sizes.

Pruning is pure Keras, so this report measures the Keras models only; the
size and OpenCV latency of their Caffe exports are added by
:mod:`keraffe.verify.latency`, which the CLI's ``prune --report`` and the
bench scripts use.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from keraffe.pruning.structured.shrink import model_macs


@dataclasses.dataclass(frozen=True)
class ModelMeasurements:
    """One model's numbers; sizes in bytes, latency in milliseconds (None where not measured)."""

    parameters: int
    macs: int
    keras_bytes: int
    caffemodel_bytes: int | None
    latency_ms: float | None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class StructuredReport:
    """The dense and the pruned model's measurements, and how they compare."""

    before: ModelMeasurements
    after: ModelMeasurements
    threads: int | None = None

    def ratio(self, field: str) -> float | None:
        a, b = getattr(self.before, field), getattr(self.after, field)
        return None if a in (None, 0) or b is None else b / a

    def to_dict(self) -> dict:
        fields = ("parameters", "macs", "keras_bytes", "caffemodel_bytes", "latency_ms")
        return {"before": dataclasses.asdict(self.before), "after": dataclasses.asdict(self.after),
                "ratios": {field: self.ratio(field) for field in fields}, "threads": self.threads}

    def render(self) -> str:
        rows = [("parameters", "{:,}"), ("macs", "{:,}"), ("keras_bytes", "{:,}"), ("caffemodel_bytes", "{:,}"),
                ("latency_ms", "{:.2f}")]
        lines = [f"{'':<18}{'before':>16}{'after':>16}{'after/before':>14}"]
        for field, fmt in rows:
            a, b, r = getattr(self.before, field), getattr(self.after, field), self.ratio(field)
            show = (lambda v: "n/a" if v is None else fmt.format(v))
            lines.append(f"{field:<18}{show(a):>16}{show(b):>16}{'n/a' if r is None else f'{r:.3f}':>14}")
        if self.threads is not None and self.before.latency_ms is not None:
            lines.append(f"latency: OpenCV DNN, {self.threads} thread(s), median, before/after alternated")
        for label, m in (("before", self.before), ("after", self.after)):
            if m.note:
                lines.append(f"{label}: {m.note}")
        return "\n".join(lines) + "\n"


def keras_file_bytes(model, directory: Path, label: str = "model") -> int:
    """Size of the model saved as .keras, without optimizer state (a compiled model would carry its slots)."""
    from keraffe.pruning.structured.rebuild import copy_model

    path = Path(directory) / f"{label}.keras"
    copy_model(model).save(path)
    return path.stat().st_size


def structured_report(before, after, *, workdir=None) -> StructuredReport:
    """The dense and the pruned model's parameters, MACs and .keras sizes.

    The Caffe side (the default-target .caffemodel size and the OpenCV DNN
    latency of both exports) is measured where Keras and Caffe meet:
    :func:`keraffe.verify.latency.deployment_report`, which starts from this.
    """
    with tempfile.TemporaryDirectory(prefix="keraffe-report-") as tmp:
        directory = Path(workdir or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        measured = [ModelMeasurements(int(model.count_params()), model_macs(model),
                                      keras_file_bytes(model, directory, label), None, None)
                    for model, label in ((before, "before"), (after, "after"))]
    return StructuredReport(measured[0], measured[1])
