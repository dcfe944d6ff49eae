"""Fit time with pruning against without, on the same model and data, per Keras backend: two measures.

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

That is the *steady-state* measure.  The *whole-fit* measure is what a new
user feels: one ``fit(epochs=10)`` call, compilation included, timed from the
call to its return, dense and pruned each in a fresh process (so each pays its
own tracing and compiling, and neither inherits the other's warm caches), over
``--rounds`` rounds (5) whose order alternates; the ratio is the median of the
rounds' pruned/dense ratios.  The pruned fit is tfmot's recipe as written:
``callbacks=[UpdatePruningStep()]``, schedule ending at the last step.

Both measures run with ``--threads`` (1) intra-op threads in every backend, so
that the machine's other load disturbs dense and pruned runs alike rather than
whichever happened to need more threads at the time. Beside wall time, each
fit's CPU time (the process's, all threads) is recorded: on a shared machine
it is what the wall time would be without the other load, and its ratio
checks the wall-time one (both go to the README).

Each backend runs in its own subprocess, because ``KERAS_BACKEND`` is fixed once
Keras is imported.  Prints one line per backend and writes all results as JSON
to ``--out`` (default bench/results/pruning_overhead.json; ``ratios`` and
``whole_fit_ratios`` are what tools/gen_readme.py puts in the README).

    python bench/pruning_overhead.py
    python bench/pruning_overhead.py --backends jax --jit-compile true --out out/overhead.json
    python bench/pruning_overhead.py --measure whole --rounds 5
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
    threads: int = 1

    @property
    def jit_compile_argument(self):
        return "auto" if self.jit_compile == "auto" else self.jit_compile == "true"


def _limit_threads(threads: int) -> None:
    """One intra-op thread pool size for whichever backend this process runs (set before Keras computes)."""
    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={threads}")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    import tensorflow as tf  # the data pipeline runs on TensorFlow under every backend

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


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


def _fit_times(model, x, y, config: BenchConfig, callbacks, epochs: int = 1) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all its threads) of one ``fit`` call."""
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(
        x, y, epochs=epochs, batch_size=config.batch_size, shuffle=True, verbose=0,
        callbacks=callbacks,
    )
    return time.perf_counter() - start, time.process_time() - cpu


def _pruned_model(config: BenchConfig, steps_per_epoch: int, epochs: int):
    from keraffe import pruning

    schedule = pruning.PolynomialDecay(
        initial_sparsity=0.5, final_sparsity=0.8, begin_step=0, end_step=steps_per_epoch * epochs,
    )
    return pruning.prune_low_magnitude(_build_model(config.seed), pruning_schedule=schedule)


