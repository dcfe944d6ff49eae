"""docs/keras_to_caffe.md runs as written: its Python blocks, in order, in one namespace, judged by real Caffe.

The blocks convert a subclassed layer by inlining and a new layer through
keraffe.register_keras_layer, and verify both exports with keraffe.verify
(real Caffe, every blob), so the guide cannot drift from the code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "keras_to_caffe.md"

pytestmark = pytest.mark.pycaffe


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_guide_runs_and_its_exports_match_real_caffe(tmp_path, monkeypatch):
    from keraffe.convert.keras_to_caffe import HANDLERS

    blocks = python_blocks(DOC.read_text())
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_keras_to_caffe"}
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the guide's own code
    finally:
        HANDLERS._handlers.pop("docs_example>ShiftedSoftplus", None)  # the guide registers it once per run
        HANDLERS._families.pop("docs_example>ShiftedSoftplus", None)
    assert (tmp_path / "residual.prototxt").is_file() and (tmp_path / "softplus.caffemodel").is_file()
    assert any("softplus minus log 2" in item.note for item in namespace["export"].report)
