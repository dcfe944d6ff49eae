"""A small CNN classifier, trained, pruned to a target sparsity, and shipped to Caffe.

Steps: load images; train a dense Conv-Conv-Dense CNN; prune a copy of it with
``keraffe.pruning`` under a PolynomialDecay schedule (the first two thirds of
the pruning epochs raise sparsity from 0 to the target, the rest fine-tune at
the target); strip the wrappers; compare dense and pruned on accuracy,
sparsity, ``.keras`` size and gzip size; export the pruned model to Caffe with
``keraffe.keras_to_caffe`` where this keraffe has it, and measure the Caffe
model's accuracy in OpenCV DNN on the same test images.

Data: ``--data FILE.npz`` (arrays ``x_train, y_train, x_test, y_test``, e.g.
Keras' own ``mnist.npz``), else ``keras.datasets`` (``--dataset mnist`` or
``fashion_mnist``) when it can be downloaded, else scikit-learn's digits, which
ship with scikit-learn (8x8 images, upsampled to 16x16), with a printed notice.
``--dataset digits`` goes straight to the digits.

Prints one table at the end and writes the same numbers to
``OUT/simple_classifier.json`` (``--out`` defaults to bench/results, where
tools/gen_readme.py reads them for the README).

    python examples/simple_classifier.py                       # MNIST, or digits offline
    python examples/simple_classifier.py --dataset digits --out out/demo --models-dir out/demo
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "fashion_mnist", "digits")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the demo trains and how; the defaults are the numbers in the README."""

    dataset: str = "mnist"
    data: Path | None = None
    epochs: int = 20
    prune_epochs: int = 20
    sparsity: float = 0.8
    batch_size: int = 32
    learning_rate: float = 1e-3
    prune_learning_rate: float = 1e-3
    filters: tuple[int, int] = (32, 64)
    seed: int = 0
    out: Path = Path("bench/results")


@dataclasses.dataclass(frozen=True)
class ImageData:
    """Images as float32 NHWC in [0, 1] and integer labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _as_images(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    x = x.astype("float32")
    return x / 255.0 if x.max() > 1.0 else x


def _from_arrays(name, x_train, y_train, x_test, y_test) -> ImageData:
    return ImageData(
        name, _as_images(x_train), np.asarray(y_train).astype("int32").ravel(),
        _as_images(x_test), np.asarray(y_test).astype("int32").ravel(),
    )


def load_digits_16x16(test_fraction: float = 0.2) -> ImageData:
    """scikit-learn's digits (1797 real scans, 8x8), upsampled 2x to 16x16, split 80/20.

    The split is fixed (stratified, ``random_state=0``) so every run and every
    backend tests on the same 360 images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.repeat(np.repeat(digits.images / 16.0, 2, axis=1), 2, axis=2)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images.astype("float32"), digits.target, test_size=test_fraction, random_state=0,
        stratify=digits.target,
    )
    return _from_arrays("digits-16x16", x_train, y_train, x_test, y_test)


