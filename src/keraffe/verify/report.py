"""What `keraffe verify` found: per-tensor errors, the first divergence, pass or fail."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class TensorComparison:
    caffe_tensor: str
    keras_layer: str | None
    shape: tuple[int, ...]
    max_abs: float
    max_ref: float
    tolerance: float

    @property
    def rel(self) -> float:
        """Max absolute error over max |reference|: the number the tolerance applies to."""
        return self.max_abs / self.max_ref if self.max_ref > 0 else self.max_abs

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_abs)) and self.rel <= self.tolerance

    def to_dict(self) -> dict:
        return {"caffe": self.caffe_tensor, "keras": self.keras_layer, "shape": list(self.shape),
                "max_abs": self.max_abs, "max_ref": self.max_ref, "rel": self.rel, "ok": self.ok}


def compare(caffe_tensor: str, keras_layer: str | None, reference: np.ndarray, candidate: np.ndarray,
            tolerance: float) -> TensorComparison:
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        return TensorComparison(caffe_tensor, keras_layer, tuple(reference.shape), float("inf"), 0.0, tolerance)
    max_abs = float(np.max(np.abs(reference - candidate))) if reference.size else 0.0
    max_ref = float(np.max(np.abs(reference))) if reference.size else 0.0
    return TensorComparison(caffe_tensor, keras_layer, tuple(reference.shape), max_abs, max_ref, tolerance)


@dataclasses.dataclass
class VerifyReport:
    runtime: str
    tolerance: float
    outputs: list[TensorComparison]
    layers: list[TensorComparison] = dataclasses.field(default_factory=list)
    #: Caffe tensors left out because no runtime computes them (keraffe.verify.NO_RUNTIME) -> why.
    unjudged: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.outputs)

    @property
    def first_divergence(self) -> TensorComparison | None:
        """The first tensor, in net order, whose error exceeds the tolerance."""
        return next((c for c in self.layers if not c.ok), None)

    @property
    def max_rel(self) -> float:
        return max((c.rel for c in self.outputs), default=0.0)

    def to_dict(self) -> dict:
        first = self.first_divergence
        return {"runtime": self.runtime, "tolerance": self.tolerance, "ok": self.ok,
                "outputs": [c.to_dict() for c in self.outputs], "layers": [c.to_dict() for c in self.layers],
                "first_divergence": first.caffe_tensor if first else None, "unjudged": dict(self.unjudged)}

    def render(self) -> str:
        import io

        from rich.console import Console
        from rich.table import Table

        console = Console(record=True, width=120, file=io.StringIO())
        for title, rows in (("outputs", self.outputs), ("per layer", self.layers)):
            if not rows:
                continue
            table = Table(title=f"{title}: Keras against {self.runtime} (tolerance {self.tolerance:g} relative)")
            for column in ("caffe blob", "keras layer", "shape", "max abs err", "max |ref|", "rel err", ""):
                table.add_column(column, overflow="fold")
            first = self.first_divergence if rows is self.layers else None
            for c in rows:
                mark = "ok" if c.ok else ("FIRST DIVERGENCE" if c is first else "MISMATCH")
                table.add_row(c.caffe_tensor, c.keras_layer or "-", "x".join(map(str, c.shape)),
                              f"{c.max_abs:.3g}", f"{c.max_ref:.3g}", f"{c.rel:.3g}", mark)
            console.print(table)
        for tensor, why in self.unjudged.items():
            console.print(f"not judged: {tensor} ({why})")
        left_out = f"; {len(self.unjudged)} tensor(s) not judged, listed above" if self.unjudged else ""
        console.print("verify: " + ("PASS" if self.ok else "FAIL") +
                      f" (largest output error {self.max_rel:.3g} relative{left_out})")
        return console.export_text()
