"""Shared test plumbing: the model zoo beside the repository, and real Caffe.

Zoo files live in ../shared/zoo (never in this repository); tests that need
them skip with a clear reason where that folder is absent.

Tests marked ``pycaffe`` compare against real Caffe. Where it is not built
they skip with a reason, except under KERAFFE_REQUIRE_PYCAFFE=1 (set by
`make test`, and so by CI), where a missing Caffe is a failure: the real-Caffe
tier must never pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO.parent / "shared" / "zoo"


def zoo_file(*parts: str) -> Path:
    """A file in ../shared/zoo, or a skip when the zoo is not beside the repository."""
    path = ZOO.joinpath(*parts)
    if not ZOO.is_dir():
        pytest.skip(f"model zoo not found at {ZOO} (it lives beside the repository, in ../shared/zoo)")
    if not path.exists():
        pytest.fail(f"zoo file missing: {path}")
    return path


def zoo_available() -> bool:
    return ZOO.is_dir()


#: Every conversion runs on every Keras backend: ``make test`` runs the suite on TensorFlow, then the
#: tests marked ``backends`` again under JAX and PyTorch. Every test of the conversions in both
#: directions is marked here, by folder, so a new module is covered without anyone remembering to;
#: the long model-level modules (the zoo, the keras.applications exports) mark a slice themselves.
ON_EVERY_BACKEND = REPO / "tests" / "convert"
SLICED = {"test_zoo.py", "test_applications.py"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.path)).resolve()
        if ON_EVERY_BACKEND in path.parents and path.name not in SLICED:
            item.add_marker(pytest.mark.backends)


def pytest_runtest_setup(item):
    if item.get_closest_marker("pycaffe") is None:
        return
    from keraffe.verify.caffe_runtime import pycaffe_available

    if pycaffe_available():
        return
    reason = "real Caffe (pycaffe) is not built: run `make pycaffe` (tools/build_pycaffe.sh)"
    if os.environ.get("KERAFFE_REQUIRE_PYCAFFE") == "1":
        pytest.fail(reason + "; KERAFFE_REQUIRE_PYCAFFE=1 forbids skipping the real-Caffe tier")
    pytest.skip(reason)


@pytest.fixture
def zoo():
    if not ZOO.is_dir():
        pytest.skip(f"model zoo not found at {ZOO} (it lives beside the repository, in ../shared/zoo)")
    return ZOO
