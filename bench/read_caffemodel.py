"""Reading a VGG-16-sized caffemodel: keraffe's streaming reader against a bare protobuf parse.

The file: VGG-16's real layer shapes (13 convolutions, 3 inner products,
138,357,544 parameters, about 553 MB), filled with seeded random floats and
written by keraffe's ``write_caffemodel`` into a temporary folder.

The two readers:

* ``keraffe``: ``keraffe.caffe.caffemodel.read_weights(path)``, which streams
  every blob into a float32 numpy array (and parses and upgrades the small
  non-weight part of the file);
* ``protobuf``: ``caffe_pb2.NetParameter().ParseFromString(open(path, 'rb').read())``
  with keraffe's generated schema, the bare parse every protobuf-based tool
  starts with (it yields protobuf containers, not numpy arrays).

Each measurement runs in a fresh child process, so one reader's allocations
never count against the other. The child imports everything first, then notes
its resident set size (VmRSS from /proc/self/status), parses once, and reports
the parse's wall time and its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``).
The memory figure used for the goal is the **net** peak: peak RSS minus the
RSS right before the parse, i.e. what the parse itself added on top of the
interpreter and its imports; the raw peak is reported too. The result object
is kept alive until the peak is read, so the net peak includes it. Linux
carries ru_maxrss over fork and exec, so a child would inherit its parent's
peak: the parent here never holds the weights (another child writes the file),
and the child's VmHWM (the peak of its own process image) is reported beside
ru_maxrss as a cross-check.

Children import ``keraffe.caffe`` without running ``keraffe/__init__.py``
(which loads Keras and TensorFlow, about 700 MB and 10+ s unrelated to
reading weights), so raw peaks are about the readers.

The file is read once before timing so that both readers find it in the page
cache; each reader then runs ``--repeats`` times, readers alternating, and
the fastest time and the smallest net peak of each are kept (the minimum
filters out interference from other processes on a shared machine).

Goals (from the project's issue): keraffe's time under 1.5x the bare protobuf
parse, and keraffe's net peak memory under 2x the file size.

    python bench/read_caffemodel.py [--repeats 3] [--out bench/results/read_caffemodel.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIME_GOAL = 1.5
MEMORY_GOAL = 2.0
SEED = 0

#: VGG-16 (Simonyan & Zisserman, configuration D) as Caffe stores it: (name, weight shape).
#: Every layer also has a bias of shape (num_output,).
VGG16_LAYERS = (
    ("conv1_1", (64, 3, 3, 3)),
    ("conv1_2", (64, 64, 3, 3)),
    ("conv2_1", (128, 64, 3, 3)),
    ("conv2_2", (128, 128, 3, 3)),
    ("conv3_1", (256, 128, 3, 3)),
    ("conv3_2", (256, 256, 3, 3)),
    ("conv3_3", (256, 256, 3, 3)),
    ("conv4_1", (512, 256, 3, 3)),
    ("conv4_2", (512, 512, 3, 3)),
    ("conv4_3", (512, 512, 3, 3)),
    ("conv5_1", (512, 512, 3, 3)),
    ("conv5_2", (512, 512, 3, 3)),
    ("conv5_3", (512, 512, 3, 3)),
    ("fc6", (4096, 25088)),
    ("fc7", (4096, 4096)),
    ("fc8", (1000, 4096)),
)
VGG16_PARAMS = 138_357_544


def vgg16_net():
    """The VGG-16 deploy net as a NetParameter (layers with weights, plus ReLU/pooling/softmax)."""
    from keraffe.caffe.prototxt import parse_prototxt

    lines = ['name: "VGG_ILSVRC_16_layers"',
             'layer { name: "input" type: "Input" top: "data" '
             'input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }']
    bottom = "data"
    for name, shape in VGG16_LAYERS:
        if name.startswith("conv"):
            lines.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                         f'convolution_param {{ num_output: {shape[0]} pad: 1 kernel_size: 3 }} }}')
        else:
            lines.append(f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
                         f'inner_product_param {{ num_output: {shape[0]} }} }}')
        bottom = name
        if name != "fc8":
            lines.append(f'layer {{ name: "relu_{name}" type: "ReLU" bottom: "{name}" top: "{name}" }}')
        if name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"):
            pool = "pool" + name[4]
            lines.append(f'layer {{ name: "{pool}" type: "Pooling" bottom: "{name}" top: "{pool}" '
                         'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }')
            bottom = pool
    lines.append('layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }')
    return parse_prototxt("\n".join(lines), "<vgg16>")


def write_vgg16(path: Path) -> int:
    """Write the seeded VGG-16 caffemodel; return its size in bytes."""
    import numpy as np

    from keraffe.caffe.caffemodel import write_caffemodel

    rng = np.random.default_rng(SEED)
    weights = {}
    total = 0
    for name, shape in VGG16_LAYERS:
        weight = rng.standard_normal(shape, dtype=np.float32)
        weight *= np.float32(0.01)
        bias = rng.standard_normal(shape[0], dtype=np.float32)
        weights[name] = [weight, bias]
        total += weight.size + bias.size
    assert total == VGG16_PARAMS, total
    return write_caffemodel(path, vgg16_net(), weights)


# ------------------------------------------------------------------ the child


def _status_bytes(field: str) -> int:
    """A memory figure from /proc/self/status (VmRSS: now, VmHWM: peak of this process image)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _import_keraffe_caffe_only() -> None:
    """Make ``import keraffe.caffe...`` work without running keraffe/__init__.py.

    The package's __init__ registers keraffe's Keras layers, which imports Keras
    and TensorFlow: 10+ seconds and about 700 MB that have nothing to do with
    reading a caffemodel. Both readers' children skip it alike, so the raw
    figures show the readers, not TensorFlow.
    """
    import types

    package = types.ModuleType("keraffe")
    package.__path__ = [str(Path(__file__).resolve().parents[1] / "src" / "keraffe")]
    sys.modules["keraffe"] = package


