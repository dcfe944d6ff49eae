"""One rule for making a name unique, shared by every writer of layer and blob names.

Caffe nets and Keras models both need names that no other layer or blob
has; keraffe's writers (Keras -> Caffe, Caffe -> Keras, the Caffe rewrite
passes, the pruning rebuild) each keep their own set of names in use and ask
for the first free ``wanted_<n>``.
"""

from __future__ import annotations

from collections.abc import Container


def unused_name(wanted: str, taken: Container[str], first_suffix: int = 1) -> str:
    """``wanted`` if ``taken`` lacks it, else ``wanted_<n>`` for the first free n from ``first_suffix``."""
    name, suffix = wanted, first_suffix
    while name in taken:
        name, suffix = f"{wanted}_{suffix}", suffix + 1
    return name
