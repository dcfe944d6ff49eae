"""Hands the run's counts to bench/fuzz.py: with KERAFFE_FUZZ_STATS set, they are written there as JSON at the end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .harness import CASES, FAILURES, RECORD, REFUSALS


@pytest.fixture(scope="session", autouse=True)
def fuzz_statistics():
    yield
    target = os.environ.get("KERAFFE_FUZZ_STATS")
    if not target:
        return
    outcomes: dict[str, dict[str, dict[str, int]]] = {}
    for (fmt, entry, kind), count in sorted(RECORD.items()):
        outcomes.setdefault(fmt, {}).setdefault(entry, {})[kind] = count
    Path(target).write_text(json.dumps({"cases": dict(CASES), "outcomes": outcomes, "failures": FAILURES,
                                        "refusals": dict(REFUSALS.most_common())}, indent=1))
