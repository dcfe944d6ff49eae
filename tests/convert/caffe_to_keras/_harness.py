"""Shared plumbing for the per-layer Caffe -> Keras tests.

Each test module lists :class:`Case` objects: a few Input layers and the layers
under test, written as prototxt text with ``{p}`` standing for the case's
prefix. Cases go through keraffe's public pipeline (``load_net`` ->
``attach_seeded_weights`` -> ``convert_net``) and are judged by
``keraffe.verify.verify`` against real Caffe (brocolli-caffe) or, for layers
that build lacks, OpenCV DNN.

A pycaffe call costs about half a second and a Keras ``predict`` a second, so
a module batches all cases of one runtime and batch size into one net (every
case its own branch, with its own inputs) and verifies that net once, with
``per_layer``: each case then checks the rows of its own blobs. If the batch
cannot be converted or run at all, each case falls back to verifying its own
net, so one broken layer never hides the others (and ``check_all_batches``
fails, naming why the batch did not run).

Layers neither runtime can run are compared with numpy references written
from the defining Caffe source (see each module); :func:`convert_case` gives
the converted model and its outputs in Caffe's order for that.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from keraffe.caffe.net import CaffeNet, load_net
from keraffe.caffe.seeded import attach_seeded_weights
from keraffe.verify import run_model
from keraffe.verify.report import compare

#: Relative tolerance (max abs error over max |reference|), verify's default.
TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    #: Input blob (without prefix) -> Caffe shape.
    inputs: dict
    #: Layer text; "{p}" is replaced by the case's prefix.
    layers: str
    #: "caffe" (real Caffe) or "opencv".
    runtime: str = "caffe"
    #: check(model, prefix): structural assertions on the converted Keras model.
    check: Callable | None = None
    #: Input blobs whose values must be positive (Log, fractional Power).
    positive: tuple = ()
    #: edit(net, prefix): change the seeded weights before conversion.
    edit: Callable | None = None
    #: Verify this case in a net of its own (a case expected to fail must not take its batch along).
    alone: bool = False
    #: adjust(values, prefix): change the seeded inputs (Caffe NCHW arrays by blob name) in place.
    adjust: Callable | None = None
    marks: tuple = ()

    @property
    def batch(self) -> int:
        """The batch size of the case's inputs (2 for a case that declares its Input layers itself)."""
        return next(iter(self.inputs.values()))[0] if self.inputs else 2


def inputs(**shapes):
    return shapes


def prefix_of(case: Case) -> str:
    return f"{case.id}__"


def case_text(case: Case, prefix: str) -> str:
    parts = []
    for name, shape in case.inputs.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        parts.append(f'layer {{ name: "{prefix}{name}" type: "Input" top: "{prefix}{name}" '
                     f"input_param {{ shape {{ {dims} }} }} }}\n")
    parts.append(textwrap.dedent(case.layers).replace("{p}", prefix) + "\n")
    return "".join(parts)


