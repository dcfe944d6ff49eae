"""Transfer learning with structured pruning: ResNet50 on CIFAR-10, made smaller, shipped to Caffe.

Steps, each printed with its numbers:

1. ResNet50 from ``keras.applications`` with ImageNet weights (``--weights
   imagenet``, the default, when they can be downloaded; otherwise the script
   says so and continues with ``--weights none``), its top replaced by global
   pooling and a 10-way Dense layer for CIFAR-10's 32x32 images;
2. fine-tuned on CIFAR-10 (``keras.datasets.cifar10``, or ``--data FILE.npz``
   with x_train, y_train, x_test, y_test) and evaluated;
3. pruned structurally with ``keraffe.pruning.prune_channels`` (``--ratio``,
   ``--importance``), evaluated;
4. fine-tuned again and evaluated;
5. exported to Caffe (default target caffe1) and verified blob by blob in
   real Caffe (OpenCV DNN where pycaffe is not built);
6. measured before and after: parameters, MACs, .keras and .caffemodel
   sizes, OpenCV DNN latency.

The numbers go to OUT/retrain_resnet50_cifar10.json. ``--smoke`` runs every
step on a few generated images with ``--weights none`` and one epoch per
phase; the test suite runs that mode.

    python examples/retrain_resnet50_cifar10.py --epochs 5 --prune-epochs 5
    python examples/retrain_resnet50_cifar10.py --weights none --data cifar10.npz
    python examples/retrain_resnet50_cifar10.py --smoke --out out/smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What the run trains and how; defaults are for a real run on a machine with time to spare."""

    weights: str = "imagenet"
    data: Path | None = None
    epochs: int = 5
    prune_epochs: int = 5
    ratio: float = 0.5
    importance: str = "l1"
    batch_size: int = 64
    learning_rate: float = 1e-4
    train_limit: int | None = None
    smoke: bool = False
    seed: int = 0
    out: Path = Path("out/retrain_resnet50_cifar10")


@dataclasses.dataclass(frozen=True)
class Images:
    """CIFAR-10-shaped data: float32 NHWC images, preprocessed for ResNet50, and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def _preprocess(x: np.ndarray) -> np.ndarray:
    """ResNet50's own preprocessing (RGB -> BGR, ImageNet means removed), outside the model so it exports as-is."""
    import keras

    return keras.applications.resnet50.preprocess_input(np.asarray(x, dtype=np.float32))


def generated_images(seed: int, train: int = 16, test: int = 8) -> Images:
    """A few 32x32 images whose class decides their colour pattern: enough to run every step."""
    rng = np.random.default_rng(seed)

    def make(count):
        labels = rng.integers(0, 10, count)
        images = rng.uniform(0, 64, (count, 32, 32, 3))
        for i, label in enumerate(labels):
            images[i, :, :, label % 3] += 25 * label
        return _preprocess(np.clip(images, 0, 255)), labels

    x_train, y_train = make(train)
    x_test, y_test = make(test)
    return Images(x_train, y_train, x_test, y_test, f"{train}+{test} generated images")


def load_cifar10(data: Path | None) -> Images:
    """CIFAR-10 from ``data`` (.npz), else keras.datasets; a clear error where neither is available."""
    if data is not None:
        with np.load(data, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in ("x_train", "y_train", "x_test", "y_test")}
        source = str(data)
    else:
        import keras

        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
        except Exception as error:  # no network, proxy, corrupt cache: say so, plainly
            raise SystemExit(
                f"keras.datasets.cifar10 could not be loaded ({type(error).__name__}: {error}).\n"
                "Give the data as --data cifar10.npz (arrays x_train, y_train, x_test, y_test; images 32x32x3 "
                "in 0..255), or run --smoke to check the pipeline on generated images."
            ) from None
        arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        source = "keras.datasets.cifar10"
    return Images(_preprocess(arrays["x_train"]), arrays["y_train"].reshape(-1).astype(np.int64),
                  _preprocess(arrays["x_test"]), arrays["y_test"].reshape(-1).astype(np.int64), source)


