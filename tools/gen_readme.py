"""Regenerate the tables in README.md from the code and from measured results.

Every table sits between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``
and is rewritten here, never by hand:

* ``caffe-layers`` and ``keras-layers``: the converter registries;
* ``zoo``: tests/convert/caffe_to_keras/zoo_expectations.json, the outcome of
  every zoo net as the test suite checks it;
* ``applications``: bench/results/applications.json (bench/fidelity.py);
* ``pruning``, ``structured``: the demos' JSON results;
* ``speed``: bench/results/*.json.

A table whose input file is missing says which command produces it.

    python tools/gen_readme.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS = REPO / "bench" / "results"


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _missing(path: Path, command: str) -> str:
    return f"_Not measured yet: `{command}` writes `{path.relative_to(REPO)}`._"


def caffe_layers() -> str:
    from keraffe.caffe import shapes
    from keraffe.convert.caffe_to_keras import load_handlers
    from keraffe.convert.keras_to_caffe.targets import CAFFE_1_0_TYPES, OPENCV_TYPES

    handlers = load_handlers()
    rows = ["| Caffe layer type | converts to Keras | shape rule | in Caffe 1.0 | in OpenCV 4.x | handler module |",
            "|---|---|---|---|---|---|"]
    names = sorted(set(handlers.names()) | set(shapes.known_types()))
    for name in names:
        if name.startswith("keraffe."):
            continue
        converts = name in handlers
        rows.append(
            f"| {name} | {'yes' if converts else 'no'} | {'yes' if shapes.has_rule(name) else 'no'} | "
            f"{'yes' if name in CAFFE_1_0_TYPES else ''} | {'yes' if name in OPENCV_TYPES else ''} | "
            f"{handlers.family(name) if converts else ''} |"
        )
    return "\n".join(rows)


def keras_layers() -> str:
    from keraffe.convert.keras_to_caffe import load_handlers

    handlers = load_handlers()
    families: dict[str, list[str]] = {}
    for name in handlers.names():
        families.setdefault(handlers.family(name), []).append(name)
    rows = ["| handler module | Keras layers (and keras.ops calls) converted to Caffe |", "|---|---|"]
    for family, names in sorted(families.items()):
        rows.append(f"| {family} | {', '.join(names)} |")
    return "\n".join(rows)


def zoo() -> str:
    path = REPO / "tests" / "convert" / "caffe_to_keras" / "zoo_expectations.json"
    data = _load(path)
    if data is None:
        return _missing(path, "python tests/convert/caffe_to_keras/test_zoo.py")
    counts = Counter(v["status"] for v in data.values())
    rows = [f"{len(data)} zoo prototxts; outcome as checked by `tests/convert/caffe_to_keras/test_zoo.py`:", "",
            "| outcome | nets |", "|---|---|"]
    for status, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        rows.append(f"| {status} | {n} |")
    rows += ["", "| net | outcome | reason |", "|---|---|---|"]
    for net, value in sorted(data.items()):
        if not value["status"].startswith("verified"):
            rows.append(f"| {net} | {value['status']} | {value['reason'].replace('|', '/')} |")
    return "\n".join(rows)


def applications() -> str:
    path = RESULTS / "applications.json"
    data = _load(path)
    if data is None:
        return _missing(path, "python bench/fidelity.py")
    rows = ["| keras.applications model | Caffe layers (caffe1) | max rel. error, real Caffe | max rel. error, OpenCV |",
            "|---|---|---|---|"]
    for name, value in data.items():
        rows.append(f"| {name} | {value['caffe_layers']} | {value.get('caffe', 'n/a')} | {value.get('opencv', 'n/a')} |")
    return "\n".join(rows)


def pruning() -> str:
    path = RESULTS / "simple_classifier.json"
    data = _load(path)
    if data is None:
        return _missing(path, "python examples/simple_classifier.py")
    rows = ["| | value |", "|---|---|"]
    for key, value in _flatten(data):
        rows.append(f"| {key} | {value} |")
    return "\n".join(rows)


def structured() -> str:
    path = RESULTS / "structured_pruning.json"
    data = _load(path)
    if data is None:
        return _missing(path, "python bench/structured_speedup.py")
    rows = ["| | value |", "|---|---|"]
    for key, value in _flatten(data):
        rows.append(f"| {key} | {value} |")
    return "\n".join(rows)


def speed() -> str:
    rows = ["| measurement | result | goal |", "|---|---|---|"]
    read = _load(RESULTS / "read_caffemodel.json")
    if read:
        rows.append(f"| read VGG-16 caffemodel: time vs bare protobuf parse | {_fmt(read['time_ratio'])}x | < 1.5x |")
        rows.append(f"| read VGG-16 caffemodel: peak memory vs file size | {_fmt(read['memory_ratio'])}x | < 2x |")
    c2k = _load(RESULTS / "caffe2keras.json")
    if c2k:
        rows.append(f"| Caffe -> Keras, VGG-16: time vs floor | {_fmt(c2k['conversion']['time_ratio'])}x | < 1.5x |")
        rows.append(f"| Caffe -> Keras, VGG-16: memory vs weights | {_fmt(c2k['conversion']['memory_ratio'])}x | < 2.5x |")
        rows.append(f"| converted ResNet-50 vs keras.applications ({c2k['inference']['backend']}) | "
                    f"{_fmt(c2k['inference']['inference_ratio'])}x | <= 1.05x |")
    k2c = _load(RESULTS / "keras2caffe.json")
    if k2c:
        rows.append(f"| Keras -> Caffe, VGG16: time vs floor | {_fmt(k2c['conversion']['time_ratio'])}x | |")
        if "inference_ratio" in k2c.get("inference", {}):
            rows.append(f"| exported ResNet-50 vs hand-written, OpenCV DNN | {_fmt(k2c['inference']['inference_ratio'])}x "
                        "| <= 1.05x |")
    overhead = _load(RESULTS / "pruning_overhead.json")
    if overhead:
        for backend, value in (overhead.get("ratios") or {}).items():
            rows.append(f"| pruning fit overhead ({backend}) | {_fmt(value)}x | <= 1.3x |")
    speedup = _load(RESULTS / "structured_speedup.json")
    if speedup:
        for model, value in (speedup.get("ratios") or {}).items():
            rows.append(f"| structured pruning 0.5, OpenCV latency ({model}) | {_fmt(value)}x | <= 0.65x |")
    if len(rows) == 2:
        return _missing(RESULTS / "*.json", "python bench/<script>.py")
    return "\n".join(rows)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def _flatten(data, prefix=""):
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        else:
            yield name, _fmt(value)


TABLES = {"caffe-layers": caffe_layers, "keras-layers": keras_layers, "zoo": zoo, "applications": applications,
          "pruning": pruning, "structured": structured, "speed": speed}


def render(text: str) -> str:
    for name, build in TABLES.items():
        pattern = re.compile(rf"(<!-- table:{name} -->\n)(?:.*?\n)?(<!-- /table:{name} -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + build() + "\n" + m.group(2), text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is not up to date")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    current = README.read_text()
    updated = render(current)
    if args.check:
        if updated != current:
            print("README.md tables are out of date: run python tools/gen_readme.py")
            return 1
        return 0
    README.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
