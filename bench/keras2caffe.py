"""Keras -> Caffe: conversion cost against its floor, and the exported net's speed in OpenCV DNN.

1. Conversion of keras.applications.VGG16 (seeded random weights, 138M
   parameters) saved as .keras:

   * ``keraffe``: a fresh process runs ``keras_to_caffe`` on the file: load it
     with Keras, convert, write the prototxt and caffemodel;
   * ``floor``: a fresh process loads the file with Keras and serialises the
     same weights as a Caffe NetParameter with bare protobuf, then writes it.

   Both are timed from process start to exit. Memory is the conversion
   process's peak RSS minus its RSS after imports, against the weights' bytes.

2. OpenCV DNN inference of keras.applications.ResNet50 exported by keraffe
   (default target caffe1) against the zoo's hand-written ResNet-50 prototxt
   with seeded weights (batch 1, 224x224, the same thread count), alternating
   timed forward passes after warm-up. Equal speed means the export adds no
   layer beyond what the model needs.

Goals (from the project's issue): inference at most 1.05x; conversion time
and memory are reported against the floor.

    python bench/keras2caffe.py [--repeats 2] [--out bench/results/keras2caffe.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ZOO_RESNET = REPO.parent / "shared" / "zoo" / "resnet50" / "ResNet-50-deploy.prototxt"
INFERENCE_GOAL = 1.05

PRELUDE = textwrap.dedent("""
    import os, sys, json, resource
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
""")

SETUP = PRELUDE + textwrap.dedent("""
    import keras
    keras.utils.set_random_seed(0)
    keras.applications.VGG16(weights=None).save(sys.argv[1])
""")

KERAFFE = PRELUDE + textwrap.dedent("""
    import keraffe
    before = rss()
    keraffe.keras_to_caffe(sys.argv[1], sys.argv[2])
    print(json.dumps({"net_peak": peak() - before}))
""")

FLOOR = PRELUDE + textwrap.dedent("""
    import importlib.util, keras
    spec = importlib.util.spec_from_file_location("caffe_pb2", sys.argv[3])
    caffe_pb2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(caffe_pb2)
    before = rss()
    model = keras.saving.load_model(sys.argv[1])
    net = caffe_pb2.NetParameter(name=model.name)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        message = net.layer.add(name=layer.name, type="Layer")
        for array in weights:
            blob = message.blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(array.ravel())
    with open(sys.argv[2], "wb") as handle:
        handle.write(net.SerializeToString())
    print(json.dumps({"net_peak": peak() - before}))
""")


def run_child(code: str, *args: str) -> tuple[float, dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return elapsed, (json.loads(lines[-1]) if lines else {})


def conversion(repeats: int, workdir: Path) -> dict:
    model_path = workdir / "vgg16.keras"
    run_child(SETUP, str(model_path))
    runs = {"keraffe": [], "floor": []}
    for _ in range(repeats):
        runs["keraffe"].append(run_child(KERAFFE, str(model_path), str(workdir / "vgg16.prototxt")))
        runs["floor"].append(run_child(FLOOR, str(model_path), str(workdir / "floor.caffemodel"),
                                       str(REPO / "src" / "keraffe" / "caffe" / "proto" / "caffe_pb2.py")))
    weight_bytes = (workdir / "vgg16.caffemodel").stat().st_size
    keraffe_s = min(t for t, _ in runs["keraffe"])
    floor_s = min(t for t, _ in runs["floor"])
    return {
        "weights_mb": weight_bytes / 1e6,
        "keraffe_s": keraffe_s,
        "floor_s": floor_s,
        "time_ratio": keraffe_s / floor_s,
        "keraffe_net_peak_mb": min(m["net_peak"] for _, m in runs["keraffe"]) / 1e6,
        "floor_net_peak_mb": min(m["net_peak"] for _, m in runs["floor"]) / 1e6,
        "memory_ratio": min(m["net_peak"] for _, m in runs["keraffe"]) / weight_bytes,
    }


def inference(repeats: int, workdir: Path) -> dict:
    import keras
    import numpy as np

    import keraffe
    from keraffe.caffe.caffemodel import write_caffemodel
    from keraffe.caffe.net import load_net
    from keraffe.caffe.prototxt import Dialect, write_prototxt
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.verify.opencv_runtime import time_opencv

    if not ZOO_RESNET.exists():
        return {"skipped": f"the zoo's ResNet-50 prototxt is not at {ZOO_RESNET}"}
    keras.utils.set_random_seed(0)
    exported = workdir / "resnet50_export.prototxt"
    export = keraffe.keras_to_caffe(keras.applications.ResNet50(weights=None), exported)
    zoo = attach_seeded_weights(load_net(ZOO_RESNET), seed=0)
    handwritten = workdir / "resnet50_zoo.prototxt"
    write_prototxt(handwritten, zoo.to_net_parameter(), Dialect.FORK)
    write_caffemodel(handwritten.with_suffix(".caffemodel"), zoo.to_net_parameter(), zoo.weight_arrays())
    image = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype("float32")
    nets = {
        "exported": (exported, export.caffemodel, {export.tensor_map.inputs[0]: image}),
        "handwritten": (handwritten, handwritten.with_suffix(".caffemodel"), {str(zoo.inputs[0]): image}),
    }
    times = {key: [] for key in nets}
    for _ in range(repeats):
        for key, (prototxt, caffemodel, inputs) in nets.items():
            times[key].extend(time_opencv(prototxt, caffemodel, inputs, repeats=5, warmup=2, threads=2))
    exported_s = float(np.median(times["exported"]))
    handwritten_s = float(np.median(times["handwritten"]))
    return {
        "exported_layers": len(export.net.layer),
        "handwritten_layers": len(zoo.layers),
        "exported_s": exported_s,
        "handwritten_s": handwritten_s,
        "inference_ratio": exported_s / handwritten_s,
        "inference_goal": INFERENCE_GOAL,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--inference-repeats", type=int, default=8)  # 2 cores: 20 timings swung 0.98-1.07
    parser.add_argument("--out", type=Path, default=HERE / "results" / "keras2caffe.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="keraffe-bench-") as tmp:
        result = {"conversion": conversion(args.repeats, Path(tmp)),
                  "inference": inference(args.inference_repeats, Path(tmp))}
    c, i = result["conversion"], result["inference"]
    print(f"VGG16 ({c['weights_mb']:.0f} MB): keraffe {c['keraffe_s']:.1f} s, floor {c['floor_s']:.1f} s, "
          f"ratio {c['time_ratio']:.2f}; memory {c['keraffe_net_peak_mb']:.0f} MB = {c['memory_ratio']:.2f}x weights")
    if "skipped" not in i:
        print(f"ResNet-50 in OpenCV DNN: exported {i['exported_s'] * 1000:.1f} ms ({i['exported_layers']} layers), "
              f"hand-written {i['handwritten_s'] * 1000:.1f} ms ({i['handwritten_layers']} layers), "
              f"ratio {i['inference_ratio']:.3f} (goal <= {INFERENCE_GOAL})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