def load_data(dataset: str = "mnist", data: Path | None = None) -> ImageData:
    """The images to train on: ``data`` file, else ``keras.datasets``, else digits."""
    if data is not None:
        path = Path(data)
        if not path.is_file():
            raise SystemExit(f"--data {str(data)!r}: no such file")
        with np.load(path) as arrays:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays.files)
            if missing:
                raise SystemExit(f"--data {str(data)!r}: missing arrays {sorted(missing)}")
            return _from_arrays(path.stem, *(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")))
    if dataset == "digits":
        return load_digits_16x16()
    if dataset not in DATASETS:
        raise SystemExit(f"--dataset must be one of {DATASETS}, received {dataset!r}")
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, dataset).load_data()
    except Exception as error:  # no network, proxy, corrupt cache: all mean "use the fallback"
        print(
            f"notice: keras.datasets.{dataset} could not be loaded ({type(error).__name__}: {error}); "
            "using scikit-learn's digits (8x8, upsampled to 16x16) instead."
        )
        return load_digits_16x16()
    return _from_arrays(dataset, x_train, y_train, x_test, y_test)


def build_classifier(input_shape, num_classes: int, seed: int = 0, filters=(32, 64)):
    """Conv-Pool-Conv-Pool-Dense: small enough for a CPU, and every layer exports to Caffe."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(tuple(input_shape), name="image")
    x = keras.layers.Conv2D(filters[0], 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(filters[1], 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="simple_classifier")


def _compile(model, learning_rate: float, epochs: int, data: ImageData, batch_size: int):
    """Adam with a cosine-decayed learning rate.

    The decay ends each phase at a small step size, so the reported accuracy is
    that of a settled model rather than of wherever the last large step landed;
    on 360 test images that noise is worth a point either way.
    """
    import keras

    steps = epochs * math.ceil(len(data.x_train) / batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train_dense(data: ImageData, config: DemoConfig):
    """Build and train the dense baseline."""
    model = build_classifier(data.x_train.shape[1:], data.num_classes, config.seed, config.filters)
    _compile(model, config.learning_rate, config.epochs, data, config.batch_size)
    model.fit(
        data.x_train, data.y_train, epochs=config.epochs, batch_size=config.batch_size,
        shuffle=True, verbose=0,
    )
    return model


def pruning_schedule(data: ImageData, config: DemoConfig):
    """PolynomialDecay from 0 to the target over the first two thirds of the pruning epochs.

    Re-pruning every quarter epoch gives the network time to recover between
    steps; the last third fine-tunes at the final sparsity.
    """
    from keraffe import pruning

    steps_per_epoch = math.ceil(len(data.x_train) / config.batch_size)
    end_step = max(1, steps_per_epoch * math.ceil(config.prune_epochs * 2 / 3) - 1)
    return pruning.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=config.sparsity, begin_step=0, end_step=end_step,
        frequency=max(1, steps_per_epoch // 4),
    )


def prune_and_strip(dense_model, data: ImageData, config: DemoConfig):
    """Prune a copy of the trained model, fine-tune it, and return it stripped of the wrappers."""
    from keraffe import pruning

    pruned = pruning.prune_low_magnitude(dense_model, pruning_schedule=pruning_schedule(data, config))
    _compile(pruned, config.prune_learning_rate, config.prune_epochs, data, config.batch_size)
    pruned.fit(
        data.x_train, data.y_train, epochs=config.prune_epochs, batch_size=config.batch_size,
        shuffle=True, verbose=0, callbacks=[pruning.UpdatePruningStep()],
    )
    return pruning.strip_pruning(pruned)


def accuracy(model, x, y) -> float:
    """Top-1 accuracy; works on uncompiled (stripped) models too."""
    probabilities = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


def kernel_sparsities(model) -> dict[str, float]:
    """Sparsity of every prunable kernel, by layer name."""
    from keraffe import pruning

    return {
        row.name: row.prunable_sparsity
        for row in pruning.summary(model).layers
        if row.prunable_sparsity is not None
    }


def save_and_measure(model, path: Path) -> dict:
    """Save ``model`` as a .keras file and report its sizes and sparsity from ``summary``."""
    from keraffe import pruning

    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    report = pruning.summary(path)
    kernels = {row.name: row.prunable_sparsity for row in report.layers if row.prunable_sparsity is not None}
    return {
        "sparsity": report.sparsity,
        "min_kernel_sparsity": min(kernels.values()),
        "kernel_sparsity": kernels,
        "keras_bytes": report.keras_bytes,
        "gzip_bytes": report.gzip_bytes,
    }


def _export_copy(model):
    """The model without its compile state, so sizes compare weights, not optimizer slots."""
    import keras

    export = keras.Model(model.inputs, model.outputs, name=model.name)  # same layers, never compiled
    return export


def caffe_accuracy(model, data: ImageData, directory: Path) -> dict:
    """Export to Caffe and measure accuracy in OpenCV DNN, where keraffe can export.

    ``keraffe.keras_to_caffe`` is written separately; until it exists (or if it
    refuses this model) the step reports why it was skipped.
    """
    import keraffe

    if not hasattr(keraffe, "keras_to_caffe"):
        return {"status": "skipped: keraffe.keras_to_caffe is not available in this keraffe"}
    import cv2

    directory.mkdir(parents=True, exist_ok=True)
    prototxt, caffemodel = directory / "pruned.prototxt", directory / "pruned.caffemodel"
    try:
        keraffe.keras_to_caffe(model, str(prototxt), str(caffemodel))
    except keraffe.KeraffeError as error:
        return {"status": f"skipped: keras_to_caffe refused the model: {error}"}
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    predictions = []
    for start in range(0, len(data.x_test), 256):
        batch = np.ascontiguousarray(np.transpose(data.x_test[start:start + 256], (0, 3, 1, 2)))
        net.setInput(batch)
        predictions.append(np.argmax(net.forward().reshape(len(batch), -1), axis=-1))
    return {"status": "ok", "accuracy": float(np.mean(np.concatenate(predictions) == data.y_test))}


def run_demo(config: DemoConfig, data: ImageData | None = None, models_dir: Path | None = None) -> dict:
    """Every step of the demo; returns the numbers the table and the JSON show.

    The models (dense.keras, pruned.keras, and the Caffe files) go to
    ``models_dir``, or to a temporary folder that is removed afterwards.
    """
    import keras

    data = data if data is not None else load_data(config.dataset, config.data)
    dense = train_dense(data, config)
    pruned = prune_and_strip(dense, data, config)
    with tempfile.TemporaryDirectory(prefix="keraffe-demo-") as scratch:
        directory = Path(models_dir) if models_dir is not None else Path(scratch)
        dense_numbers = save_and_measure(_export_copy(dense), directory / "dense.keras")
        pruned_numbers = save_and_measure(pruned, directory / "pruned.keras")
        caffe = caffe_accuracy(pruned, data, directory)
    return {
        "backend": keras.backend.backend(),
        "data": data.name,
        "train_images": len(data.x_train),
        "test_images": len(data.x_test),
        "target_sparsity": config.sparsity,
        "epochs": config.epochs,
        "prune_epochs": config.prune_epochs,
        "seed": config.seed,
        "dense": {"accuracy": accuracy(dense, data.x_test, data.y_test), **dense_numbers},
        "pruned": {"accuracy": accuracy(pruned, data.x_test, data.y_test), **pruned_numbers},
        "caffe": caffe,
    }


def format_table(result: dict) -> str:
    dense, pruned = result["dense"], result["pruned"]
    caffe = result["caffe"]
    caffe_cell = f"{caffe['accuracy']:.2%}" if caffe["status"] == "ok" else caffe["status"]
    rows = [
        ("", "dense", "pruned"),
        ("test accuracy", f"{dense['accuracy']:.2%}", f"{pruned['accuracy']:.2%}"),
        ("sparsity (all weights)", f"{dense['sparsity']:.2%}", f"{pruned['sparsity']:.2%}"),
        ("min kernel sparsity", f"{dense['min_kernel_sparsity']:.2%}", f"{pruned['min_kernel_sparsity']:.2%}"),
        (".keras bytes", f"{dense['keras_bytes']:,}", f"{pruned['keras_bytes']:,}"),
        ("gzip bytes", f"{dense['gzip_bytes']:,}", f"{pruned['gzip_bytes']:,}"),
        ("Caffe (OpenCV DNN) accuracy", "-", caffe_cell),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    title = (
        f"{result['data']} ({result['train_images']} train / {result['test_images']} test images), "
        f"backend {result['backend']}, target sparsity {result['target_sparsity']:.0%}"
    )
    lines = [title]
    for row in rows:
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}")
    return "\n".join(lines)


def parse_args(argv=None) -> tuple[DemoConfig, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = DemoConfig()
    parser.add_argument("--data", type=Path, help="an .npz with x_train, y_train, x_test, y_test")
    parser.add_argument("--dataset", choices=DATASETS, default=defaults.dataset,
                        help="keras.datasets to download when --data is not given (default mnist)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="dense training epochs")
    parser.add_argument("--prune-epochs", type=int, default=defaults.prune_epochs,
                        help="epochs of pruning and fine-tuning")
    parser.add_argument("--sparsity", type=float, default=defaults.sparsity, help="target sparsity, in [0, 1)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", type=Path, default=defaults.out,
                        help="directory for simple_classifier.json (default bench/results, read by tools/gen_readme.py)")
    parser.add_argument("--models-dir", type=Path,
                        help="keep the dense, pruned and Caffe models here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.sparsity < 1.0:
        parser.error(f"--sparsity must be in [0, 1), received {args.sparsity}")
    if args.epochs < 1 or args.prune_epochs < 1:
        parser.error(f"--epochs and --prune-epochs must be >= 1, received {args.epochs}, {args.prune_epochs}")
    config = DemoConfig(
        dataset=args.dataset, data=args.data, epochs=args.epochs, prune_epochs=args.prune_epochs,
        sparsity=args.sparsity, seed=args.seed, out=args.out,
    )
    return config, args.models_dir


def main(argv=None) -> int:
    config, models_dir = parse_args(argv)
    result = run_demo(config, models_dir=models_dir)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "simple_classifier.json").write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    print(f"numbers written to {config.out / 'simple_classifier.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
