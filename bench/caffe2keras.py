"""Caffe -> Keras: conversion cost against its floor, and the converted model's speed.

1. Conversion of a VGG-16-sized net (138M parameters, about 553 MB of
   weights). The net is made here: keras.applications.VGG16 with seeded
   random weights, exported by keraffe to a prototxt and caffemodel.

   * ``keraffe``: a fresh process runs ``keraffe caffe2keras`` on it in
     Python: import keraffe, read, convert, save the .keras file.
   * ``floor``: a fresh process does the least any converter must do: import
     Keras, parse the caffemodel with protobuf, build the same Keras model and
     save those weights as .keras.

   Both are timed from process start to exit (imports included, as a user
   sees them). Memory is the conversion process's peak RSS minus its RSS
   after imports, against the weights' bytes.

2. Inference of a converted ResNet-50 against keras.applications.ResNet50
   in the same process, same backend, same input (batch 8, 224x224):
   median of alternating timed predict calls after warm-up. The Caffe net is
   the zoo's hand-written ResNet-50 prototxt with seeded weights when the
   zoo is beside the repository (else keras.applications' ResNet50 exported
   by keraffe).

Goals (from the project's issue): conversion time under 1.5x the floor,
memory under 2.5x the weight bytes, inference at most 1.05x.

    python bench/caffe2keras.py [--repeats 2] [--out bench/results/caffe2keras.json]
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
TIME_GOAL, MEMORY_GOAL, INFERENCE_GOAL = 1.5, 2.5, 1.05

PRELUDE = textwrap.dedent("""
    import os, sys, time, resource
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
""")

SETUP = PRELUDE + textwrap.dedent("""
    import keras, numpy as np
    import keraffe
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None)
    keraffe.keras_to_caffe(model, sys.argv[1], sys.argv[2])
""")

KERAFFE = PRELUDE + textwrap.dedent("""
    import keraffe
    from keraffe.keras_io import save_keras_model
    before = rss()
    # What `keraffe caffe2keras` does: the net is loaded only to be converted.
    model = keraffe.caffe_to_keras(sys.argv[1], sys.argv[2])
    save_keras_model(model, sys.argv[3])
    import json
    print(json.dumps({"net_peak": peak() - before, "raw_peak": peak()}))
""")

FLOOR = PRELUDE + textwrap.dedent("""
    import importlib.util, json, keras
    # The generated schema module alone, without the rest of keraffe.
    spec = importlib.util.spec_from_file_location("caffe_pb2", sys.argv[4])
    caffe_pb2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(caffe_pb2)
    before = rss()
    message = caffe_pb2.NetParameter()
    message.ParseFromString(open(sys.argv[2], "rb").read())
    model = keras.applications.VGG16(weights=None)
    model.save(sys.argv[3])
    print(json.dumps({"net_peak": peak() - before, "raw_peak": peak()}))
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
    prototxt, caffemodel = workdir / "vgg16.prototxt", workdir / "vgg16.caffemodel"
    run_child(SETUP, str(prototxt), str(caffemodel))
    weight_bytes = caffemodel.stat().st_size
    keraffe_runs, floor_runs = [], []
    for _ in range(repeats):
        keraffe_runs.append(run_child(KERAFFE, str(prototxt), str(caffemodel), str(workdir / "converted.keras")))
        floor_runs.append(run_child(FLOOR, str(prototxt), str(caffemodel), str(workdir / "floor.keras"),
                                    str(REPO / "src" / "keraffe" / "caffe" / "proto" / "caffe_pb2.py")))
    keraffe_time = min(t for t, _ in keraffe_runs)
    floor_time = min(t for t, _ in floor_runs)
    net_peak = min(m["net_peak"] for _, m in keraffe_runs)
    floor_peak = min(m["net_peak"] for _, m in floor_runs)
    return {
        "weights_mb": weight_bytes / 1e6,
        "keraffe_s": keraffe_time,
        "floor_s": floor_time,
        "time_ratio": keraffe_time / floor_time,
        "keraffe_net_peak_mb": net_peak / 1e6,
        "memory_ratio": net_peak / weight_bytes,
        # For scale: the floor's own peak (protobuf message plus Keras' model and save) against the weights.
        "floor_net_peak_mb": floor_peak / 1e6,
        "floor_memory_ratio": floor_peak / weight_bytes,
        "time_goal": TIME_GOAL,
        "memory_goal": MEMORY_GOAL,
    }


def inference(repeats: int, workdir: Path) -> dict:
    import keras
    import numpy as np

    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.convert.caffe_to_keras import convert_net

    keras.utils.set_random_seed(0)
    reference = keras.applications.ResNet50(weights=None)
    if ZOO_RESNET.exists():
        source = "zoo ResNet-50-deploy.prototxt, seeded weights"
        net = attach_seeded_weights(load_net(ZOO_RESNET), seed=0)
    else:
        source = "keras.applications.ResNet50 exported by keraffe"
        prototxt = workdir / "resnet50.prototxt"
        keraffe.keras_to_caffe(reference, prototxt)
        net = load_net(prototxt, prototxt.with_suffix(".caffemodel"))
    converted, _ = convert_net(net)
    batch = np.random.default_rng(0).normal(size=(8, 224, 224, 3)).astype("float32")
    for model in (converted, reference):
        model.predict(batch, verbose=0)
    times = {"converted": [], "reference": []}
    for _ in range(repeats):
        for key, model in (("converted", converted), ("reference", reference)):
            start = time.perf_counter()
            model.predict(batch, batch_size=8, verbose=0)
            times[key].append(time.perf_counter() - start)
    converted_s = float(np.median(times["converted"]))
    reference_s = float(np.median(times["reference"]))
    return {
        "source": source,
        "backend": keras.backend.backend(),
        "converted_layers": len(converted.layers),
        "reference_layers": len(reference.layers),
        "converted_s": converted_s,
        "reference_s": reference_s,
        "inference_ratio": converted_s / reference_s,
        "inference_goal": INFERENCE_GOAL,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--inference-repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "caffe2keras.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="keraffe-bench-") as tmp:
        result = {"conversion": conversion(args.repeats, Path(tmp)),
                  "inference": inference(args.inference_repeats, Path(tmp))}
    c, i = result["conversion"], result["inference"]
    print(f"VGG-16 ({c['weights_mb']:.0f} MB): keraffe {c['keraffe_s']:.1f} s, floor {c['floor_s']:.1f} s, "
          f"ratio {c['time_ratio']:.2f} (goal < {TIME_GOAL})")
    print(f"  memory: {c['keraffe_net_peak_mb']:.0f} MB = {c['memory_ratio']:.2f}x the weights (goal < {MEMORY_GOAL}); "
          f"floor {c['floor_memory_ratio']:.2f}x")
    print(f"ResNet-50 inference ({i['backend']}, {i['source']}): converted {i['converted_s'] * 1000:.0f} ms, "
          f"keras.applications {i['reference_s'] * 1000:.0f} ms, ratio {i['inference_ratio']:.3f} "
          f"(goal <= {INFERENCE_GOAL})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
