"""Fit time with pruning against without, on the same model and data, per Keras backend.

Recipe (the one tfmot on tf_keras measured at 2.07x): scikit-learn digits
upsampled to 16x16 (the demo's training split, 1437 images),
Conv2D(32)-MaxPool-Conv2D(64)-MaxPool-Dense(128)-Dense(10), Adam, batch 32,
10 epochs.  The pruned model wraps every Conv2D and Dense with
``prune_low_magnitude`` under tfmot's tutorial schedule: PolynomialDecay from
50% to 80% sparsity over the run, re-pruning every 100 steps (the default).

Timing: both models first train ``--warmup-epochs`` epochs (2) that are not
timed, because they trace and compile: the first always, and under XLA the
second too, which recompiles for full batches after the partial last batch of
the first has relaxed the traced shape.  Then each trains the 10 timed epochs,
one ``fit(epochs=1)`` call per epoch, dense and pruned alternating epoch by
epoch (and which goes first alternating too), so both see the same load on a
shared machine; the time is wall time around each ``fit`` call.  The ratio is
pruned seconds over dense seconds, summed over the timed epochs; pruning steps
(a mask recomputation every 100 steps) fall inside them in proportion.  Every
epoch time is kept in the JSON, with the median of the per-epoch ratios as a
check on the sums.

Each backend runs in its own subprocess, because ``KERAS_BACKEND`` is fixed once
Keras is imported.  Prints one line per backend and writes all results as JSON
to ``--out`` (default bench/results/pruning_overhead.json; ``ratios`` is what
tools/gen_readme.py puts in the README).

    python bench/pruning_overhead.py
    python bench/pruning_overhead.py --backends jax --jit-compile true --out out/overhead.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")
GOAL_RATIO = 1.3
TFMOT_RATIO = 2.07


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One benchmark run; the defaults are the recipe above."""

    epochs: int = 10
    warmup_epochs: int = 2
    batch_size: int = 32
    seed: int = 0
    jit_compile: str = "auto"

    @property
    def jit_compile_argument(self):
        return "auto" if self.jit_compile == "auto" else self.jit_compile == "true"


