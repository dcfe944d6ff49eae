"""Structured pruning at ratio 0.5 on five keras.applications models, each exported to Caffe and checked.

For each model (weights=None, seeded, BatchNorm statistics randomised so that
the constants a removed channel leaves behind are really folded), the script
prunes half of every coupled channel group with ``keraffe.pruning.prune_channels``,
counts multiply-accumulates and parameters before and after, exports the pruned
model with the default target, and compares it with real Caffe (or OpenCV DNN
where Caffe is not built) at every blob. The numbers go to
``bench/results/structured_applications.json`` for the README.

    python bench/structured_applications.py [--models ResNet50 ...] [--ratio 0.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = ("ResNet50", "MobileNetV2", "VGG16", "DenseNet121", "EfficientNetB0")


def randomised_application(name: str):
    import keras

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None)
    rng = np.random.default_rng(0)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            values = [rng.uniform(0.5, 1.5, shapes[0]), rng.normal(0, 0.2, shapes[1]),
                      rng.normal(0, 0.1, shapes[2]), rng.uniform(0.5, 1.5, shapes[3])]
            layer.set_weights([v.astype(np.float32) for v in values])
    return model


def measure(name: str, ratio: float, runtime: str) -> dict:
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.pruning.structured import model_macs, prune_channels
    from keraffe.verify import verify

    model = randomised_application(name)
    pruned = prune_channels(model, ratio)
    with tempfile.TemporaryDirectory() as tmp:
        export = keraffe.keras_to_caffe(pruned, Path(tmp, "pruned.prototxt"))
        report = verify(pruned, load_net(export.prototxt, export.caffemodel), per_layer=True, runtime=runtime,
                        tensor_map=export.tensor_map)
        caffemodel_bytes = Path(export.caffemodel).stat().st_size
    macs_before, macs_after = model_macs(model), model_macs(pruned)
    return {
        "macs_before": int(macs_before),
        "macs_after": int(macs_after),
        "macs_removed": 1 - macs_after / macs_before,
        "params_before": int(model.count_params()),
        "params_after": int(pruned.count_params()),
        "caffemodel_bytes": caffemodel_bytes,
        "blobs_compared": len(report.layers),
        "max_rel_error": max(row.rel for row in report.layers),
        "matches": all(row.ok for row in report.layers),
    }


def main(argv=None) -> int:
    from keraffe.verify.caffe_runtime import pycaffe_available

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "structured_applications.json")
    args = parser.parse_args(argv)
    runtime = "caffe" if pycaffe_available() else "opencv"
    results = {}
    for name in args.models:
        results[name] = measure(name, args.ratio, runtime)
        row = results[name]
        print(f"{name}: MACs -{row['macs_removed']:.1%}, params {row['params_before']:,} -> {row['params_after']:,}, "
              f"{runtime} max rel error {row['max_rel_error']:.2g} over {row['blobs_compared']} blobs", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"ratio": args.ratio, "runtime": runtime, "models": results}, indent=1) + "\n")
    return 0 if all(row["matches"] for row in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
