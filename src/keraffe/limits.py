"""How much memory a file from a stranger may make keraffe allocate, decided before anything is allocated.

Model files come from old repositories and model hubs. A few bytes can declare
a 100000 x 100000 input, ``num_output: 2147483647`` or a zip member that
inflates to terabytes; left alone, each becomes a MemoryError, a machine that
swaps for minutes, or the kernel's OOM killer. So every reader compares what a
file declares with two bounds before it allocates:

* **the element cap**: no declared tensor (a Caffe blob, layer top or input, a
  Keras variable, a stored dataset) may hold more than ``max_elements`` values,
  nor may a net's or model's weights in total. The default,
  :data:`DEFAULT_MAX_ELEMENTS` (2**28, 1 GiB of float32), is over twice VGG-16's
  138 million weights and over its largest activation at 1024 x 2048; users
  with bigger models raise it with ``--max-elements`` or ``max_elements=``.
* **the file's own size**: weights a net declares must fit the weights file
  given for it (at :data:`MIN_STORED_BYTES` a value), and compressed data may
  expand at most :data:`MAX_EXPANSION` times (plus :data:`EXPANSION_SLACK`),
  so that no read allocates more than a small multiple of what it reads.

Text formats nest at most :data:`MAX_NESTING` levels. :func:`element_cap`
sets the cap for a block of work; readers ask :func:`max_elements`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from typing import Iterable, Iterator, Sequence

from keraffe.errors import KeraffeError, LimitError

#: The default cap on the values in one declared tensor, and in a net's weights in total.
DEFAULT_MAX_ELEMENTS = 2**28
#: The fewest bytes one stored weight value takes (Caffe's float16 raw_data).
MIN_STORED_BYTES = 2
#: Compressed data may expand this many times its stored size ...
MAX_EXPANSION = 32
#: ... plus this many bytes (small members such as a JSON config compress well).
EXPANSION_SLACK = 1 << 20
#: The deepest nesting of braces (prototxt) or brackets (JSON config) keraffe parses.
MAX_NESTING = 64

_cap: contextvars.ContextVar[int | None] = contextvars.ContextVar("keraffe_max_elements", default=None)


def max_elements() -> int:
    """The element cap in force: the innermost :func:`element_cap`, else the default."""
    value = _cap.get()
    return DEFAULT_MAX_ELEMENTS if value is None else value


@contextlib.contextmanager
def element_cap(value: int | None) -> Iterator[int]:
    """Use ``value`` as the element cap inside the block (None keeps the cap in force)."""
    if value is None:
        yield max_elements()
        return
    value = int(value)
    if value <= 0:
        raise LimitError(f"max_elements must be a positive number of values, received {value}")
    token = _cap.set(value)
    try:
        yield value
    finally:
        _cap.reset(token)


def count(shape: Iterable[int]) -> int:
    """The number of values in ``shape``, as an exact Python integer (numpy's product would wrap)."""
    total = 1
    for dim in shape:
        total *= int(dim)
    return total


def _raise_hint() -> str:
    return "raise the cap with --max-elements N (or max_elements=N) if the file is trusted and memory allows"


def check_elements(what: str, shape: Iterable[int]) -> int:
    """The element count of ``shape``; LimitError naming ``what`` if it is over the cap."""
    shape = tuple(int(d) for d in shape)
    values = count(shape)
    cap = max_elements()
    if values > cap:
        raise LimitError(
            f"{what} declares shape {shape}: {values:,} values, over keraffe's cap of {cap:,} per tensor; "
            + _raise_hint()
        )
    return values


def check_total(what: str, values: int) -> None:
    """LimitError if ``values`` (a total over several tensors) is over the cap."""
    cap = max_elements()
    if values > cap:
        raise LimitError(f"{what} declares {values:,} values in total, over keraffe's cap of {cap:,}; " + _raise_hint())


def expansion_allowed(stored_bytes: int) -> int:
    """The most bytes ``stored_bytes`` of compressed data may expand to."""
    return max(0, int(stored_bytes)) * MAX_EXPANSION + EXPANSION_SLACK


def check_expansion(what: str, stored_bytes: int, expanded_bytes: int) -> None:
    """LimitError if data stored in ``stored_bytes`` declares more than it may expand to."""
    if expanded_bytes > expansion_allowed(stored_bytes):
        raise LimitError(
            f"{what} would expand from {stored_bytes:,} stored bytes to {expanded_bytes:,}, more than "
            f"{MAX_EXPANSION}x; keraffe refuses it unread (a compression bomb, or a corrupt size field)"
        )


def check_declared(source: str, tensors: Sequence[tuple[str, Sequence[int], int]], stored_bytes: int | None) -> None:
    """Tensors a file declares, as (name, shape, bytes per value), checked before any is allocated.

    Each must be under the cap, all together too, and, where ``stored_bytes``
    is known (the size of the weights the file stores), they must fit in it:
    a model's weights cannot come from a file smaller than they are.
    """
    total_values = total_bytes = 0
    largest = None
    for name, shape, itemsize in tensors:
        values = check_elements(f"{source}: '{name}'", shape)
        total_values += values
        total_bytes += values * itemsize
        if largest is None or values > largest[2]:
            largest = (name, tuple(shape), values)
    check_total(f"{source}: the weights", total_values)
    if stored_bytes is not None and largest is not None and total_bytes > stored_bytes + EXPANSION_SLACK:
        raise LimitError(
            f"{source}: the model declares weights of {total_bytes:,} bytes (the largest, '{largest[0]}', of shape "
            f"{largest[1]}), but its weights file holds {stored_bytes:,} bytes; they cannot come from it"
        )


def nesting_overflow(text: str, tokens: re.Pattern, opening: str) -> int | None:
    """Offset of the first opening token nested more than MAX_NESTING deep in ``text``, or None.

    ``tokens`` matches the opening and closing tokens and whatever may hide
    them (strings, comments), which count for nothing.
    """
    depth = 0
    for match in tokens.finditer(text):
        token = match.group()
        if len(token) != 1:
            continue
        if token in opening:
            depth += 1
            if depth > MAX_NESTING:
                return match.start()
        else:
            depth -= 1
    return None


def read_numpy(path, what: str):
    """An .npy file's array, or an .npz file's arrays by name, each header checked before its data is read.

    numpy allocates the shape a header declares, then reads into it; a header
    of a few bytes can declare terabytes. Every array must be under the cap and
    no larger than the bytes that store it (plus EXPANSION_SLACK). Object
    arrays (pickles) are refused, as numpy's ``allow_pickle=False`` does.
    """
    import zipfile

    import numpy as np

    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as handle:
                _check_npy_header(handle, what, os.fstat(handle.fileno()).st_size)
                handle.seek(0)
                return np.lib.format.read_array(handle, allow_pickle=False)
        arrays = {}
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                check_expansion(f"{what}: member {info.filename}", info.compress_size, info.file_size)
                with archive.open(info) as member:
                    _check_npy_header(member, f"{what}: array '{name}'", info.file_size)
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
        return arrays
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise KeraffeError(f"{what}: not a readable .npy or .npz file ({error})") from None


def _check_npy_header(stream, what: str, stored_bytes: int) -> None:
    import numpy as np

    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]}, which keraffe does not read")
    if dtype.hasobject:
        raise ValueError("the array holds Python objects (a pickle), which keraffe never loads")
    values = check_elements(what, shape)
    if values * dtype.itemsize > stored_bytes + EXPANSION_SLACK:
        raise LimitError(f"{what} declares shape {tuple(shape)}, {values * dtype.itemsize:,} bytes, but its file "
                         f"holds {stored_bytes:,}")
