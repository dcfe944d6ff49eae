"""Converted Caffe nets against the same computation in standard Keras layers, on every Keras backend.

For each backend (TensorFlow, JAX, PyTorch) a child process with that
``KERAS_BACKEND`` converts each net and times it against a reference, both
``predict``-ed on the same batch, alternated call by call after warm-up; the
result is the median of the alternated pairs' ratios (goal: at most 1.05).

* ``resnet50``: the zoo's hand-written ResNet-50-deploy.prototxt, seeded
  weights, against ``keras.applications.ResNet50`` (the same architecture,
  written by Keras' authors). Batch 8, 224x224.
* ``googlenet``: the zoo's BVLC GoogLeNet, seeded weights; the converted model
  holds keraffe's LRN and Caffe-rounded pooling. Batch 8, 224x224.
* ``pspnet``: the zoo's PSPNet-50 (ADE20K, 473x473), seeded weights; the
  converted model holds keraffe's Interp (PSPNet's pyramid pooling and final
  upsampling). Batch 1.

The GoogLeNet and PSPNet references are the converted model itself with each
of keraffe's layers replaced by the same arithmetic in standard Keras layers
(sharing every other layer and all weights): LRN as x * x, a 3-D average
pooling over the zero-padded channel window, a rescaling, a power and a product; Caffe's ceil-rounded MAX
pooling as Keras' 'same' MaxPooling2D where that places the same windows (else
padding and 'valid' pooling); Interp as two Dense layers holding the
interpolation matrices between Permutes. The bench checks the reference
computes the same outputs (relative difference under 1e-4) before timing.

    python bench/backends.py [--repeats 9] [--backends tensorflow jax torch] [--nets resnet50 googlenet pspnet]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ZOO = REPO.parent / "shared" / "zoo"
NETS = {
    "resnet50": ("resnet50/ResNet-50-deploy.prototxt", 8),
    "googlenet": ("bvlc_googlenet/deploy.prototxt", 8),
    "pspnet": ("pspnet50_ade20k/pspnet50_ADE20K_473.prototxt", 1),
}
BACKENDS = ("tensorflow", "jax", "torch")
GOAL = 1.05


# ------------------------------------------------------------------ references in standard Keras layers


def _standard_lrn(layer, shape):
    """x * (k + alpha * mean of x^2 over the channel window, zero-padded)^-beta, in standard layers."""
    import keras

    if layer.region != "across_channels":
        raise NotImplementedError("the bench writes ACROSS_CHANNELS LRN only")
    height, width, channels = shape[1:]
    n = layer.local_size
    pre = (n - 1) // 2
    x = keras.Input(shape[1:])
    squared = keras.layers.Multiply()([x, x])
    y = keras.layers.Reshape((height, width, channels, 1))(squared)
    y = keras.layers.ZeroPadding3D(((0, 0), (0, 0), (pre, n - 1 - pre)))(y)
    y = keras.layers.AveragePooling3D((1, 1, n), strides=(1, 1, 1))(y)
    y = keras.layers.Reshape((height, width, channels))(y)
    scale = keras.layers.Rescaling(layer.alpha, offset=layer.k)(y)
    factor = keras.layers.Activation(lambda s: keras.ops.power(s, -layer.beta))(scale)
    return keras.Model(x, keras.layers.Multiply()([x, factor]), name=f"{layer.name}_standard")


def _standard_pooling(layer, shape):
    import keras

    if layer.method != "max":
        raise NotImplementedError("the bench writes Caffe's MAX pooling only")
    x = keras.Input(shape[1:])
    same = [-(-size // s) for size, s in zip(shape[1:3], layer.strides)]
    if tuple(same) == layer.output_size and layer.padding == (0, 0):
        # TF's 'same' puts the extra padding at the end: Caffe's ceil rounding with pad 0.
        y = keras.layers.MaxPooling2D(layer.pool_size, layer.strides, padding="same")(x)
    else:
        spans = [(o - 1) * s + k for o, s, k in zip(layer.output_size, layer.strides, layer.pool_size)]
        ends = [max(0, span - size - p) for span, size, p in zip(spans, shape[1:3], layer.padding)]
        y = keras.layers.ZeroPadding2D(((layer.padding[0], ends[0]), (layer.padding[1], ends[1])))(x)
        y = keras.layers.MaxPooling2D(layer.pool_size, layer.strides, padding="valid")(y)
        y = keras.layers.Cropping2D(((0, y.shape[1] - layer.output_size[0]), (0, y.shape[2] - layer.output_size[1])))(y)
    return keras.Model(x, y, name=f"{layer.name}_standard")


def _standard_interp(layer, shape):
    import keras

    from keraffe.caffe.interp import interp_matrix

    x = keras.Input(shape[1:])
    crop = (-layer.pad_beg, -layer.pad_end)
    rows = interp_matrix(shape[1], layer.output_size[0], *crop)
    cols = interp_matrix(shape[2], layer.output_size[1], *crop)
    y = keras.layers.Permute((3, 2, 1))(x)  # N, C, W, H
    along_h = keras.layers.Dense(layer.output_size[0], use_bias=False)
    y = along_h(y)
    along_h.set_weights([rows.T])
    y = keras.layers.Permute((1, 3, 2))(y)  # N, C, H', W
    along_w = keras.layers.Dense(layer.output_size[1], use_bias=False)
    y = along_w(y)
    along_w.set_weights([cols.T])
    y = keras.layers.Permute((2, 3, 1))(y)  # N, H', W', C
    return keras.Model(x, y, name=f"{layer.name}_standard")


def standard_reference(converted):
    """The converted model with each keraffe layer replaced by standard layers computing the same."""
    import keras

    from keraffe.keras_layers import LRN, CaffePooling2D, Interp

    writers = {LRN: _standard_lrn, CaffePooling2D: _standard_pooling, Interp: _standard_interp}
    replaced = []

    def clone(layer):
        for cls, write in writers.items():
            if isinstance(layer, cls):
                replaced.append(type(layer).__name__)
                return write(layer, tuple(layer.input.shape))
        if type(layer).__module__.startswith("keraffe."):
            raise NotImplementedError(f"no standard-layer form for {type(layer).__name__} in this bench")
        return layer  # shared: same weights

    reference = keras.models.clone_model(converted, clone_function=clone)
    return reference, sorted(set(replaced))


# ------------------------------------------------------------------ one backend, in its own process


def measure(name: str, repeats: int) -> dict:
    import keras
    import numpy as np

    from keraffe.caffe.net import load_net
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.convert.caffe_to_keras import convert_net

    relpath, batch_size = NETS[name]
    keras.utils.set_random_seed(0)
    net = attach_seeded_weights(load_net(ZOO / relpath), seed=0)
    converted, _ = convert_net(net)
    custom = sorted({type(layer).__name__ for layer in converted.layers if type(layer).__module__.startswith("keraffe.")})
    shape = (batch_size, *converted.inputs[0].shape[1:])
    batch = np.random.default_rng(0).normal(size=shape).astype("float32")
    if name == "resnet50":
        reference, replaced, same = keras.applications.ResNet50(weights=None), [], None
    else:
        reference, replaced = standard_reference(converted)
        got, want = (np.asarray(model.predict(batch, verbose=0)) for model in (converted, reference))
        same = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
        if not same < 1e-4:
            raise SystemExit(f"{name}: the standard-layer reference differs from the converted model (rel {same:.3g})")
    for _ in range(2 if same is None else 1):  # warm-up (the check above was one): tracing, compilation,
        for model in (converted, reference):     # allocations; TensorFlow's first timed call lagged after one
            model.predict(batch, batch_size=batch_size, verbose=0)
    times = {"converted": [], "reference": []}
    for _ in range(repeats):
        for key, model in (("converted", converted), ("reference", reference)):
            start = time.perf_counter()
            model.predict(batch, batch_size=batch_size, verbose=0)
            times[key].append(time.perf_counter() - start)
    converted_s, reference_s = (float(np.median(times[k])) for k in ("converted", "reference"))
    # The ratio is the median over the alternated pairs: on a shared 2-core machine whole runs fall into a slow
    # and a fast mode (both models alike), so the median of each model's times alone can compare a slow-mode
    # median with a fast-mode one; a pair runs back to back, in the same mode.
    pairs = [c / r for c, r in zip(times["converted"], times["reference"])]
    return {"net": relpath, "batch": list(shape), "keraffe_layers": custom, "replaced_in_reference": replaced,
            "reference_rel_difference": same, "converted_s": converted_s, "reference_s": reference_s,
            "ratio": float(np.median(pairs)), "times": times}


def child(names, repeats) -> None:
    import keras

    results = {"backend": keras.backend.backend(), "nets": {}}
    for name in names:
        results["nets"][name] = measure(name, repeats)
        print(f"  {results['backend']} {name}: ratio {results['nets'][name]['ratio']:.3f}", file=sys.stderr, flush=True)
    print(json.dumps(results))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "backends.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.nets, args.repeats)
        return 0
    if not ZOO.is_dir():
        raise SystemExit(f"the model zoo is not at {ZOO}")
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    results = dict(previous.get("backends", {}))
    conditions = dict(previous.get("conditions", {}))
    for backend in args.backends:
        load_before = os.getloadavg()[0]
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO / "src"), TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run([sys.executable, __file__, "--child", "--repeats", str(args.repeats), "--nets", *args.nets],
                              capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(f"{backend} failed:\n{done.stderr[-4000:]}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        results.setdefault(backend, {}).update(measured["nets"])
        # Other work on the machine shows in the timings: the 1-minute load average around the run.
        conditions[backend] = {"repeats": args.repeats, "load_average": [load_before, os.getloadavg()[0]]}
        for name, row in measured["nets"].items():
            print(f"{backend:10s} {name:9s} converted {row['converted_s'] * 1000:7.0f} ms, reference "
                  f"{row['reference_s'] * 1000:7.0f} ms, ratio {row['ratio']:.3f} (goal <= {GOAL})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"goal": GOAL, "cpus": os.cpu_count(), "conditions": conditions,
                                    "backends": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