def _digits_16x16():
    """Digits as float images in [0, 1], 16x16x1, with the fixed train split of the demo."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")
    images = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)[..., None]
    x_train, _, y_train, _ = train_test_split(
        images, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    return x_train, y_train.astype("int32")


def _build_model(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(10, name="classes")(x)
    return keras.Model(inputs, outputs)


def _compiled(model, config: BenchConfig):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=config.jit_compile_argument,
    )
    return model


def _fit_seconds(model, x, y, config: BenchConfig, callbacks, epochs: int = 1) -> float:
    start = time.perf_counter()
    model.fit(
        x, y, epochs=epochs, batch_size=config.batch_size, shuffle=True, verbose=0,
        callbacks=callbacks,
    )
    return time.perf_counter() - start


def run_worker(config: BenchConfig) -> dict:
    """Time dense and pruned training in this process's backend; returns the result row."""
    import keras

    from keraffe import pruning

    x, y = _digits_16x16()
    steps_per_epoch = -(-len(x) // config.batch_size)
    schedule = pruning.PolynomialDecay(
        initial_sparsity=0.5, final_sparsity=0.8, begin_step=0,
        end_step=steps_per_epoch * (config.warmup_epochs + config.epochs),
    )
    dense = _compiled(_build_model(config.seed), config)
    pruned = _compiled(
        pruning.prune_low_magnitude(_build_model(config.seed), pruning_schedule=schedule), config
    )
    pruned_callbacks = [pruning.UpdatePruningStep()]
    _fit_seconds(dense, x, y, config, [], epochs=config.warmup_epochs)
    _fit_seconds(pruned, x, y, config, pruned_callbacks, epochs=config.warmup_epochs)

    dense_epochs, pruned_epochs = [], []
    for epoch in range(config.epochs):
        if epoch % 2 == 0:
            dense_epochs.append(_fit_seconds(dense, x, y, config, []))
            pruned_epochs.append(_fit_seconds(pruned, x, y, config, pruned_callbacks))
        else:
            pruned_epochs.append(_fit_seconds(pruned, x, y, config, pruned_callbacks))
            dense_epochs.append(_fit_seconds(dense, x, y, config, []))
    dense_seconds, pruned_seconds = sum(dense_epochs), sum(pruned_epochs)
    return {
        "backend": keras.backend.backend(),
        "jit_compile": bool(dense.jit_compile),
        "steps_per_epoch": steps_per_epoch,
        "dense_seconds": dense_seconds,
        "pruned_seconds": pruned_seconds,
        "ratio": pruned_seconds / dense_seconds,
        "median_epoch_ratio": statistics.median(
            p / d for p, d in zip(pruned_epochs, dense_epochs)
        ),
        "dense_epoch_seconds": dense_epochs,
        "pruned_epoch_seconds": pruned_epochs,
        "final_sparsity": pruning.layer_sparsities(pruned),
    }


def run_backend(backend: str, config: BenchConfig) -> dict:
    """Run the worker for one backend in a fresh interpreter and return its row."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable, __file__, "--worker",
        "--epochs", str(config.epochs), "--batch-size", str(config.batch_size),
        "--warmup-epochs", str(config.warmup_epochs), "--seed", str(config.seed),
        "--jit-compile", config.jit_compile,
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        return {"backend": backend, "error": completed.stderr.strip().splitlines()[-20:]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--epochs", type=int, default=BenchConfig.epochs)
    parser.add_argument("--batch-size", type=int, default=BenchConfig.batch_size)
    parser.add_argument("--warmup-epochs", type=int, default=BenchConfig.warmup_epochs)
    parser.add_argument("--seed", type=int, default=BenchConfig.seed)
    parser.add_argument(
        "--jit-compile", choices=("auto", "true", "false"), default="auto",
        help="Keras' jit_compile for both fits; auto is each backend's default",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results/pruning_overhead.json"),
        help="JSON results (default bench/results/pruning_overhead.json, read by tools/gen_readme.py)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.warmup_epochs < 1:
        parser.error(
            f"--epochs and --warmup-epochs must be at least 1, received {args.epochs} and "
            f"{args.warmup_epochs}"
        )
    config = BenchConfig(
        epochs=args.epochs, warmup_epochs=args.warmup_epochs, batch_size=args.batch_size,
        seed=args.seed, jit_compile=args.jit_compile,
    )

    if args.worker:
        print(json.dumps(run_worker(config)))
        return 0

    rows = []
    for backend in args.backends:
        row = run_backend(backend, config)
        rows.append(row)
        if "error" in row:
            print(f"{backend:<11} failed:\n  " + "\n  ".join(row["error"]))
            continue
        verdict = "ok" if row["ratio"] <= GOAL_RATIO else f"over the {GOAL_RATIO}x goal"
        print(
            f"{backend:<11} jit_compile={row['jit_compile']!s:<5}  dense {row['dense_seconds']:.2f} s  "
            f"pruned {row['pruned_seconds']:.2f} s  ratio {row['ratio']:.2f}x "
            f"(median per epoch {row['median_epoch_ratio']:.2f}x; {verdict}; "
            f"tfmot on tf_keras: {TFMOT_RATIO}x)"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "recipe": "digits 16x16, Conv2D(32)-Pool-Conv2D(64)-Pool-Dense(128)-Dense(10), Adam, "
            f"batch {config.batch_size}, {config.epochs} timed epochs after "
            f"{config.warmup_epochs} untimed, dense and pruned alternating epoch by epoch",
            "config": dataclasses.asdict(config),
            "goal_ratio": GOAL_RATIO,
            "tfmot_ratio": TFMOT_RATIO,
            "ratios": {row["backend"]: row["ratio"] for row in rows if "error" not in row},
            "results": rows,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
