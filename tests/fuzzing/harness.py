"""Run keraffe's entry points on hostile files and judge each outcome.

An entry point is a way in for a file: reading it, inferring its shapes,
``keraffe inspect``, ``keraffe upgrade``, the two converters and ``keraffe
prune`` (the commands run in this process through ``keraffe.cli.main.main``;
:mod:`test_cli_processes` runs a sample as real processes). The only good
outcomes are success and one :class:`keraffe.errors.KeraffeError`. Everything
else is a bug, recorded as one of:

* ``crash``: any other exception (MemoryError and RecursionError included),
  or a command that exits with neither 0 nor 1, or prints a traceback;
* ``hang``: still running after the entry point's time limit;
* ``leftover``: a failed command left a file in its output folder, or a
  successful one a temporary file;
* ``bloat``: reading a Caffe file allocated more than :data:`BLOAT_FACTOR`
  times its size (plus :data:`BLOAT_SLACK`), as tracemalloc counts Python and
  numpy memory.

:data:`RECORD` counts every outcome by entry point, for bench/fuzz.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import signal
import traceback
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Callable

from keraffe.errors import KeraffeError

ENTRY_POINTS = ("read", "shapes", "inspect", "upgrade", "caffe2keras", "keras2caffe", "prune", "cli-process")
GOOD = ("ok", "refused")
BLOAT_FACTOR = 8
BLOAT_SLACK = 32 << 20

#: (format, entry point, outcome) -> count, and format -> cases, over this process' run.
RECORD: Counter = Counter()
CASES: Counter = Counter()
#: Refusal messages with paths and numbers blanked -> count: how many different things were refused.
REFUSALS: Counter = Counter()
#: The first few bad outcomes, with what reproduces them, for the report.
FAILURES: list[dict] = []


class Hang(BaseException):
    """Raised by the alarm inside a call that ran past its limit (a BaseException: no except clause eats it)."""


@dataclasses.dataclass
class Outcome:
    entry: str
    kind: str
    detail: str = ""

    @property
    def good(self) -> bool:
        return self.kind in GOOD


@contextlib.contextmanager
def time_limit(seconds: float):
    def alarm(signum, frame):
        raise Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _files(folder: Path | None) -> set[Path]:
    return set(folder.rglob("*")) if folder is not None and folder.is_dir() else set()


def run_api(entry: str, call: Callable[[], object], *, out: Path | None = None, limit: float = 30,
            watch_memory: int | None = None) -> Outcome:
    """Call a Python entry point; ``watch_memory`` is the input's size when its allocations are to be judged."""
    before = _files(out)
    if watch_memory is not None:
        tracemalloc.start()
    try:
        with time_limit(limit):
            call()
        outcome = Outcome(entry, "ok")
    except KeraffeError as error:
        outcome = Outcome(entry, "refused", str(error))
    except Hang:
        outcome = Outcome(entry, "hang", f"still running after {limit:g} s")
    except Exception as error:  # noqa: BLE001 - every other exception is the bug being looked for
        outcome = Outcome(entry, "crash", f"{type(error).__name__}: {error}\n{traceback.format_exc()[-3000:]}")
    finally:
        if watch_memory is not None:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    if watch_memory is not None and outcome.good and peak > BLOAT_FACTOR * watch_memory + BLOAT_SLACK:
        outcome = Outcome(entry, "bloat", f"peak {peak:,} bytes for a file of {watch_memory:,} bytes")
    return _judge_outputs(outcome, out, before)


def run_cli(entry: str, argv: list, *, out: Path | None = None, limit: float = 60) -> Outcome:
    """Run ``keraffe ARGV`` in this process: exit 0, or 1 with one ``keraffe CMD: error:`` message."""
    from keraffe.cli.main import main

    before = _files(out)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with time_limit(limit), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main([str(a) for a in argv])
    except Hang:
        return _judge_outputs(Outcome(entry, "hang", f"still running after {limit:g} s"), out, before)
    except SystemExit as stop:
        code = stop.code
    except Exception as error:  # noqa: BLE001
        outcome = Outcome(entry, "crash", f"{type(error).__name__}: {error}\n{traceback.format_exc()[-3000:]}")
        return _judge_outputs(outcome, out, before)
    outcome = judge_exit(entry, argv[0], code, stderr.getvalue(), stdout.getvalue())
    return _judge_outputs(outcome, out, before)


def judge_exit(entry: str, command: str, code, stderr: str, stdout: str) -> Outcome:
    """The outcome of a finished command from its exit status and output."""
    if "Traceback (most recent call last)" in stderr + stdout:
        return Outcome(entry, "crash", f"a traceback (exit {code}):\n{stderr[-3000:]}")
    if code == 0:
        return Outcome(entry, "ok")
    prefix = f"keraffe {command}: error: "
    errors = [line for line in stderr.splitlines() if line.startswith(prefix)]
    if code == 1 and len(errors) == 1 and stderr.count("error:") >= 1:
        return Outcome(entry, "refused", stderr[stderr.index(prefix) + len(prefix):].strip())
    return Outcome(entry, "crash", f"exit status {code}, stderr:\n{stderr[-3000:]}")


def _judge_outputs(outcome: Outcome, out: Path | None, before: set[Path]) -> Outcome:
    if out is None:
        return outcome
    new = sorted(str(p.relative_to(out)) for p in _files(out) - before)
    if outcome.kind == "refused" and new:
        return Outcome(outcome.entry, "leftover", f"refused ({outcome.detail[:200]}) but left {new}")
    temporary = [name for name in new if name.endswith(".tmp") or Path(name).name.startswith(".")]
    if outcome.kind == "ok" and temporary:
        return Outcome(outcome.entry, "leftover", f"succeeded but left temporary files {temporary}")
    return outcome


def record(fmt: str, outcomes: list[Outcome], reproduce: str) -> list[Outcome]:
    """Count a case's outcomes; return the bad ones (each also kept, with ``reproduce``, in FAILURES)."""
    CASES[fmt] += 1
    bad = []
    for outcome in outcomes:
        RECORD[(fmt, outcome.entry, outcome.kind)] += 1
        if outcome.kind == "refused":
            REFUSALS[_gist(outcome.detail)] += 1
        if not outcome.good:
            bad.append(outcome)
            if len(FAILURES) < 50:
                FAILURES.append({"format": fmt, "entry": outcome.entry, "kind": outcome.kind,
                                 "detail": outcome.detail[:2000], "case": reproduce})
    return bad


def _gist(message: str) -> str:
    """A refusal's first line with file paths, quoted names and numbers blanked, so alike refusals count once."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    line = re.sub(r"(/[^\s:'\"]+)+", "PATH", line)
    line = re.sub(r"'[^']*'|\"[^\"]*\"", "'X'", line)
    return re.sub(r"-?\d[\d,.]*", "N", line)[:160]


def describe(bad: list[Outcome]) -> str:
    return "\n\n".join(f"[{o.entry}] {o.kind}: {o.detail}" for o in bad)


def fresh_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def quiet_keras() -> None:
    """Keras prints progress and warnings for every model it builds; none of it is about the outcome."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
