"""How fast a model runs once shipped: its Caffe export timed in OpenCV DNN, before and after pruning.

:func:`deployment_report` starts from pruning's Keras-side report
(:func:`keraffe.pruning.structured.structured_report`: parameters, MACs,
.keras sizes), exports both models to Caffe with the default target, and times
them in OpenCV DNN side by side: the same seeded input, a fixed thread count,
before and after measured in alternation (so drifting machine load hits both
alike), the median of each. bench/structured_speedup.py uses the same
functions.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
from pathlib import Path

from keraffe.errors import KeraffeError


def export_for_timing(model, directory: Path, name: str):
    """(prototxt, caffemodel, inputs) of ``model`` exported with the default target, or a reason string."""
    from keraffe.caffe.net import load_net
    from keraffe.convert.keras_to_caffe import export_files
    from keraffe.verify import seeded_inputs

    try:
        export = export_files(model, Path(directory) / f"{name}.prototxt")
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


def deployment_report(before, after, *, latency: bool = True, threads: int = 1, rounds: int = 5,
                      repeats: int = 10, workdir=None):
    """Pruning's report of the dense and the pruned model, with their Caffe exports' sizes and latency."""
    from keraffe.pruning.structured.report import structured_report

    with tempfile.TemporaryDirectory(prefix="keraffe-report-") as tmp:
        directory = Path(workdir or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        report = structured_report(before, after, workdir=directory)
        exports = [export_for_timing(model, directory, label) for model, label in ((before, "before"),
                                                                                  (after, "after"))]
        timed = [None, None]
        if latency and all(not isinstance(e, str) for e in exports):
            seconds = alternating_latency(exports, rounds=rounds, repeats=repeats, threads=threads)
            timed = [statistics.median(s) * 1000.0 for s in seconds]
        sides = []
        for measured, export, ms in zip((report.before, report.after), exports, timed):
            if isinstance(export, str):
                sides.append(dataclasses.replace(measured, note=export))
            else:
                sides.append(dataclasses.replace(measured, caffemodel_bytes=Path(export[1]).stat().st_size,
                                                 latency_ms=ms))
    return dataclasses.replace(report, before=sides[0], after=sides[1], threads=threads if latency else None)
