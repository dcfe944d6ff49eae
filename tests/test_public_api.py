"""keraffe's public functions (keraffe/__init__.py)."""

from __future__ import annotations

import importlib


def test_verify_stays_the_function_after_its_subpackage_is_used():
    """keraffe.verify is both a subpackage and a function; using the subpackage must not hide the function."""
    import keraffe

    importlib.import_module("keraffe.verify.caffe_runtime")
    importlib.import_module("keraffe.verify.opencv_runtime")
    assert callable(keraffe.verify) and keraffe.verify.__module__ == "keraffe"
