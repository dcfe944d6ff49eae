"""Before and after, in numbers: parameters, MACs, file sizes, and latency of the Caffe export.

:func:`structured_report` exports both models to Caffe and times them in
OpenCV DNN side by side: the same input, a fixed thread count, before and
after measured in alternation (so drifting machine load hits both alike), the
median of each. The bench script bench/structured_speedup.py uses the same
functions.
"""

from __future__ import annotations

import dataclasses
import statistics
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


def export_for_timing(model, directory: Path, name: str):
    """(prototxt, caffemodel, inputs) of ``model`` exported with the default target, or a reason string."""
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.errors import KeraffeError
    from keraffe.verify import seeded_inputs

    try:
        export = keraffe.keras_to_caffe(model, Path(directory) / f"{name}.prototxt")
    except KeraffeError as error:
        return f"no Caffe export: {str(error).splitlines()[0]}"
    inputs = seeded_inputs(load_net(export.prototxt))
    return export.prototxt, export.caffemodel, inputs


def alternating_latency(exports: list, rounds: int = 5, repeats: int = 10, warmup: int = 3,
                        threads: int = 1) -> list[list[float]]:
    """Seconds of every forward pass of each export, the exports timed in turn, ``rounds`` times over."""
    from keraffe.verify.opencv_runtime import time_opencv

    timings: list[list[float]] = [[] for _ in exports]
    for _ in range(rounds):
        for index, (prototxt, caffemodel, inputs) in enumerate(exports):
            timings[index].extend(time_opencv(prototxt, caffemodel, inputs, repeats=repeats, warmup=warmup,
                                              threads=threads))
    return timings


def structured_report(before, after, *, latency: bool = True, threads: int = 1, rounds: int = 5,
                      repeats: int = 10, workdir=None) -> StructuredReport:
    """Measure the dense and the pruned model: parameters, MACs, .keras and .caffemodel sizes, latency."""
    with tempfile.TemporaryDirectory(prefix="keraffe-report-") as tmp:
        directory = Path(workdir or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        exports = [export_for_timing(model, directory, label) for model, label in ((before, "before"),
                                                                                  (after, "after"))]
        timed = [None, None]
        if latency and all(not isinstance(e, str) for e in exports):
            seconds = alternating_latency(exports, rounds=rounds, repeats=repeats, threads=threads)
            timed = [statistics.median(s) * 1000.0 for s in seconds]
        measurements = []
        for model, export, ms, label in zip((before, after), exports, timed, ("before", "after")):
            caffemodel = None if isinstance(export, str) else Path(export[1]).stat().st_size
            note = export if isinstance(export, str) else ""
            measurements.append(ModelMeasurements(int(model.count_params()), model_macs(model),
                                                  keras_file_bytes(model, directory, label), caffemodel, ms, note))
    return StructuredReport(measurements[0], measurements[1], threads if latency else None)