def case_inputs(cases, net: CaffeNet, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs; positive ones for the blobs a case asks for."""
    rng = np.random.default_rng(seed)
    positive = {prefix_of(c) + name for c in cases for name in c.positive}
    values = {}
    for tensor in net.inputs:
        value = rng.standard_normal(net.shapes[tensor]).astype(np.float32)
        if str(tensor) in positive:
            value = np.abs(value) + np.float32(0.25)
        values[str(tensor)] = value
    for case in cases:
        if case.adjust is not None:
            case.adjust(values, prefix_of(case))
    return values


def build_net(cases, path: Path, seed: int = 0) -> CaffeNet:
    text = 'name: "cases"\n' + "".join(case_text(c, prefix_of(c)) for c in cases)
    path.write_text(text)
    net = attach_seeded_weights(load_net(path), seed)
    for case in cases:
        if case.edit is not None:
            case.edit(net, prefix_of(case))
    return net


def convert(net: CaffeNet):
    """Convert a copy of the net the way the CLI and keraffe.caffe_to_keras do (weights handed over)."""
    import copy

    from keraffe.convert.caffe_to_keras import convert_net

    handed_over = copy.deepcopy(net)
    model, tensor_map = convert_net(handed_over, release_weights=True)
    assert not handed_over.has_weights, "a handler kept Caffe weights it was handed"
    model.keraffe_tensor_map = tensor_map
    return model


@dataclasses.dataclass
class Verified:
    model: object
    rows: list


class Batch:
    """The cases of a module, verified as one net per runtime and batch size (lazily, once each)."""

    def __init__(self, cases, directory: Path):
        self.cases = list(cases)
        self.directory = directory
        self._batched: dict[tuple, Verified | None] = {}
        #: Why a batch could not be verified as one net (its cases then ran one by one).
        self.errors: dict[tuple, str] = {}

    def _verify(self, cases, runtime: str, name: str) -> Verified:
        from keraffe.verify import verify

        net = build_net(cases, self.directory / f"{name}.prototxt")
        model = convert(net)
        report = verify(model, net, case_inputs(cases, net), per_layer=True, runtime=runtime, tolerance=TOLERANCE)
        return Verified(model, report.layers)

    @staticmethod
    def key(case: Case) -> tuple:
        # One net feeds one batch size to all its inputs.
        return case.runtime, case.batch

    def result(self, case: Case) -> Verified:
        if case.alone:
            return self._verify([case], case.runtime, f"alone_{case.id}")
        key = self.key(case)
        if key not in self._batched:
            members = [c for c in self.cases if self.key(c) == key and not c.alone]
            try:
                self._batched[key] = self._verify(members, case.runtime, f"batch_{key[0]}_n{key[1]}")
            except Exception as error:  # noqa: BLE001 - fall back to one net per case, which reports the error
                self._batched[key] = None
                self.errors[key] = f"{type(error).__name__}: {error}"
        batched = self._batched[key]
        if batched is not None:
            return batched
        return self._verify([case], case.runtime, f"case_{case.id}")

    def check_all_batches(self) -> None:
        """Every batch of the module converts and runs as one net (else its cases ran alone, slowly)."""
        for case in self.cases:
            if case.alone:
                continue
            if self.key(case) not in self._batched:
                self.result(case)
        assert not self.errors, "\n".join(f"batch {k}: {e}" for k, e in self.errors.items())


def assert_case(batch: Batch, case: Case) -> None:
    """The case's blobs all match the runtime, and its structural checks hold."""
    result = batch.result(case)
    prefix = prefix_of(case)
    rows = [r for r in result.rows if r.caffe_tensor.startswith(prefix)]
    assert rows, f"no blob of case {case.id} was compared"
    bad = [r for r in rows if not r.ok]
    assert not bad, f"case {case.id} differs from {case.runtime}:\n" + "\n".join(
        f"  {r.caffe_tensor} (keras {r.keras_layer}): shape {r.shape} max abs err {r.max_abs:.3g} "
        f"max |ref| {r.max_ref:.3g} rel {r.rel:.3g}" for r in rows)
    if case.check is not None:
        case.check(result.model, prefix)


def params(cases):
    return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]


# ------------------------------------------------------------------ numpy references


def convert_case(case: Case, directory: Path, seed: int = 0):
    """Convert one case; returns (model, net, inputs, outputs) with outputs in Caffe order by blob."""
    net = build_net([case], directory / f"{case.id}.prototxt", seed)
    model = convert(net)
    values = case_inputs([case], net, seed)
    return model, net, values, run_keras(model, net, values)


def run_keras(model, net: CaffeNet, values: dict) -> dict[str, np.ndarray]:
    """Every materialised final blob of the net, from Keras, moved to Caffe's order by the tensor map."""
    import keras

    tmap = model.keraffe_tensor_map
    final = {}
    for node in net.layers:
        for tensor in node.outputs:
            final[tensor.blob] = str(tensor)
    entries = [tmap[name] for name in final.values() if name in tmap.entries and tmap[name].keras_layer]
    tensors = []
    for entry in entries:
        layer = model.get_layer(entry.keras_layer)
        tensors.append(layer._inbound_nodes[entry.keras_node].output_tensors[entry.keras_output])
    feature_model = keras.Model(model.inputs, tensors)
    keras_inputs = [tmap[name].layout.to_keras(values[name]) for name in tmap.inputs]
    results = run_model(feature_model, keras_inputs)
    return {e.caffe_blob: e.layout.to_caffe(np.asarray(r)) for e, r in zip(entries, results)}


def assert_close(name: str, reference: np.ndarray, candidate: np.ndarray, tolerance: float = TOLERANCE) -> None:
    row = compare(name, None, reference, candidate, tolerance)
    assert row.ok, (f"{name}: shape {np.shape(candidate)} vs reference {np.shape(reference)}, max abs err "
                    f"{row.max_abs:.3g}, max |ref| {row.max_ref:.3g}, rel {row.rel:.3g} > {tolerance:g}")


# ------------------------------------------------------------------ structure


def layers_of(model, prefix: str, cls: str | None = None):
    """The Keras layers a case created (their names start with its prefix), optionally of one class."""
    return [layer for layer in model.layers
            if layer.name.startswith(prefix) and (cls is None or type(layer).__name__ == cls)]


def classes_of(model, prefix: str) -> list[str]:
    return [type(layer).__name__ for layer in layers_of(model, prefix) if type(layer).__name__ != "InputLayer"]
