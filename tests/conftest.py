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
