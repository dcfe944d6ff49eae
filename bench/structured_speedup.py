"""Structured pruning's speed-up where it ships: OpenCV DNN latency of the Caffe export, before and after.

For keras.applications ResNet50 and VGG16 (weights=None, seeded), the dense
model and the model pruned by ``prune_channels(model, 0.5)`` are both exported
with the default target (caffe1) and timed in OpenCV DNN on the same seeded
224x224 input, batch 1, with a fixed thread count. Before and after are
measured side by side in one run, in alternation (``--rounds`` rounds of
``--repeats`` timed forward passes each, after warm-up), so drifting machine
load hits both alike; each latency is the median of all its passes.

Goal (from the project's issue): latency after/before at most 0.65 for both.

    python bench/structured_speedup.py [--threads 1] [--rounds 5] [--repeats 5]
                                       [--out bench/results/structured_speedup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("ResNet50", "VGG16")
RATIO = 0.5
GOAL = 0.65


def measure(name: str, directory: Path, threads: int, rounds: int, repeats: int) -> dict:
    import keras

    from keraffe.pruning.structured import model_macs, plan_channels
    from keraffe.verify.latency import alternating_latency, export_for_timing

    keras.utils.set_random_seed(0)
    dense = getattr(keras.applications, name)(weights=None)
    started = time.perf_counter()
    plan = plan_channels(dense, RATIO)
    pruned = plan.apply().model
    prune_seconds = time.perf_counter() - started
    exports = [export_for_timing(dense, directory, f"{name}_dense"),
               export_for_timing(pruned, directory, f"{name}_pruned")]
    for export in exports:
        if isinstance(export, str):
            raise SystemExit(f"{name}: {export}")
    seconds = alternating_latency(exports, rounds=rounds, repeats=repeats, threads=threads)
    dense_ms, pruned_ms = (statistics.median(s) * 1000 for s in seconds)
    return {
        "latency_ms": {"dense": dense_ms, "pruned": pruned_ms},
        "latency_ratio": pruned_ms / dense_ms,
        "all_ms": {"dense": [round(s * 1000, 3) for s in seconds[0]],
                   "pruned": [round(s * 1000, 3) for s in seconds[1]]},
        "macs": {"dense": model_macs(dense), "pruned": model_macs(pruned)},
        "parameters": {"dense": int(dense.count_params()), "pruned": int(pruned.count_params())},
        "caffemodel_bytes": {"dense": Path(exports[0][1]).stat().st_size,
                             "pruned": Path(exports[1][1]).stat().st_size},
        "prune_seconds": prune_seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads, the same for every pass")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of dense and pruned")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per model per round")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "structured_speedup.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import cv2

    results = {}
    with tempfile.TemporaryDirectory(prefix="keraffe-speedup-") as tmp:
        for name in args.models:
            results[name] = measure(name, Path(tmp), args.threads, args.rounds, args.repeats)
            r = results[name]
            print(f"{name}: dense {r['latency_ms']['dense']:.1f} ms, pruned {r['latency_ms']['pruned']:.1f} ms, "
                  f"ratio {r['latency_ratio']:.3f} (goal <= {GOAL}); MACs ratio "
                  f"{r['macs']['pruned'] / r['macs']['dense']:.3f}", flush=True)
    report = {
        "benchmark": "structured_speedup",
        "ratio": RATIO,
        "goal": GOAL,
        "ratios": {name: results[name]["latency_ratio"] for name in results},
        "meets_goal": all(results[name]["latency_ratio"] <= GOAL for name in results),
        "runtime": f"OpenCV DNN {cv2.__version__}, CPU, batch 1, 224x224",
        "threads": args.threads,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average": list(os.getloadavg())},
        "models": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("latency ratios (pruned / dense): " + ", ".join(f"{k} {v:.3f}" for k, v in report["ratios"].items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