def build_model(weights: str, seed: int):
    """ResNet50 with a new 10-way head, as one flat graph; returns (model, weights actually used)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3), name="image")
    used = weights
    try:
        base = keras.applications.ResNet50(include_top=False, weights=None if weights == "none" else weights,
                                           input_tensor=inputs)
    except Exception as error:  # the ImageNet weights could not be downloaded
        print(f"notice: ResNet50 ImageNet weights could not be loaded ({type(error).__name__}: {error}); "
              "continuing with --weights none (random initialisation)")
        base = keras.applications.ResNet50(include_top=False, weights=None, input_tensor=inputs)
        used = "none"
    x = keras.layers.GlobalAveragePooling2D(name="pool")(base.output)
    outputs = keras.layers.Dense(10, activation="softmax", name="cifar10")(x)
    return keras.Model(inputs, outputs, name="resnet50_cifar10"), used


def fine_tune(model, images: Images, epochs: int, config: RunConfig) -> float:
    import keras

    # No XLA: on CPU, compiling ResNet50's training step takes longer than a smoke run's training; a smoke
    # run's two batches go faster eagerly than through any graph compilation.
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss="sparse_categorical_crossentropy", jit_compile=False, run_eagerly=config.smoke)
    x, y = images.x_train, images.y_train
    if config.train_limit:
        x, y = x[: config.train_limit], y[: config.train_limit]
    started = time.perf_counter()
    if epochs > 0:
        model.fit(x, y, epochs=epochs, batch_size=config.batch_size, shuffle=True, verbose=0 if config.smoke else 2)
    return time.perf_counter() - started


def accuracy(model, images: Images) -> float:
    predicted = np.argmax(model.predict(images.x_test, batch_size=256, verbose=0), axis=-1)
    return float(np.mean(predicted == images.y_test) * 100)


def export_and_verify(model, directory: Path) -> dict:
    """Export to Caffe (caffe1) and compare every blob with Keras in real Caffe, else OpenCV DNN."""
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.verify import CAFFE_READ_LIMIT, verify
    from keraffe.verify.caffe_runtime import pycaffe_available

    export = keraffe.keras_to_caffe(model, directory / f"{model.name}.prototxt")
    size = Path(export.caffemodel).stat().st_size
    runtime = "caffe" if pycaffe_available() and size <= CAFFE_READ_LIMIT else "opencv"
    report = verify(model, load_net(export.prototxt, export.caffemodel), per_layer=True, runtime=runtime,
                    tensor_map=export.tensor_map)
    return {"prototxt": str(export.prototxt), "caffemodel": str(export.caffemodel), "runtime": runtime,
            "ok": report.ok, "max_rel": report.max_rel, "blobs_compared": len(report.layers),
            "first_divergence": report.first_divergence.caffe_tensor if report.first_divergence else None}


def run(config: RunConfig) -> dict:
    from keraffe.pruning.structured import plan_channels
    from keraffe.verify.latency import deployment_report

    config.out.mkdir(parents=True, exist_ok=True)
    images = generated_images(config.seed) if config.smoke else load_cifar10(config.data)
    print(f"data: {images.source}: {len(images.x_train)} training and {len(images.x_test)} test images")
    model, weights = build_model("none" if config.smoke else config.weights, config.seed)
    print(f"1. ResNet50 (weights: {weights}) with a CIFAR-10 head: {model.count_params():,} parameters")

    seconds = fine_tune(model, images, config.epochs, config)
    dense_accuracy = accuracy(model, images)
    print(f"2. fine-tuned {config.epochs} epoch(s) in {seconds:.0f} s: test accuracy {dense_accuracy:.2f}%")

    sample = (images.x_train[:256], images.y_train[:256])
    plan = plan_channels(model, config.ratio, importance=config.importance, data=sample)
    result = plan.apply()
    pruned = result.model
    pruned_accuracy = accuracy(pruned, images)
    print(f"3. pruned at ratio {config.ratio} ({config.importance}): {plan.summary().splitlines()[0]}; "
          f"test accuracy {pruned_accuracy:.2f}%")

    seconds = fine_tune(pruned, images, config.prune_epochs, config)
    tuned_accuracy = accuracy(pruned, images)
    print(f"4. fine-tuned again {config.prune_epochs} epoch(s) in {seconds:.0f} s: test accuracy {tuned_accuracy:.2f}%")

    verified = export_and_verify(pruned, config.out)
    print(f"5. exported to {verified['prototxt']}; verified in {verified['runtime']}: "
          f"{verified['blobs_compared']} blobs, largest relative error {verified['max_rel']:.2e} "
          f"({'ok' if verified['ok'] else 'FAILED'})")

    report = deployment_report(model, pruned, threads=1, rounds=1 if config.smoke else 5,
                               repeats=2 if config.smoke else 10)
    print("6. before and after:")
    print(report.render(), end="")

    results = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()},
        "weights": weights, "data": images.source,
        "accuracy": {"dense": dense_accuracy, "pruned": pruned_accuracy, "pruned_fine_tuned": tuned_accuracy},
        "kept_channels": plan.kept, "verify": verified, "report": report.to_dict(),
        "unfolded_constants": [dataclasses.asdict(u) for u in result.fold.unfolded],
    }
    path = config.out / "retrain_resnet50_cifar10.json"
    path.write_text(json.dumps(results, indent=1, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))
    print(f"wrote {path}")
    if not verified["ok"]:
        raise SystemExit("the Caffe export does not match the pruned Keras model")
    return results


def parse_args(argv=None) -> RunConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", choices=["imagenet", "none"], default="imagenet")
    parser.add_argument("--data", type=Path, help="CIFAR-10 as .npz (x_train, y_train, x_test, y_test)")
    parser.add_argument("--epochs", type=int, default=RunConfig.epochs, help="fine-tuning epochs before pruning")
    parser.add_argument("--prune-epochs", type=int, default=RunConfig.prune_epochs,
                        help="fine-tuning epochs after pruning")
    parser.add_argument("--ratio", type=float, default=RunConfig.ratio)
    parser.add_argument("--importance", choices=["l1", "l2", "bn_gamma", "taylor"], default=RunConfig.importance)
    parser.add_argument("--batch-size", type=int, default=RunConfig.batch_size)
    parser.add_argument("--learning-rate", type=float, default=RunConfig.learning_rate)
    parser.add_argument("--train-limit", type=int, help="train on the first N training images only")
    parser.add_argument("--smoke", action="store_true", help="every step on a few generated images, 1 epoch each")
    parser.add_argument("--seed", type=int, default=RunConfig.seed)
    parser.add_argument("--out", type=Path, default=RunConfig.out)
    args = parser.parse_args(argv)
    config = RunConfig(args.weights, args.data, args.epochs, args.prune_epochs, args.ratio, args.importance,
                       args.batch_size, args.learning_rate, args.train_limit, args.smoke, args.seed, args.out)
    if config.smoke:
        config = dataclasses.replace(config, weights="none", epochs=1, prune_epochs=1, batch_size=8)
    return config


if __name__ == "__main__":
    run(parse_args())
    sys.exit(0)
