"""The Python layers keraffe knows, by module and class, and how they spell their parameters.

A Python layer runs user code keraffe never reads; what it computes is known
only for the layers of the published nets keraffe converts (py-faster-rcnn's
proposals, ENet's spatial dropout, the YOLOv2 port's darknet reorg), whose
sources were read. Their parameters come in ``python_param.param_str``, which
each layer parses its own way: a Python dict literal (``eval``), or YAML
(py-faster-rcnn's ``yaml.load``, whose files write ``'feat_stride': 16``).
"""

from __future__ import annotations

import ast

from keraffe.errors import ShapeError


def python_layer_params(layer) -> dict:
    """A Python layer's ``param_str`` as a dict: a Python dict literal, its body without braces, or YAML."""
    text = layer.python_param.param_str.strip()
    if not text:
        return {}
    for candidate in (text, "{" + text + "}"):
        try:
            value = ast.literal_eval(candidate)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return value
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = None
        if isinstance(value, dict):
            return value
    raise ShapeError(f"python_param.param_str {layer.python_param.param_str!r} is neither a Python dict literal "
                     "nor a YAML mapping")
