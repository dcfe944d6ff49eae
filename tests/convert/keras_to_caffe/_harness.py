"""Shared plumbing for the per-layer Keras -> Caffe tests.

Each test module lists :class:`Case` objects: Keras input shapes and a
``build(inputs, p)`` function that calls the layers under test on those
inputs, naming every layer it makes with the case's prefix ``p``. The cases of
a module that share a target and runtime are built into one functional model
(every case its own branch, with its own inputs and outputs), the model's
weights are randomised with seeded normals (:func:`randomize`), and the model
is converted by keraffe's public ``keras_to_caffe`` into files, loaded back
with ``load_net`` and judged by ``keraffe.verify.verify`` with ``per_layer``:
every Caffe blob that holds a Keras tensor is compared, not only the outputs
(random softmax outputs saturate and would hide errors).

A real-Caffe call costs about half a second and a Keras ``predict`` a second
or two, so one net per module and target is verified once (lazily, per pytest
worker); each case then checks the rows of its own blobs, which carry its
prefix. If the batch cannot be converted or run at all, each case falls back
to a net of its own, so one broken layer never hides the others, and
``check_all_batches`` reports the batch failure itself.

Real Caffe (brocolli-caffe) reads pooling's ``ceil_mode`` only and has no
Clip or Swish: targets ``caffe1`` and ``opencv`` (whose prototxt uses
``ceil_mode``) are judged by it; target ``caffe`` (BVLC master, ``round_mode``,
Clip, Swish) is judged by OpenCV DNN, as are OpenCV's own layer types.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

#: Relative tolerance (max abs error over max |reference|), verify's default.
TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    #: Keras input shapes, without the batch axis.
    shapes: tuple
    #: build(inputs, p) -> a Keras tensor or a list of them; every layer is named p + "...".
    build: Callable
    target: str = "caffe1"
    #: "caffe" (real Caffe) or "opencv".
    runtime: str = "caffe"
    #: check(export, p): structural assertions on the CaffeExport (net layer types, report).
    check: Callable | None = None
    #: Verify this case in a net of its own (a case expected to fail must not take its batch along).
    alone: bool = False
    #: Keras layer names (without prefix) that must each have at least one compared Caffe blob.
    compared: tuple = ()
    marks: tuple = ()
    #: When > 0, the case's inputs are token ids in [0, vocabulary) (for Embedding), not normal values.
    vocabulary: int = 0


def prefix_of(case: Case) -> str:
    return f"{case.id}__"


def params(cases):
    return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]


# ------------------------------------------------------------------ models


def randomize(model, seed: int = 0, scale: float = 0.5) -> None:
    """Seeded normal weights for every layer; variances positive, so nothing passes trivially.

    Weights named like a variance (BatchNormalization's moving_variance,
    Normalization's variance) become |normal| + 0.5; every other weight is a
    normal of standard deviation ``scale`` (0.5 keeps small nets' values in a
    range where activations are not saturated).
    """
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, _functional_types()) or not layer.weights:
            continue
        values = []
        for variable in layer.weights:
            shape = tuple(variable.shape)
            name = variable.path.rsplit("/", 1)[-1]
            if "variance" in name:
                values.append((np.abs(rng.standard_normal(shape)) + 0.5).astype(np.float32))
            elif name == "count":
                values.append(np.asarray(variable.numpy()))
            else:
                values.append((scale * rng.standard_normal(shape)).astype(np.float32))
        layer.set_weights(values)


def _functional_types():
    import keras

    return (keras.Model,)


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer is not model:
            yield from _all_layers(layer)
        else:
            yield layer


def build_model(cases, name: str = "cases"):
    import keras

    inputs, outputs = [], []
    for case in cases:
        p = prefix_of(case)
        dtype = "int32" if case.vocabulary else "float32"
        tensors = [keras.Input(shape=s, name=f"{p}x{i}", dtype=dtype) for i, s in enumerate(case.shapes)]
        made = case.build(tensors, p)
        inputs.extend(tensors)
        outputs.extend(made if isinstance(made, (list, tuple)) else [made])
    return keras.Model(inputs, outputs, name=name)


def convert_files(model, directory: Path, target: str = "caffe1", name: str = "net"):
    """keraffe.keras_to_caffe into files, and the net read back with its weights: (export, net)."""
    import keraffe
    from keraffe.caffe.net import load_net

    directory.mkdir(parents=True, exist_ok=True)
    export = keraffe.keras_to_caffe(model, directory / f"{name}.prototxt", target=target)
    return export, load_net(export.prototxt, export.caffemodel)


def verify_model(model, directory: Path, target: str = "caffe1", runtime: str = "caffe", name: str = "net",
                 seed: int = 0, inputs=None, vocabularies=None):
    """Convert and compare every mapped blob in ``runtime``: (export, report).

    ``vocabularies`` maps input names to a vocabulary size: those inputs are
    seeded token ids in [0, size), as Embedding reads them.
    """
    from keraffe.verify import seeded_inputs, verify

    export, net = convert_files(model, directory, target, name)
    values = inputs if inputs is not None else seeded_inputs(net, seed)
    rng = np.random.default_rng(seed)
    for input_name, size in (vocabularies or {}).items():
        values[input_name] = rng.integers(0, size, values[input_name].shape).astype(np.float32)
    report = verify(model, net, values, per_layer=True, runtime=runtime, tolerance=TOLERANCE,
                    tensor_map=export.tensor_map)
    return export, report


def describe(rows) -> str:
    return "\n".join(f"  {r.caffe_tensor} (keras {r.keras_layer}): shape {r.shape} max abs err {r.max_abs:.3g} "
                     f"max |ref| {r.max_ref:.3g} rel {r.rel:.3g}{'' if r.ok else '  <-- differs'}" for r in rows)


def assert_report_ok(report, what: str = "model") -> None:
    bad = [r for r in report.layers + report.outputs if not r.ok]
    assert report.layers, f"{what}: no blob was compared"
    assert not bad, f"{what} differs from {report.runtime}:\n" + describe(report.layers)


def assert_verified(model, directory: Path, target: str = "caffe1", runtime: str = "caffe", **kwargs):
    """Convert ``model`` and require every compared blob to match; returns (export, report)."""
    export, report = verify_model(model, directory, target, runtime, **kwargs)
    assert_report_ok(report, model.name)
    return export, report


# ------------------------------------------------------------------ batches


@dataclasses.dataclass
class Verified:
    export: object
    rows: list


class Batch:
    """The cases of a module, verified as one net per (target, runtime), lazily and once each.

    Under pytest-xdist both workers would build, convert and verify the same
    batch on the same two cores; the first one to get there does it and leaves
    the result (pickled) in the session's shared temporary folder for the other.
    """

    def __init__(self, cases, tmp_path_factory, name: str):
        self.cases = list(cases)
        self.name = name
        base = tmp_path_factory.getbasetemp()
        self.shared = base.parent if base.name.startswith("popen-gw") else base
        self.directory = tmp_path_factory.mktemp(name)
        self._batched: dict[tuple, Verified | None] = {}
        #: Why a batch could not be verified as one net (its cases then ran one by one).
        self.errors: dict[tuple, str] = {}

    def _verify(self, cases, target: str, runtime: str, name: str) -> Verified:
        model = build_model(cases, name)
        randomize(model)
        vocabularies = {f"{prefix_of(c)}x{i}": c.vocabulary for c in cases if c.vocabulary
                        for i in range(len(c.shapes))}
        export, report = verify_model(model, self.directory / name, target, runtime, name,
                                      vocabularies=vocabularies)
        return Verified(export, report.layers)

    @staticmethod
    def key(case: Case) -> tuple:
        return case.target, case.runtime

    def _shared_batch(self, key) -> tuple[Verified | None, str | None]:
        import pickle

        try:
            from filelock import FileLock
        except ImportError:  # pragma: no cover - filelock comes with torch
            FileLock = None
        path = self.shared / f"keras_to_caffe_{self.name}_{key[0]}_{key[1]}.pickle"
        lock = FileLock(str(path) + ".lock") if FileLock else None
        if lock:
            lock.acquire()
        try:
            if path.exists():
                return pickle.loads(path.read_bytes())
            members = [c for c in self.cases if self.key(c) == key and not c.alone]
            try:
                result = (self._verify(members, key[0], key[1], f"batch_{key[0]}_{key[1]}"), None)
            except Exception as error:  # noqa: BLE001 - fall back to one net per case, which reports the error
                result = (None, f"{type(error).__name__}: {error}")
            path.write_bytes(pickle.dumps(result))
            return result
        finally:
            if lock:
                lock.release()

    def result(self, case: Case) -> Verified:
        if case.alone:
            return self._verify([case], case.target, case.runtime, f"alone_{case.id}")
        key = self.key(case)
        if key not in self._batched:
            self._batched[key], error = self._shared_batch(key)
            if error:
                self.errors[key] = error
        batched = self._batched[key]
        if batched is not None:
            return batched
        return self._verify([case], case.target, case.runtime, f"case_{case.id}")

    def check_all_batches(self) -> None:
        """Every batch of the module converts and runs as one net (else its cases ran alone, slowly)."""
        for case in self.cases:
            if case.alone:
                continue
            if self.key(case) not in self._batched:
                self.result(case)
        assert not self.errors, "\n".join(f"batch {k}: {e}" for k, e in self.errors.items())


def assert_case(batch: Batch, case: Case) -> None:
    """The case's blobs all match the runtime, its named layers were compared, and its checks hold."""
    result = batch.result(case)
    prefix = prefix_of(case)
    rows = [r for r in result.rows if r.keras_layer and r.keras_layer.startswith(prefix)]
    computed = [r for r in rows if not re.fullmatch(re.escape(prefix) + r"x\d+", r.keras_layer)]
    assert computed, f"no computed blob of case {case.id} was compared"
    bad = [r for r in rows if not r.ok]
    assert not bad, f"case {case.id} differs from {case.runtime}:\n" + describe(rows)
    seen = {r.keras_layer for r in rows}
    missing = [n for n in case.compared if prefix + n not in seen]
    assert not missing, f"case {case.id}: no blob of Keras layer(s) {missing} was compared:\n" + describe(rows)
    if case.check is not None:
        case.check(result.export, prefix)


# ------------------------------------------------------------------ structure


def caffe_layers(export, prefix: str = "") -> list:
    """The Caffe layers whose names start with ``prefix`` (those a case made)."""
    return [layer for layer in export.net.layer if layer.name.startswith(prefix)]


def caffe_types(export, prefix: str = "") -> list[str]:
    return [layer.type for layer in caffe_layers(export, prefix) if layer.type != "Input"]


def layer_named(export, name: str):
    matches = [layer for layer in export.net.layer if layer.name == name]
    assert matches, f"no Caffe layer named {name!r}; layers: {[l.name for l in export.net.layer]}"
    return matches[0]


def assert_types(export, prefix: str, expected) -> None:
    """The Caffe layers whose names start with ``prefix`` have exactly these types, in order."""
    got = caffe_types(export, prefix)
    assert got == list(expected), f"Caffe layers {prefix}*: {got}, expected {list(expected)}"


def expect_types(*types: str):
    """A check: the case's Caffe layer types, in order."""
    def check(export, p):
        assert caffe_types(export, p) == list(types), caffe_types(export, p)
    return check


def expect_only(*allowed: str):
    """A check: the case uses only these Caffe layer types."""
    def check(export, p):
        used = set(caffe_types(export, p))
        assert used <= set(allowed), sorted(used - set(allowed))
    return check


# ------------------------------------------------------------------ a second judge, independent of the tensor map's layer names


def outer_rows(model, export, net, runtime: str = "caffe", seed: int = 0, tolerance: float = TOLERANCE):
    """Compare the model's outputs, and every blob of a plain layer of the outer graph, with ``runtime``.

    Independent of how keraffe.verify finds Keras tensors: the outputs are
    taken from the model by position (the tensor map's ``outputs`` order), the
    other blobs from the outer graph's own layers only.
    """
    import keras

    from keraffe.verify import run_reference, seeded_inputs
    from keraffe.verify.report import compare

    tmap = export.tensor_map
    inputs = seeded_inputs(net, seed)
    outer = {op.name: op for op in model.operations}
    chosen, tensors = [], []
    for position, blob in enumerate(tmap.outputs):
        chosen.append((blob, tmap[blob].layout, f"output {position}"))
        tensors.append(model.outputs[position])
    for entry in tmap.materialised():
        if entry.keras_layer in outer and entry.caffe_tensor not in tmap.outputs \
                and entry.caffe_tensor not in tmap.inputs and not hasattr(outer[entry.keras_layer], "operations"):
            node = outer[entry.keras_layer]._inbound_nodes[entry.keras_node]
            chosen.append((entry.caffe_tensor, entry.layout, entry.keras_layer))
            tensors.append(node.output_tensors[entry.keras_output])
    reference = run_reference(net, inputs, [tmap[name].caffe_blob for name, _, _ in chosen], runtime)
    feature_model = keras.Model(model.inputs, tensors)
    values = feature_model.predict([tmap[name].layout.to_keras(inputs[name]) for name in tmap.inputs], verbose=0)
    values = values if isinstance(values, (list, tuple)) else [values]
    return [compare(name, label, reference[tmap[name].caffe_blob], layout.to_caffe(np.asarray(value)), tolerance)
            for (name, layout, label), value in zip(chosen, values)]


def assert_outer_rows_ok(model, export, net, runtime: str = "caffe") -> list:
    rows = outer_rows(model, export, net, runtime)
    assert rows and all(r.ok for r in rows), f"{model.name} differs from {runtime}:\n" + describe(rows)
    return rows
