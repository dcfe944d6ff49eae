"""Per-layer sparsity report and the compressed size of the whole model.

``summary(model)`` returns a :class:`ModelSparsity`: rows of numbers, totals and
sizes, printable as text (``str``), as a ``rich`` table (``rich.print``), or as a
dict for JSON, so ``keraffe inspect MODEL.keras`` and scripts render the same data.
It reads pruning models (the numbers are what the network computes with, i.e.
weights times masks), stripped models, and any other Keras model.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import tempfile
from pathlib import Path

import keras
import numpy as np

from keraffe.errors import PruningError
from keraffe.pruning import prunable as prunable_lib
from keraffe.pruning.wrapper import PruneLowMagnitude

__all__ = ["LayerSparsity", "ModelSparsity", "summary"]


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    """One layer's counts.

    ``parameters``/``nonzeros`` cover all the layer's weights (bias included);
    ``prunable_parameters``/``prunable_nonzeros`` only the weights pruning acts
    on (the kernels), which is where the target sparsity applies.
    ``status`` says whether the layer is being pruned, could be, or passes through.
    """

    name: str
    layer_type: str
    parameters: int
    nonzeros: int
    prunable_parameters: int
    prunable_nonzeros: int
    status: str

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzeros / self.parameters if self.parameters else 0.0

    @property
    def prunable_sparsity(self) -> float | None:
        if not self.prunable_parameters:
            return None
        return 1.0 - self.prunable_nonzeros / self.prunable_parameters

    def to_dict(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "sparsity": self.sparsity,
            "prunable_sparsity": self.prunable_sparsity,
        }


@dataclasses.dataclass(frozen=True)
class ModelSparsity:
    """The whole report: rows, totals, and sizes of the saved model.

    ``keras_bytes`` is the size of the ``.keras`` file and ``gzip_bytes`` that file
    gzip-compressed (level 9): the ``.keras`` zip stores weights uncompressed, so
    the gzip size is what the zeros save in transfer or storage.
    """

    model_name: str
    layers: tuple[LayerSparsity, ...]
    keras_bytes: int
    gzip_bytes: int

    @property
    def parameters(self) -> int:
        return sum(row.parameters for row in self.layers)

    @property
    def nonzeros(self) -> int:
        return sum(row.nonzeros for row in self.layers)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzeros / self.parameters if self.parameters else 0.0

    def to_dict(self) -> dict:
        return {
            "model_name": self.model_name,
            "layers": [row.to_dict() for row in self.layers],
            "parameters": self.parameters,
            "nonzeros": self.nonzeros,
            "sparsity": self.sparsity,
            "keras_bytes": self.keras_bytes,
            "gzip_bytes": self.gzip_bytes,
        }

    _HEADERS = ("layer", "type", "params", "non-zeros", "sparsity", "kernel sparsity", "status")

    def _cells(self) -> list[tuple[str, ...]]:
        rows = []
        for row in self.layers:
            kernel = "-" if row.prunable_sparsity is None else f"{row.prunable_sparsity:.2%}"
            rows.append(
                (
                    row.name,
                    row.layer_type,
                    f"{row.parameters:,}",
                    f"{row.nonzeros:,}",
                    f"{row.sparsity:.2%}",
                    kernel,
                    row.status,
                )
            )
        return rows

    def _footer(self) -> str:
        return (
            f"total: {self.parameters:,} params, {self.nonzeros:,} non-zeros, "
            f"{self.sparsity:.2%} sparse; .keras {self.keras_bytes:,} bytes, "
            f"gzip {self.gzip_bytes:,} bytes"
        )

    def __str__(self) -> str:
        cells = [self._HEADERS, *self._cells()]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self._HEADERS))]
        numeric = {2, 3, 4, 5}
        lines = [f"Model: {self.model_name}"]
        for index, row in enumerate(cells):
            lines.append(
                "  ".join(
                    cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                    for i, cell in enumerate(row)
                ).rstrip()
            )
            if index == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines.append(self._footer())
        return "\n".join(lines)

    def __rich__(self):
        from rich.table import Table

        table = Table(title=f"Model: {self.model_name}", caption=self._footer())
        for index, header in enumerate(self._HEADERS):
            table.add_column(header, justify="right" if index in (2, 3, 4, 5) else "left")
        for row in self._cells():
            table.add_row(*row)
        return table


def _leaf_layers(model):
    """Layers that hold weights, descending into nested models but not into wrappers."""
    for layer in model.layers:
        if isinstance(layer, keras.Model) and not isinstance(layer, PruneLowMagnitude):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _count(arrays) -> tuple[int, int]:
    return (
        sum(int(array.size) for array in arrays),
        sum(int(np.count_nonzero(array)) for array in arrays),
    )


def _row(layer) -> LayerSparsity | None:
    if isinstance(layer, PruneLowMagnitude):
        inner = layer.layer
        values = layer.masked_weight_values()
        by_id = {id(v): value for v, value in zip(inner.weights, values)}
        pruned = [by_id[id(v)] for v in layer.pruned_weights]
        schedule = layer.pruning_schedule
        step = layer.current_step()
        status = (
            f"pruning: {layer.pattern.describe()}, step {step}, "
            f"schedule sparsity {schedule.sparsity_at(max(step, 0)):.2f}"
        )
        parameters, nonzeros = _count(values)
        prunable_parameters, prunable_nonzeros = _count(pruned)
        return LayerSparsity(
            inner.name, type(inner).__name__, parameters, nonzeros,
            prunable_parameters, prunable_nonzeros, status,
        )
    if not layer.weights:
        return None
    values = [keras.ops.convert_to_numpy(v) for v in layer.weights]
    parameters, nonzeros = _count(values)
    reason = prunable_lib.why_not_prunable(layer)
    if reason is None and layer.built:
        kernels = [keras.ops.convert_to_numpy(t.variable) for t in prunable_lib.prunable_weights(layer)]
        prunable_parameters, prunable_nonzeros = _count(kernels)
        status = "prunable, not wrapped"
    else:
        prunable_parameters = prunable_nonzeros = 0
        status = f"passed through: {reason}"
    return LayerSparsity(
        layer.name, type(layer).__name__, parameters, nonzeros,
        prunable_parameters, prunable_nonzeros, status,
    )


def _saved_sizes(model=None, path: Path | None = None) -> tuple[int, int]:
    if path is None:
        with tempfile.TemporaryDirectory(prefix="keraffe-summary-") as directory:
            path = Path(directory) / "model.keras"
            model.save(path)
            data = path.read_bytes()
    else:
        data = path.read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=9, mtime=0))


def summary(model, saved_file: str | os.PathLike | None = None) -> ModelSparsity:
    """Per-layer parameters, non-zeros and sparsity, and the model's saved and gzip sizes.

    ``model``: a built Keras model, or the path of a ``.keras`` file (then the
    sizes are those of that file, as ``keraffe inspect`` reports them).
    ``saved_file``: the ``.keras`` file ``model`` was loaded from, when the
    caller loaded it; the sizes are then that file's (optimizer state
    included), not those of the model saved again.
    """
    path = Path(saved_file) if saved_file is not None else None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.suffix != ".keras" or not path.is_file():
            raise PruningError(f"`model` must be a built Keras model or a .keras file, received {str(model)!r}.")
        model = keras.saving.load_model(path)
    if not isinstance(model, keras.Model):
        raise PruningError(
            f"`model` must be a built Keras model or a .keras file path, received "
            f"{type(model).__name__}: {model!r}."
        )
    if not model.built:
        raise PruningError(f"`model` '{model.name}' is not built; call it on data first.")
    rows = tuple(row for row in (_row(layer) for layer in _leaf_layers(model)) if row is not None)
    keras_bytes, gzip_bytes = _saved_sizes(model, path)
    return ModelSparsity(model.name, rows, keras_bytes, gzip_bytes)
