"""Conversion fidelity of keras.applications models, Keras -> Caffe (target caffe1), in two runtimes.

Each model is built with weights=None and a fixed seed, exported by keraffe,
and compared with Keras' own predict on a seeded input, blob by blob (every
Caffe blob that holds a Keras tensor), in real Caffe and in OpenCV 4.x DNN.
The largest relative error (max abs error over max |reference|) over all
compared tensors is recorded. Weight files over 512 MiB (VGG16, VGG19), which
real Caffe's own reader refuses, reach real Caffe through pycaffe's weights
setter (keraffe.verify handles that).

    python bench/fidelity.py [--models ResNet50 ...] [--out bench/results/applications.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

MODELS = ("ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "VGG16", "VGG19", "MobileNet", "MobileNetV2",
          "MobileNetV3Small", "MobileNetV3Large", "DenseNet121", "InceptionV3", "InceptionResNetV2", "Xception",
          "EfficientNetB0", "EfficientNetV2B0", "NASNetMobile")


def build(name: str):
    import keras

    keras.utils.set_random_seed(0)
    kwargs = {"input_shape": (224, 224, 3)} if "MobileNetV3" in name else {}
    return getattr(keras.applications, name)(weights=None, **kwargs)


def measure(name: str) -> dict:
    return judge(build(name))


def judge(model) -> dict:
    """Export ``model`` (caffe1) and compare it at every mapped blob in real Caffe and OpenCV.

    Returns the export's size and, per runtime, the largest relative error
    (or why the runtime could not run it). bench/hub_backbones.py judges its
    models the same way.
    """
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.errors import KeraffeError
    from keraffe.verify import verify

    with tempfile.TemporaryDirectory() as tmp:
        export = keraffe.keras_to_caffe(model, Path(tmp, "net.prototxt"))
        net = load_net(export.prototxt, export.caffemodel)
        result = {"caffe_layers": len(export.net.layer), "not_one_to_one": len(export.report),
                  "composites_inlined": sum(item.note.startswith("composite layer inlined") for item in export.report)}
        for runtime in ("caffe", "opencv"):
            try:
                report = verify(model, net, per_layer=True, runtime=runtime, tensor_map=export.tensor_map)
            except KeraffeError as error:
                result[runtime] = f"failed: {str(error).splitlines()[-1][:120]}"
                continue
            worst = max(c.rel for c in report.layers)
            result[runtime] = f"{worst:.2g}" + ("" if all(c.ok for c in report.layers) else " (MISMATCH)")
            result[f"{runtime}_blobs"] = len(report.layers)
    return result


def run(names, measure_one, out: Path, order) -> None:
    """Measure each name, printing and rewriting ``out`` (kept in ``order``) after every one."""
    results = json.loads(out.read_text()) if out.exists() else {}
    for name in names:
        results[name] = measure_one(name)
        print(name, results[name], flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({k: results[k] for k in order if k in results}, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "applications.json")
    args = parser.parse_args(argv)
    run(args.models, measure, args.out, MODELS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
