"""Shared helpers for the pruning tests.

Every test module here is marked ``backends``: ``make test`` runs the suite under
TensorFlow and repeats those tests with KERAS_BACKEND=jax and torch.  Models and
epochs stay small so the three runs take a few minutes together.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import keras
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(1234)


def load_script(relative_path: str, module_name: str):
    """Import a script from examples/ or bench/ (they are not packages) so tests reuse its functions."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO / relative_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def demo():
    return load_script("examples/simple_classifier.py", "keraffe_demo_simple_classifier")
