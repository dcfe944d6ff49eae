"""Regenerate the figures of docs/structured_pruning.md: sensitivity and accuracy against MACs.

The model is bench/vs_torch_pruning.py's digits CNN (seed 0, trained as the
bench trains it). Two pictures, both written by keraffe's own plotting
(:meth:`SensitivityResult.plot`, :meth:`SweepResult.plot`; matplotlib, the
``plot`` extra):

* ``docs/images/pruning_sensitivity.png``: test accuracy with each channel
  group pruned alone at ratios 0.1 ... 0.9, no fine-tuning;
* ``docs/images/pruning_accuracy_vs_macs.png``: the whole model pruned to
  MAC budgets from 75% down to 10%, accuracy right after pruning and after as
  many fine-tuning epochs as the bench gives, with Torch-Pruning's points from
  bench/results/vs_torch_pruning.json (mean over its seeds) beside, when that
  file exists.

The numbers behind both go to ``docs/images/pruning_figures.json``.

    python tools/gen_pruning_figures.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
BENCH_RESULT = REPO / "bench" / "results" / "vs_torch_pruning.json"


def _bench():
    spec = importlib.util.spec_from_file_location("vs_torch_pruning", REPO / "bench" / "vs_torch_pruning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["vs_torch_pruning"] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=IMAGES)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    import keras

    from keraffe.pruning.structured import macs_sweep, sensitivity

    bench = _bench()
    keras.utils.set_random_seed(0)
    x_train, y_train, x_test, y_test = bench.digits()
    model = bench.keras_model(bench.Widths())
    bench.set_keras_weights(model, bench.initial_weights(bench.Widths(), 0))
    orders = bench.batch_orders(len(x_train), args.epochs + args.fine_tune_epochs, 0)
    bench.train_keras(model, x_train, y_train, orders[:args.epochs], 32)

    def fine_tune(pruned):
        bench.train_keras(pruned, x_train, y_train, orders[args.epochs:], 32)

    args.out.mkdir(parents=True, exist_ok=True)
    study = sensitivity(model, (x_test, y_test), "accuracy", ratios=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                        plot=args.out / "pruning_sensitivity.png")
    sweep = macs_sweep(model, (x_test, y_test), budgets=(0.75, 0.5, 0.35, 0.25, 0.15, 0.1), fine_tune=fine_tune)
    others = {}
    if BENCH_RESULT.exists():
        summary = json.loads(BENCH_RESULT.read_text())["summary"]
        points = [(entry["torch_pruning"]["macs"]["mean"], entry["torch_pruning"]["accuracy"]["mean"] * 100.0)
                  for key, entry in summary.items() if key != "dense"]
        others["Torch-Pruning, fine-tuned (bench/vs_torch_pruning.py, mean of seeds)"] = points
    sweep.plot(args.out / "pruning_accuracy_vs_macs.png", others=others)
    (args.out / "pruning_figures.json").write_text(json.dumps(
        {"sensitivity": study.to_dict(), "sweep": sweep.to_dict(), "others": others}, indent=2) + "\n")
    print(f"wrote {args.out / 'pruning_sensitivity.png'} and {args.out / 'pruning_accuracy_vs_macs.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
