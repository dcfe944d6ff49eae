"""Hostile files through every entry point: success or one KeraffeError, never a crash, hang or leftover.

Each test draws a real zoo file, mutates it with the structure-aware mutators
of :mod:`fuzzing.mutators` (hypothesis drives every choice, so a failure
shrinks to a small case and prints how to replay it), and runs it through the
entry points that read that format. ``make test`` runs the bounded profile
with a fixed seed (corpus.SEED); ``make fuzz`` (bench/fuzz.py) runs the long
one and records the figures that the README shows.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from .corpus import SCALE, SEED, ZOO, seeds, zoo_path
from .harness import describe, fresh_folder, record, run_api, run_cli
from .mutators import (BINARYPROTO, CAFFEMODEL, CAFFEMODEL_MEANING, HDF5_CAFFE, HDF5_KERAS, KERAS_ZIP, PROTOTXT,
                       PROTOTXT_MEANING, apply_several)

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.skipif(not ZOO.is_dir(), reason=f"model zoo not found at {ZOO} (the fuzzer mutates its files)"),
]


class DataChoices:
    """Every decision a mutator makes, drawn from hypothesis (so it replays and shrinks)."""

    def __init__(self, data):
        self.data = data

    def integer(self, low: int, high: int) -> int:
        return low if high <= low else self.data.draw(st.integers(low, high))

    def pick(self, options):
        options = list(options)
        return options[self.integer(0, len(options) - 1)]


def fuzz(examples: int):
    """A fuzz test's hypothesis settings: ``examples`` cases (times the profile's scale), the run's fixed seed."""

    def decorate(test):
        configured = settings(max_examples=examples * SCALE, deadline=None, database=None, print_blob=True,
                              suppress_health_check=list(HealthCheck),
                              phases=(Phase.explicit, Phase.generate, Phase.shrink))(test)
        return seed(SEED)(configured)

    return decorate


def _case(data, fmt: str, mutations, most: int = 3):
    """(the seed entry, the mutated bytes, a description of the case) for one example."""
    choices = DataChoices(data)
    entry = choices.pick(seeds(fmt))
    source = entry[0] if isinstance(entry, tuple) else entry
    mutated, applied = apply_several(zoo_path(source).read_bytes(), choices, mutations, most)
    return entry, mutated, f"{source} mutated by {' then '.join(applied)}"


@contextlib.contextmanager
def _written(name: str, data: bytes):
    """(the case's file, an empty output folder) in a temporary folder that goes when the case ends."""
    with tempfile.TemporaryDirectory(prefix="keraffe-fuzz-") as tmp:
        path = Path(tmp, name)
        path.write_bytes(data)
        yield path, fresh_folder(Path(tmp), "out")


def _check(fmt: str, outcomes, case: str) -> None:
    bad = record(fmt, outcomes, case)
    assert not bad, f"{case}:\n{describe(bad)}"


# ------------------------------------------------------------------ Caffe text


@fuzz(110)
@given(st.data())
def test_prototxt_readers(data):
    from keraffe.caffe.net import load_net
    from keraffe.caffe.prototxt import read_prototxt

    _, text, case = _case(data, "prototxt", PROTOTXT)
    with _written("net.prototxt", text) as (net, out):
        _check("prototxt", [
            run_api("read", lambda: read_prototxt(net), watch_memory=len(text)),
            run_api("shapes", lambda: load_net(net)),
            run_cli("inspect", ["inspect", net, "--json"]),
            run_cli("upgrade", ["upgrade", net, "-o", out / "up.prototxt"], out=out),
        ], case)


@fuzz(12)
@given(st.data())
def test_prototxt_to_keras(data):
    _, text, case = _case(data, "prototxt", PROTOTXT_MEANING, most=1)
    with _written("net.prototxt", text) as (net, out):
        _check("prototxt", [run_cli("caffe2keras", ["caffe2keras", net, "-o", out / "m.keras"], out=out)], case)


# ------------------------------------------------------------------ Caffe weights


def _weights_outcomes(prototxt: Path, weights: Path, out: Path, size: int):
    from keraffe.caffe.caffemodel import read_weights
    from keraffe.caffe.net import load_net

    return [
        run_api("read", lambda: read_weights(weights), watch_memory=size),
        run_api("shapes", lambda: load_net(prototxt, weights)),
        run_cli("inspect", ["inspect", prototxt, "--weights", weights, "--json"]),
        run_cli("upgrade", ["upgrade", prototxt, "-o", out / "n.prototxt", "--weights", weights,
                            "--weights-out", out / "w.caffemodel"], out=out),
    ]


def _weights_case(data, fmt: str, mutations, name: str) -> None:
    (_, prototxt), blob, case = _case(data, fmt, mutations)
    with _written(name, blob) as (weights, out):
        _check(fmt, _weights_outcomes(zoo_path(prototxt), weights, out, len(blob)), case)


@fuzz(70)
@given(st.data())
def test_caffemodel_readers(data):
    _weights_case(data, "caffemodel", CAFFEMODEL, "w.caffemodel")


@fuzz(5)
@given(st.data())
def test_caffemodel_to_keras_and_prune(data):
    (_, prototxt), blob, case = _case(data, "caffemodel", CAFFEMODEL_MEANING, most=1)
    net = zoo_path(prototxt)
    with _written("w.caffemodel", blob) as (weights, out):
        _check("caffemodel", [
            run_cli("caffe2keras", ["caffe2keras", net, "--weights", weights, "-o", out / "m.keras"], out=out),
            run_cli("prune", ["prune", net, "--weights", weights, "-o", out / "small.prototxt", "--ratio", "0.5"],
                    out=out, limit=120),
        ], case)


@fuzz(20)
@given(st.data())
def test_caffemodel_h5_readers(data):
    _weights_case(data, "caffemodel_h5", HDF5_CAFFE, "w.caffemodel.h5")


@fuzz(40)
@given(st.data())
def test_binaryproto_reader(data):
    from keraffe.caffe.binaryproto import read_mean

    _, blob, case = _case(data, "binaryproto", BINARYPROTO)
    with _written("mean.binaryproto", blob) as (mean, _):
        _check("binaryproto", [run_api("read", lambda: read_mean(mean), watch_memory=len(blob))], case)


# ------------------------------------------------------------------ Keras files


def _keras_outcomes(model: Path, out: Path):
    from keraffe.keras_io import load_keras_model

    return [
        run_api("read", lambda: load_keras_model(model), out=out, limit=60),
        run_cli("inspect", ["inspect", model, "--json"], out=out),
        run_cli("keras2caffe", ["keras2caffe", model, "-o", out / "n.prototxt"], out=out),
        run_cli("prune", ["prune", model, "-o", out / "small.keras", "--ratio", "0.5"], out=out, limit=120),
    ]


@fuzz(10)
@given(st.data())
def test_keras_archive(data):
    _, blob, case = _case(data, "keras", KERAS_ZIP)
    with _written("model.keras", blob) as (model, out):
        _check("keras", _keras_outcomes(model, out), case)


@fuzz(10)
@given(st.data())
def test_keras_h5(data):
    _, blob, case = _case(data, "keras_h5", HDF5_KERAS)
    with _written("model.h5", blob) as (model, out):
        _check("keras_h5", _keras_outcomes(model, out), case)
