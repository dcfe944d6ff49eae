"""Writing output files so that a failure never leaves half a file behind.

Every file keraffe writes goes through :func:`atomic_output`: the data goes to a
temporary file beside the target, which replaces the target in one rename only
once everything is written. A crash, an exception or a full disk leaves the old
file (or no file) in place, never a truncated one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from keraffe.errors import KeraffeError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that becomes ``path`` when the block ends cleanly."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise KeraffeError(f"cannot write {target}: folder {directory} does not exist")
    if target.is_dir():
        raise KeraffeError(f"cannot write {target}: it is a folder")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise KeraffeError(f"cannot write in {directory}: {error.strerror}") from None
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise KeraffeError(f"cannot write {target}: {error.strerror or error}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def refuse_overwriting_input(output: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """Stop before an output path would replace one of the command's inputs."""
    out = Path(output).resolve()
    for item in inputs:
        if item is not None and Path(item).exists() and Path(item).resolve() == out:
            raise KeraffeError(
                f"output {output} is also an input; keraffe never overwrites its inputs, "
                "choose another output path"
            )