def run_whole_fit_worker(config: BenchConfig, variant: str) -> dict:
    """One fresh process, one model, one ``fit(epochs=...)`` timed with its compilation; returns the row."""
    import keras

    from keraffe import pruning

    x, y = _digits_16x16()
    steps_per_epoch = -(-len(x) // config.batch_size)
    if variant == "pruned":
        model, callbacks = _pruned_model(config, steps_per_epoch, config.epochs), [pruning.UpdatePruningStep()]
    else:
        model, callbacks = _build_model(config.seed), []
    _compiled(model, config)
    seconds, cpu = _fit_times(model, x, y, config, callbacks, epochs=config.epochs)
    return {"backend": keras.backend.backend(), "variant": variant, "seconds": seconds, "cpu_seconds": cpu,
            "jit_compile": bool(model.jit_compile)}


def run_worker(config: BenchConfig) -> dict:
    """Time dense and pruned training in this process's backend; returns the result row."""
    import keras

    from keraffe import pruning

    x, y = _digits_16x16()
    steps_per_epoch = -(-len(x) // config.batch_size)
    dense = _compiled(_build_model(config.seed), config)
    pruned = _compiled(_pruned_model(config, steps_per_epoch, config.warmup_epochs + config.epochs), config)
    pruned_callbacks = [pruning.UpdatePruningStep()]
    _fit_times(dense, x, y, config, [], epochs=config.warmup_epochs)
    _fit_times(pruned, x, y, config, pruned_callbacks, epochs=config.warmup_epochs)

    dense_times, pruned_times = [], []
    for epoch in range(config.epochs):
        if epoch % 2 == 0:
            dense_times.append(_fit_times(dense, x, y, config, []))
            pruned_times.append(_fit_times(pruned, x, y, config, pruned_callbacks))
        else:
            pruned_times.append(_fit_times(pruned, x, y, config, pruned_callbacks))
            dense_times.append(_fit_times(dense, x, y, config, []))
    dense_epochs, pruned_epochs = [t[0] for t in dense_times], [t[0] for t in pruned_times]
    dense_seconds, pruned_seconds = sum(dense_epochs), sum(pruned_epochs)
    dense_cpu, pruned_cpu = sum(t[1] for t in dense_times), sum(t[1] for t in pruned_times)
    return {
        "backend": keras.backend.backend(),
        "jit_compile": bool(dense.jit_compile),
        "steps_per_epoch": steps_per_epoch,
        "dense_seconds": dense_seconds,
        "pruned_seconds": pruned_seconds,
        "ratio": pruned_seconds / dense_seconds,
        "dense_cpu_seconds": dense_cpu,
        "pruned_cpu_seconds": pruned_cpu,
        "cpu_ratio": pruned_cpu / dense_cpu,
        "median_epoch_ratio": statistics.median(
            p / d for p, d in zip(pruned_epochs, dense_epochs)
        ),
        "dense_epoch_seconds": dense_epochs,
        "pruned_epoch_seconds": pruned_epochs,
        "final_sparsity": pruning.layer_sparsities(pruned),
    }


def _subprocess(backend: str, config: BenchConfig, *worker: str) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable, __file__, *worker,
        "--epochs", str(config.epochs), "--batch-size", str(config.batch_size),
        "--warmup-epochs", str(config.warmup_epochs), "--seed", str(config.seed),
        "--jit-compile", config.jit_compile, "--threads", str(config.threads),
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        return {"backend": backend, "error": completed.stderr.strip().splitlines()[-20:]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_backend(backend: str, config: BenchConfig) -> dict:
    """Run the steady-state worker for one backend in a fresh interpreter and return its row."""
    return _subprocess(backend, config, "--worker")


def run_whole_fit(backend: str, config: BenchConfig, rounds: int) -> dict:
    """Whole fits, dense and pruned each in a fresh interpreter, ``rounds`` times in alternating order."""
    rows = {"dense": [], "pruned": []}
    for index in range(rounds):
        order = ("dense", "pruned") if index % 2 == 0 else ("pruned", "dense")
        for variant in order:
            row = _subprocess(backend, config, "--whole-fit-worker", variant)
            if "error" in row:
                return row
            rows[variant].append(row)
    ratios = [p["seconds"] / d["seconds"] for p, d in zip(rows["pruned"], rows["dense"])]
    cpu_ratios = [p["cpu_seconds"] / d["cpu_seconds"] for p, d in zip(rows["pruned"], rows["dense"])]
    return {"backend": backend, "dense_fit_seconds": [r["seconds"] for r in rows["dense"]],
            "pruned_fit_seconds": [r["seconds"] for r in rows["pruned"]],
            "dense_fit_cpu_seconds": [r["cpu_seconds"] for r in rows["dense"]],
            "pruned_fit_cpu_seconds": [r["cpu_seconds"] for r in rows["pruned"]],
            "round_ratios": ratios, "ratio": statistics.median(ratios),
            "cpu_round_ratios": cpu_ratios, "cpu_ratio": statistics.median(cpu_ratios)}


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
    parser.add_argument("--threads", type=int, default=BenchConfig.threads,
                        help="intra-op threads of every backend (default 1)")
    parser.add_argument("--measure", choices=("steady", "whole", "both"), default="both",
                        help="steady state (timed epochs after warm-up), whole fit (compile included), or both")
    parser.add_argument("--rounds", type=int, default=5, help="whole-fit rounds per backend (default 5)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--whole-fit-worker", choices=("dense", "pruned"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.warmup_epochs < 1:
        parser.error(
            f"--epochs and --warmup-epochs must be at least 1, received {args.epochs} and "
            f"{args.warmup_epochs}"
        )
    if args.rounds < 1 or args.threads < 1:
        parser.error(f"--rounds and --threads must be at least 1, received {args.rounds} and {args.threads}")
    config = BenchConfig(
        epochs=args.epochs, warmup_epochs=args.warmup_epochs, batch_size=args.batch_size,
        seed=args.seed, jit_compile=args.jit_compile, threads=args.threads,
    )

    if args.worker or args.whole_fit_worker:
        _limit_threads(config.threads)
        row = run_worker(config) if args.worker else run_whole_fit_worker(config, args.whole_fit_worker)
        print(json.dumps(row))
        return 0

    previous = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    steady, whole = [], []
    for backend in args.backends:
        if args.measure in ("steady", "both"):
            steady.append(_report(run_backend(backend, config), "steady state"))
        if args.measure in ("whole", "both"):
            whole.append(_report(run_whole_fit(backend, config, args.rounds), "whole fit"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = dict(previous, **{
            "recipe": "digits 16x16, Conv2D(32)-Pool-Conv2D(64)-Pool-Dense(128)-Dense(10), Adam, "
            f"batch {config.batch_size}; PolynomialDecay 50% -> 80%; steady state: {config.epochs} timed epochs "
            f"after {config.warmup_epochs} untimed, dense and pruned alternating epoch by epoch; whole fit: one "
            f"fit(epochs={config.epochs}) per fresh process, compile included, median of {args.rounds} rounds",
            "config": dataclasses.asdict(config),
            "goal_ratio": GOAL_RATIO,
            "tfmot_ratio": TFMOT_RATIO,
            "load_average": os.getloadavg()[0],
        })
        if steady:
            result["ratios"] = {row["backend"]: row["ratio"] for row in steady if "error" not in row}
            result["cpu_ratios"] = {row["backend"]: row["cpu_ratio"] for row in steady if "error" not in row}
            result["results"] = steady
        if whole:
            result["whole_fit_ratios"] = {row["backend"]: row["ratio"] for row in whole if "error" not in row}
            result["whole_fit_cpu_ratios"] = {row["backend"]: row["cpu_ratio"] for row in whole
                                              if "error" not in row}
            result["whole_fit"] = whole
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all("error" not in row for row in steady + whole) else 1


def _report(row: dict, measure: str) -> dict:
    backend = row["backend"]
    if "error" in row:
        print(f"{backend:<11} {measure} failed:\n  " + "\n  ".join(row["error"]))
        return row
    verdict = "ok" if row["ratio"] <= GOAL_RATIO else f"over the {GOAL_RATIO}x goal"
    if measure == "steady state":
        detail = (f"jit_compile={row['jit_compile']!s:<5}  dense {row['dense_seconds']:.2f} s  pruned "
                  f"{row['pruned_seconds']:.2f} s  (median per epoch {row['median_epoch_ratio']:.2f}x; CPU time "
                  f"{row['cpu_ratio']:.2f}x)")
    else:
        detail = (f"dense {statistics.median(row['dense_fit_seconds']):.2f} s  pruned "
                  f"{statistics.median(row['pruned_fit_seconds']):.2f} s  (rounds: "
                  + ", ".join(f"{r:.2f}x" for r in row["round_ratios"]) + f"; CPU time {row['cpu_ratio']:.2f}x)")
    print(f"{backend:<11} {measure:<13} {detail}  ratio {row['ratio']:.2f}x ({verdict}; tfmot on tf_keras: "
          f"{TFMOT_RATIO}x)")
    return row


if __name__ == "__main__":
    sys.exit(main())