def _child(reader: str, path: str) -> None:
    import resource

    import numpy  # noqa: F401  (imported before the baseline, by both readers)

    _import_keraffe_caffe_only()

    from keraffe.caffe.caffemodel import read_weights
    from keraffe.caffe.proto import caffe_pb2

    before = _status_bytes("VmRSS")
    start = time.perf_counter()
    if reader == "keraffe":
        result = read_weights(path)
        values = sum(blob.data.size for layer in result.layers.values() for blob in layer.blobs)
    elif reader == "write":
        json.dump({"bytes": write_vgg16(Path(path)), "seconds": time.perf_counter() - start}, sys.stdout)
        return
    elif reader == "protobuf":
        result = caffe_pb2.NetParameter()
        with open(path, "rb") as handle:
            result.ParseFromString(handle.read())
        values = None
    else:
        raise SystemExit(f"unknown reader {reader!r}")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    hwm = _status_bytes("VmHWM")
    if values is None:
        values = sum(len(blob.data) for layer in result.layer for blob in layer.blobs)
    json.dump({"reader": reader, "seconds": seconds, "rss_before": before, "peak_rss": peak,
               "net_peak": peak - before, "vm_hwm": hwm, "values": values}, sys.stdout)


def _run_child(*args: str) -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, __file__, "--child", *args],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout)


def measure(reader: str, path: Path) -> dict:
    """Run one reader once in a fresh interpreter and return its report."""
    return _run_child(reader, str(path))


# ------------------------------------------------------------------ the parent


def run(repeats: int, workdir: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="keraffe-bench-", dir=workdir) as tmp:
        path = Path(tmp) / "vgg16.caffemodel"
        # Written by a child too: Linux carries a process's peak RSS (ru_maxrss) over
        # fork and exec into its children, so this parent must never hold the weights.
        written = _run_child("write", str(path))
        size, write_seconds = written["bytes"], written["seconds"]
        with open(path, "rb") as handle:  # warm the page cache for both readers
            while handle.read(1 << 24):
                pass
        runs: dict[str, list[dict]] = {"keraffe": [], "protobuf": []}
        for _ in range(repeats):
            for reader in runs:
                runs[reader].append(measure(reader, path))
    for reader, reports in runs.items():
        for report in reports:
            if report["values"] != VGG16_PARAMS:
                raise RuntimeError(f"{reader} read {report['values']} values, expected {VGG16_PARAMS}")

    def best(reader: str) -> dict:
        reports = runs[reader]
        return {
            "seconds": min(r["seconds"] for r in reports),
            "net_peak_bytes": min(r["net_peak"] for r in reports),
            "peak_rss_bytes": min(r["peak_rss"] for r in reports),
            "rss_before_bytes": min(r["rss_before"] for r in reports),
            "vm_hwm_bytes": min(r["vm_hwm"] for r in reports),
            "all_seconds": [round(r["seconds"], 4) for r in reports],
        }

    keraffe, protobuf = best("keraffe"), best("protobuf")
    time_ratio = keraffe["seconds"] / protobuf["seconds"]
    memory_ratio = keraffe["net_peak_bytes"] / size
    return {
        "benchmark": "read_caffemodel",
        "file": {"model": "VGG-16 (seeded random weights)", "parameters": VGG16_PARAMS,
                 "bytes": size, "write_seconds": round(write_seconds, 3)},
        "repeats": repeats,
        "memory_measure": "net peak: ru_maxrss after the parse minus VmRSS right before it",
        "keraffe": keraffe,
        "protobuf": protobuf,
        "protobuf_memory_ratio": protobuf["net_peak_bytes"] / size,
        "time_ratio": time_ratio,
        "memory_ratio": memory_ratio,
        "goals": {"time_ratio_below": TIME_GOAL, "memory_ratio_below": MEMORY_GOAL},
        "meets_time_goal": time_ratio < TIME_GOAL,
        "meets_memory_goal": memory_ratio < MEMORY_GOAL,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "protobuf": _protobuf_version()},
    }


def _protobuf_version() -> str:
    import google.protobuf
    from google.protobuf.internal import api_implementation

    return f"{google.protobuf.__version__} ({api_implementation.Type()})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per reader (fastest kept)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "read_caffemodel.json"),
                        help="where to write the JSON result")
    parser.add_argument("--workdir", help="folder for the temporary caffemodel (default: system temp)")
    parser.add_argument("--child", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    result = run(args.repeats, Path(args.workdir) if args.workdir else None)
    mib = 2**20
    size = result["file"]["bytes"]
    print(f"VGG-16 caffemodel: {size / mib:.1f} MiB, {VGG16_PARAMS:,} parameters")
    for reader in ("protobuf", "keraffe"):
        r = result[reader]
        print(f"  {reader:8s}  {r['seconds']:.3f} s   net peak {r['net_peak_bytes'] / mib:7.1f} MiB "
              f"({r['net_peak_bytes'] / size:.2f}x file)   raw peak {r['peak_rss_bytes'] / mib:7.1f} MiB")
    print(f"time ratio keraffe/protobuf: {result['time_ratio']:.2f} (goal < {TIME_GOAL}) "
          f"{'ok' if result['meets_time_goal'] else 'MISSED'}")
    print(f"memory ratio keraffe net peak/file: {result['memory_ratio']:.2f} (goal < {MEMORY_GOAL}) "
          f"{'ok' if result['meets_memory_goal'] else 'MISSED'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"result written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
