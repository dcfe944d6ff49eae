"""Fuzzing keraffe with hostile files: the run whose figures the README states.

Runs the fuzz suite (tests/fuzzing: structure-aware mutations of every zoo
file through every entry point, hypothesis with a fixed seed) in a child
pytest process and records what happened in ``bench/results/fuzz.json``:

* the profile (``long``: every zoo file, each test's examples times
  ``--scale``; ``bounded``: the slice ``make test`` runs), the seed and scale;
* cases per file format, runs and outcomes per entry point;
* crashes: every outcome that is neither success nor one KeraffeError
  (a crash, a hang, a file left behind, a read allocating over 8x its file),
  with what reproduces the first ones; the goal is 0;
* refusals: how many runs ended in one KeraffeError, and how many different
  messages those were (paths, names and numbers blanked);
* the wall time, the machine and the commit.

    python bench/fuzz.py [--profile long|bounded] [--seed 20240612] [--scale 10] [--out FILE]

``make fuzz`` runs it with the defaults. Exit status 1 when a crash was found.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAD = ("crash", "hang", "leftover", "bloat")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["long", "bounded"], default="long")
    parser.add_argument("--seed", type=int, default=20240612)
    parser.add_argument("--scale", type=int, default=None, help="examples per test times this (long default 10)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default bench/results/fuzz.json (long) or fuzz_bounded.json (bounded)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = REPO / "bench" / "results" / ("fuzz.json" if args.profile == "long" else "fuzz_bounded.json")
    scale = args.scale if args.scale is not None else (10 if args.profile == "long" else 1)

    with tempfile.TemporaryDirectory(prefix="keraffe-fuzz-stats-") as tmp:
        stats_path = Path(tmp, "stats.json")
        env = dict(os.environ, KERAFFE_FUZZ_PROFILE=args.profile, KERAFFE_FUZZ_SEED=str(args.seed),
                   KERAFFE_FUZZ_SCALE=str(scale), KERAFFE_FUZZ_STATS=str(stats_path),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "tests/fuzzing", "-q", "-p", "no:cacheprovider",
                               "-n", "0", "-o", "addopts="], cwd=REPO, env=env)
        seconds = time.perf_counter() - start
        if not stats_path.is_file():
            print("the fuzz run recorded nothing (did pytest start?)", file=sys.stderr)
            return 1
        stats = json.loads(stats_path.read_text())

    entries: dict[str, dict[str, int]] = {}
    for per_entry in stats["outcomes"].values():
        for entry, kinds in per_entry.items():
            for kind, count in kinds.items():
                entries.setdefault(entry, {}).setdefault(kind, 0)
                entries[entry][kind] += count
    total = {kind: sum(kinds.get(kind, 0) for kinds in entries.values()) for kind in ("ok", "refused", *BAD)}
    result = {
        "benchmark": "fuzz",
        "profile": args.profile,
        "seed": args.seed,
        "scale": scale,
        "library": "hypothesis",
        "cases": sum(stats["cases"].values()),
        "cases_by_format": stats["cases"],
        "entry_points": sorted(entries),
        "runs": sum(sum(kinds.values()) for kinds in entries.values()),
        "outcomes_by_entry_point": entries,
        "outcomes_by_format": stats["outcomes"],
        "ok": total["ok"],
        "refusals": total["refused"],
        "distinct_refusals": len(stats["refusals"]),
        "crashes": sum(total[kind] for kind in BAD),
        "crashes_by_kind": {kind: total[kind] for kind in BAD},
        "failures": stats["failures"],
        "pytest_exit_status": done.returncode,
        "seconds": round(seconds, 1),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "commit": _commit(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['cases']} cases, {result['runs']} runs over {len(entries)} entry points: "
          f"{result['crashes']} crashes, {result['refusals']} refusals ({result['distinct_refusals']} distinct), "
          f"seed {args.seed}; written to {args.out}")
    return 0 if result["crashes"] == 0 and done.returncode == 0 else 1


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
