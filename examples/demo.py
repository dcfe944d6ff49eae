"""keraffe end to end: train in Keras, prune, ship to Caffe, prove it, and come back.

This is what ``make demo`` runs, offline, on data that ships with scikit-learn
(the 8x8 digits, upsampled to 16x16), so it needs no download and no third-party
model file:

1. train a small Conv-Conv-Dense classifier in Keras 3;
2. prune it two ways with ``keraffe.pruning``: 80% of the weights to zero
   (magnitude pruning, tfmot's API), and half of the channels removed
   (structured pruning), each fine-tuned;
3. export each model to Caffe (prototxt and caffemodel, Caffe 1.0 layers only)
   with ``keraffe.keras_to_caffe``;
4. verify each export in an independent runtime, real Caffe where it is built
   (``make pycaffe``), else OpenCV DNN, and measure the Caffe model's accuracy
   in OpenCV DNN on the test images;
5. convert the Caffe files back to Keras with ``keraffe.caffe_to_keras`` and
   verify that model against the runtime too.

It prints one table and writes the same numbers, with the files it made, to
``--out`` (``out/demo`` by default): ``demo.json``, ``*.keras``, ``*.prototxt``,
``*.caffemodel``.

    python examples/demo.py                   # digits, offline
    python examples/demo.py --dataset mnist   # MNIST where keras.datasets can download it
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simple_classifier import (  # noqa: E402  (a sibling example, importable once its folder is on the path)
    DATASETS,
    DemoConfig,
    ImageData,
    accuracy,
    load_data,
    prune_and_strip,
    save_and_measure,
    train_dense,
)


def _export_copy(model):
    """The model without its compile state, so file sizes compare weights, not optimizer slots."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def prune_structured(dense, data: ImageData, config: DemoConfig, ratio: float):
    """Remove ``ratio`` of the channels of every coupled group, then fine-tune the smaller model."""
    import keras

    from keraffe.pruning.structured import prune_channels

    small = prune_channels(dense, ratio, importance="l1")
    small.compile(optimizer=keras.optimizers.Adam(config.prune_learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    small.fit(data.x_train, data.y_train, epochs=config.prune_epochs, batch_size=config.batch_size,
              shuffle=True, verbose=0)
    return _export_copy(small)


def reference_runtime() -> str:
    """Real Caffe where keraffe's build of it is present, else OpenCV DNN."""
    from keraffe.verify.caffe_runtime import pycaffe_available

    return "caffe" if pycaffe_available() else "opencv"


def opencv_accuracy(prototxt: Path, caffemodel: Path, data: ImageData) -> float:
    """Top-1 accuracy of the Caffe files in OpenCV DNN, the images fed as Caffe wants them (NCHW)."""
    from keraffe.verify.opencv_runtime import run_opencv_batches

    probabilities = run_opencv_batches(prototxt, caffemodel, np.transpose(data.x_test, (0, 3, 1, 2)))
    return float(np.mean(np.argmax(probabilities.reshape(len(data.x_test), -1), axis=-1) == data.y_test))


def ship_and_return(name: str, model, data: ImageData, directory: Path, runtime: str) -> dict:
    """Keras -> Caffe, checked; Caffe -> Keras, checked; accuracies on the way."""
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.keras_io import save_keras_model
    from keraffe.verify import verify

    prototxt, caffemodel = directory / f"{name}.prototxt", directory / f"{name}.caffemodel"
    started = time.perf_counter()
    keraffe.keras_to_caffe(model, prototxt, caffemodel)
    export_seconds = time.perf_counter() - started
    net = load_net(prototxt, caffemodel)
    inputs = {net.inputs[0]: np.transpose(data.x_test[:64], (0, 3, 1, 2)).astype(np.float32)}
    exported = verify(model, net, inputs, runtime=runtime)

    back = keraffe.caffe_to_keras(prototxt, caffemodel)
    save_keras_model(back, directory / f"{name}_from_caffe.keras")
    returned = verify(back, net, inputs, runtime=runtime, tensor_map=back.keraffe_tensor_map)
    round_trip = float(np.max(np.abs(
        np.asarray(back.predict(data.x_test, verbose=0)) - np.asarray(model.predict(data.x_test, verbose=0)))))
    return {
        "caffe_layers": len(net.layers),
        "caffemodel_bytes": caffemodel.stat().st_size,
        "caffemodel_gzip_bytes": len(gzip.compress(caffemodel.read_bytes())),
        "export_seconds": export_seconds,
        "export_rel_error": exported.max_rel,
        "export_ok": exported.ok,
        "opencv_accuracy": opencv_accuracy(prototxt, caffemodel, data),
        "back_rel_error": returned.max_rel,
        "back_ok": returned.ok,
        "back_accuracy": accuracy(back, data.x_test, data.y_test),
        "round_trip_max_abs": round_trip,
    }


def run(config: DemoConfig, channel_ratio: float) -> dict:
    import keras

    from keraffe.pruning.structured import model_macs

    data = load_data(config.dataset, config.data)
    directory = config.out
    directory.mkdir(parents=True, exist_ok=True)
    runtime = reference_runtime()
    dense = _export_copy(train_dense(data, config))
    models = {
        "dense": dense,
        "sparse": prune_and_strip(dense, data, config),
        "channels": prune_structured(dense, data, config, channel_ratio),
    }
    rows = {}
    for name, model in models.items():
        measured = save_and_measure(model, directory / f"{name}.keras")
        rows[name] = {
            "accuracy": accuracy(model, data.x_test, data.y_test),
            "params": int(model.count_params()),
            "macs": int(model_macs(model)),
            **measured,
            **ship_and_return(name, model, data, directory, runtime),
        }
    return {
        "backend": keras.backend.backend(),
        "runtime": runtime,
        "data": data.name,
        "train_images": len(data.x_train),
        "test_images": len(data.x_test),
        "target_sparsity": config.sparsity,
        "channel_ratio": channel_ratio,
        "epochs": config.epochs,
        "prune_epochs": config.prune_epochs,
        "seed": config.seed,
        "models": rows,
    }


def format_table(result: dict) -> str:
    """One table: a column per model, a row per measurement."""
    rows = result["models"]
    names = list(rows)
    runtime = "real Caffe" if result["runtime"] == "caffe" else "OpenCV DNN"

    def check(row, key):
        return f"{'ok' if row[key + '_ok'] else 'FAIL'} ({row[key + '_rel_error']:.1e})"

    lines = [
        ("", *names),
        ("Keras test accuracy", *(f"{rows[n]['accuracy']:.2%}" for n in names)),
        ("parameters", *(f"{rows[n]['params']:,}" for n in names)),
        ("multiply-accumulates", *(f"{rows[n]['macs']:,}" for n in names)),
        ("weights that are zero", *(f"{rows[n]['sparsity']:.1%}" for n in names)),
        (".keras gzip bytes", *(f"{rows[n]['gzip_bytes']:,}" for n in names)),
        (".caffemodel bytes", *(f"{rows[n]['caffemodel_bytes']:,}" for n in names)),
        (".caffemodel gzip bytes", *(f"{rows[n]['caffemodel_gzip_bytes']:,}" for n in names)),
        (f"Keras -> Caffe vs {runtime}", *(check(rows[n], "export") for n in names)),
        ("Caffe accuracy in OpenCV DNN", *(f"{rows[n]['opencv_accuracy']:.2%}" for n in names)),
        (f"Caffe -> Keras vs {runtime}", *(check(rows[n], "back") for n in names)),
        ("round trip max |diff|", *(f"{rows[n]['round_trip_max_abs']:.1e}" for n in names)),
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    title = (f"{result['data']}: {result['train_images']} train / {result['test_images']} test images, "
             f"Keras backend {result['backend']}; sparse = {result['target_sparsity']:.0%} of weights zeroed, "
             f"channels = {result['channel_ratio']:.0%} of channels removed")
    body = ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(line))
            for line in lines]
    return "\n".join([title, *body])


def parse_args(argv=None) -> tuple[DemoConfig, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=DATASETS, default="digits",
                        help="digits (offline, the default), or mnist / fashion_mnist via keras.datasets")
    parser.add_argument("--data", type=Path, help="an .npz with x_train, y_train, x_test, y_test")
    parser.add_argument("--epochs", type=int, default=20, help="dense training epochs")
    parser.add_argument("--prune-epochs", type=int, default=20, help="fine-tuning epochs of each pruned model")
    parser.add_argument("--sparsity", type=float, default=0.8, help="magnitude pruning target sparsity")
    parser.add_argument("--channel-ratio", type=float, default=0.5, help="fraction of channels removed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the files and demo.json")
    parser.add_argument("--debug", action="store_true", help="let native libraries' start-up logs through")
    args = parser.parse_args(argv)
    config = DemoConfig(dataset=args.dataset, data=args.data, epochs=args.epochs, prune_epochs=args.prune_epochs,
                        sparsity=args.sparsity, seed=args.seed, out=args.out)
    return config, args.channel_ratio


def main(argv=None) -> int:
    # TensorFlow's C++ start-up lines ("Could not find cuda drivers", ...) are not the demo's output.
    from keraffe.cli.backend import native_stderr_silenced

    argv = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in argv:
        return demo(argv)
    with native_stderr_silenced():
        return demo(argv)


def demo(argv) -> int:
    import keras

    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    config, channel_ratio = parse_args(argv)
    keras.utils.set_random_seed(config.seed)
    result = run(config, channel_ratio)
    (config.out / "demo.json").write_text(json.dumps(result, indent=1) + "\n")
    print(format_table(result))
    print(f"files and demo.json in {config.out}")
    failed = [name for name, row in result["models"].items() if not (row["export_ok"] and row["back_ok"])]
    if failed:
        print(f"verification failed for: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
