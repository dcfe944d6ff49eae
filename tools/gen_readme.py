"""Regenerate the tables in README.md from the code and from measured results.

Every table sits between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``
and is rewritten here, never by hand:

* ``caffe-layers`` and ``keras-layers``: the converter registries;
* ``zoo``: tests/convert/caffe_to_keras/zoo_expectations.json, the outcome of
  every zoo net as the test suite checks it;
* ``applications``: bench/results/applications.json (bench/fidelity.py);
* ``keras-hub``: bench/results/keras_hub.json (bench/hub_backbones.py);
* ``demo``: bench/results/demo.json, copied from ``make demo``'s out/demo/demo.json;
* ``pruning``, ``structured``: examples/simple_classifier.py's and bench/structured_*.py's results;
* ``vs-torch-pruning``: bench/results/vs_torch_pruning.json (bench/vs_torch_pruning.py);
* ``speed``: bench/results/*.json;
* ``fuzz``: bench/results/fuzz.json and fuzz_bounded.json (bench/fuzz.py, ``make fuzz``).
* ``targets``: bench/results/targets.json (bench/targets.py).

docs/targets.md's tables (each NPU target's rules and the rewrites) come from
``keraffe.targets`` the same way.

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
        shown = f"Python ({name.split(':', 1)[1]})" if name.startswith("Python:") else name
        rows.append(
            f"| {shown} | {'yes' if converts else 'no'} | {'yes' if shapes.has_rule(name) else 'no'} | "
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


def keras_hub() -> str:
    path = RESULTS / "keras_hub.json"
    data = _load(path)
    if data is None:
        return _missing(path, "python bench/hub_backbones.py")
    rows = ["keras_hub CNN backbones built from constructor arguments (small configurations, seeded weights, input "
            "height x width below), exported with the default target (caffe1). Composite layers (a family's "
            "blocks, written as Keras layer subclasses) convert by inlining their calls. Compared with Keras at "
            "every blob that holds a tensor of the model (`bench/hub_backbones.py`).", "",
            "| keras_hub backbone | input | parameters | Caffe layers (caffe1) | composite layers inlined | "
            "Keras layers not one to one | max rel. error, real Caffe | max rel. error, OpenCV |",
            "|---|---|---|---|---|---|---|---|"]
    for name, value in data.items():
        rows.append(f"| {name} | {value['input']} | {value['parameters']:,} | {value['caffe_layers']} | "
                    f"{value['composites_inlined']} | {value['not_one_to_one']} | {value.get('caffe', 'n/a')} | "
                    f"{value.get('opencv', 'n/a')} |")
    return "\n".join(rows)


def demo() -> str:
    path = RESULTS / "demo.json"
    data = _load(path)
    if data is None:
        return _missing(path, "python examples/demo.py --out out/demo && cp out/demo/demo.json bench/results/")
    models = data["models"]
    names = list(models)
    runtime = "real Caffe" if data["runtime"] == "caffe" else "OpenCV DNN"

    def row(label, cell):
        return f"| {label} | " + " | ".join(cell(models[n]) for n in names) + " |"

    def check(key):
        return lambda m: f"{'ok' if m[key + '_ok'] else 'FAILED'}, {m[key + '_rel_error']:.1e}"

    rows = [
        f"{data['data']}, {data['train_images']} training and {data['test_images']} test images, Keras backend "
        f"{data['backend']}, {data['epochs']} epochs, then {data['prune_epochs']} for each pruned model; "
        f"*sparse*: {data['target_sparsity']:.0%} of the weights zeroed by magnitude pruning; *channels*: "
        f"{data['channel_ratio']:.0%} of the channels removed by structured pruning.", "",
        "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
        row("Keras test accuracy", lambda m: f"{m['accuracy']:.2%}"),
        row("parameters", lambda m: f"{m['params']:,}"),
        row("multiply-accumulates", lambda m: f"{m['macs']:,}"),
        row("weights that are zero", lambda m: f"{m['sparsity']:.1%}"),
        row(".keras, gzipped (bytes)", lambda m: f"{m['gzip_bytes']:,}"),
        row(".caffemodel (bytes)", lambda m: f"{m['caffemodel_bytes']:,}"),
        row(".caffemodel, gzipped (bytes)", lambda m: f"{m['caffemodel_gzip_bytes']:,}"),
        row(f"Keras -> Caffe, against {runtime} (max rel. error)", check("export")),
        row("Caffe model's accuracy in OpenCV DNN", lambda m: f"{m['opencv_accuracy']:.2%}"),
        row(f"Caffe -> Keras, against {runtime} (max rel. error)", check("back")),
        row("Keras -> Caffe -> Keras, max abs. difference", lambda m: f"{m['round_trip_max_abs']:.1e}"),
    ]
    return "\n".join(rows)


def pruning() -> str:
    path = RESULTS / "simple_classifier.json"
    data = _load(path)
    if data is None:
        return _missing(path, "python examples/simple_classifier.py")
    dense, pruned = data["dense"], data["pruned"]
    caffe = data.get("caffe", {})
    caffe_cell = f"{caffe['accuracy']:.2%}" if caffe.get("status") == "ok" else caffe.get("status", "n/a")
    rows = [
        f"{data['data']}, {data['train_images']} training and {data['test_images']} test images, Keras backend "
        f"{data['backend']}, target sparsity {data['target_sparsity']:.0%} (PolynomialDecay), "
        f"{data['epochs']} + {data['prune_epochs']} epochs.", "",
        "| | dense | pruned |", "|---|---|---|",
        f"| test accuracy | {dense['accuracy']:.2%} | {pruned['accuracy']:.2%} |",
        f"| sparsity, all weights | {dense['sparsity']:.1%} | {pruned['sparsity']:.1%} |",
        f"| sparsity, least sparse prunable kernel | {dense['min_kernel_sparsity']:.1%} | "
        f"{pruned['min_kernel_sparsity']:.1%} |",
        f"| .keras (bytes) | {dense['keras_bytes']:,} | {pruned['keras_bytes']:,} |",
        f"| .keras, gzipped (bytes) | {dense['gzip_bytes']:,} | {pruned['gzip_bytes']:,} |",
        f"| exported Caffe model's accuracy in OpenCV DNN | | {caffe_cell} |",
    ]
    return "\n".join(rows)


def structured() -> str:
    path = RESULTS / "structured_applications.json"
    data = _load(path)
    if data is None:
        return _missing(path, "python bench/structured_applications.py")
    runtime = "real Caffe" if data["runtime"] == "caffe" else "OpenCV DNN"
    rows = [f"keras.applications (weights=None, seeded), every coupled channel group cut by "
            f"{data['ratio']:.0%}, exported with the default target and compared with {runtime} at every blob.", "",
            "| model | MACs removed | parameters | .caffemodel (bytes) | max rel. error | blobs compared |",
            "|---|---|---|---|---|---|"]
    for name, m in data["models"].items():
        rows.append(f"| {name} | {m['macs_removed']:.1%} | {m['params_before']:,} -> {m['params_after']:,} | "
                    f"{m['caffemodel_bytes']:,} | {m['max_rel_error']:.1e}{'' if m['matches'] else ' (MISMATCH)'} | "
                    f"{m['blobs_compared']} |")
    speedup = _load(RESULTS / "structured_speedup.json")
    if speedup:
        rows += ["", f"OpenCV DNN latency of the Caffe export, before and after pruning at {speedup['ratio']:.0%} "
                 f"({speedup['runtime']}, {speedup['threads']} thread(s), alternated in one run, median):", "",
                 "| model | before (ms) | after (ms) | ratio | goal |", "|---|---|---|---|---|"]
        for name, m in speedup["models"].items():
            rows.append(f"| {name} | {m['latency_ms']['dense']:.1f} | {m['latency_ms']['pruned']:.1f} | "
                        f"{m['latency_ratio']:.3f} | <= {speedup['goal']} |")
    return "\n".join(rows)


#: bench/backends.py's nets: how the speed table names each and what it is compared with.
BACKEND_NETS = {"resnet50": ("converted ResNet-50", "keras.applications"),
                "googlenet": ("converted GoogLeNet", "standard layers"),
                "pspnet": ("converted PSPNet-50", "standard layers")}


def _backend_rows() -> dict[str, list[str]]:
    """Rows of bench/backends.py's results, by backend: each converted net against the same computation."""
    measured = _load(RESULTS / "backends.json")
    rows: dict[str, list[str]] = {}
    for backend, nets in (measured or {}).get("backends", {}).items():
        for name, (label, reference) in BACKEND_NETS.items():
            if name in nets:
                custom = ", ".join(nets[name]["keraffe_layers"])
                held = f" ({custom})" if custom else ""
                rows.setdefault(backend, []).append(
                    f"| {label}{held} vs {reference} ({backend}) | {_ratio(nets[name]['ratio'])}x | "
                    f"<= {measured['goal']}x |")
    return rows


def vs_torch_pruning() -> str:
    path = RESULTS / "vs_torch_pruning.json"
    data = _load(path)
    if data is None:
        return _missing(path, "python bench/vs_torch_pruning.py")
    summary = data["summary"]
    dense = summary["dense"]

    def pm(stats, scale=100.0, digits=2):
        return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"

    rows = [f"{data['recipe']}; mean ± standard deviation over {data['seeds']} seeds, in one run. Dense test "
            f"accuracy: Keras {pm(dense['keras_accuracy'])}%, PyTorch {pm(dense['torch_accuracy'])}% "
            f"({dense['macs']:,} MACs, {dense['params']:,} parameters). Torch-Pruning "
            f"{data['versions']['torch_pruning']}; latency: {data['latency']}.", "",
            "| MAC budget | pruner | MACs | parameters | accuracy right after pruning | accuracy after fine-tuning "
            "| latency (ms) |", "|---|---|---|---|---|---|---|"]
    for budget in data["budgets"]:
        entry = summary[str(budget)]
        for tool, label in (("keraffe", "keraffe `prune_channels`"), ("torch_pruning", "Torch-Pruning")):
            m = entry[tool]
            rows.append(f"| {budget:.0%} | {label} | {m['macs']['mean']:,.0f} | {m['params']['mean']:,.0f} | "
                        f"{pm(m['accuracy_pruned'])}% | **{pm(m['accuracy'])}%** | {m['latency_ms']['mean']:.3f} |")
    rows += ["", "keraffe's fine-tuned accuracy minus Torch-Pruning's, seed by seed (both pruned from models trained "
             "from the same initial weights on the same batches): " + "; ".join(
                 _paired_difference(data["runs"], str(budget), budget) for budget in data["budgets"]) + "."]
    return "\n".join(rows)


def _paired_difference(runs: list, key: str, budget: float) -> str:
    """Mean and standard error of the per-seed accuracy differences: what the comparison can tell apart."""
    import statistics

    diffs = [run["budgets"][key]["keraffe"]["accuracy"] - run["budgets"][key]["torch_pruning"]["accuracy"]
             for run in runs]
    error = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    return f"at {budget:.0%}, {statistics.mean(diffs) * 100:+.2f} ± {error * 100:.2f} points over {len(diffs)} seeds"


def speed() -> str:
    rows = ["| measurement | result | goal |", "|---|---|---|"]
    backend_rows = _backend_rows()
    read = _load(RESULTS / "read_caffemodel.json")
    if read:
        rows.append(f"| read VGG-16 caffemodel: time vs bare protobuf parse | {_ratio(read['time_ratio'])}x | < 1.5x |")
        rows.append(f"| read VGG-16 caffemodel: peak memory vs file size | {_ratio(read['memory_ratio'])}x | < 2x |")
    c2k = _load(RESULTS / "caffe2keras.json")
    if c2k:
        rows.append(f"| Caffe -> Keras, VGG-16: time vs floor | {_ratio(c2k['conversion']['time_ratio'])}x | < 1.5x |")
        conv = c2k["conversion"]
        floor = f" (the floor: {_ratio(conv['floor_memory_ratio'])}x)" if "floor_memory_ratio" in conv else ""
        rows.append(f"| Caffe -> Keras, VGG-16: peak memory vs weights | {_ratio(conv['memory_ratio'])}x{floor} | < 2.5x |")
        if c2k["inference"]["backend"] not in backend_rows:
            rows.append(f"| converted ResNet-50 vs keras.applications ({c2k['inference']['backend']}) | "
                        f"{_ratio(c2k['inference']['inference_ratio'])}x | <= 1.05x |")
    rows.extend(row for rows_of_backend in backend_rows.values() for row in rows_of_backend)
    k2c = _load(RESULTS / "keras2caffe.json")
    if k2c:
        conv = k2c["conversion"]
        rows.append(f"| Keras -> Caffe, VGG16: time vs floor | {_ratio(conv['time_ratio'])}x | |")
        if "floor_net_peak_mb" in conv:
            floor = conv["floor_net_peak_mb"] / conv["weights_mb"]
            rows.append(f"| Keras -> Caffe, VGG16: peak memory vs weights | {_ratio(conv['memory_ratio'])}x "
                        f"(the floor: {_ratio(floor)}x) | |")
        if "inference_ratio" in k2c.get("inference", {}):
            rows.append(f"| exported ResNet-50 vs hand-written, OpenCV DNN | {_ratio(k2c['inference']['inference_ratio'])}x "
                        "| <= 1.05x |")
    overhead = _load(RESULTS / "pruning_overhead.json")
    if overhead:
        tfmot = f" (tfmot: {overhead['tfmot_ratio']}x)" if "tfmot_ratio" in overhead else ""

        def cpu(key, backend):
            value = (overhead.get(key) or {}).get(backend)
            return "" if value is None else f" (CPU time {_ratio(value)}x)"

        for backend, value in (overhead.get("ratios") or {}).items():
            rows.append(f"| pruning fit overhead, steady state ({backend}) | {_ratio(value)}x"
                        f"{cpu('cpu_ratios', backend)} | <= 1.3x |")
        for backend, value in (overhead.get("whole_fit_ratios") or {}).items():
            rows.append(f"| pruning fit overhead, whole fit with compile ({backend}) | {_ratio(value)}x"
                        f"{cpu('whole_fit_cpu_ratios', backend)} | <= 1.3x{tfmot} |")
    gpu = _load(RESULTS / "pruning_gpu.json")
    if gpu:
        for backend, value in gpu["ratios"].items():
            rows.append(f"| pruning fine-tuning, ResNet50/CIFAR-10 size, {gpu['device']} ({backend}) | "
                        f"{_ratio(value)}x | |")
    else:
        rows.append("| pruning fine-tuning on a GPU (JAX, PyTorch; ResNet50 at CIFAR-10 size) | not measured: no GPU "
                    "machine was available to this project's sessions | |")
    speedup = _load(RESULTS / "structured_speedup.json")
    if speedup:
        for model, value in (speedup.get("ratios") or {}).items():
            rows.append(f"| structured pruning 0.5, OpenCV latency ({model}) | {_ratio(value)}x | <= 0.65x |")
    if len(rows) == 2:
        return _missing(RESULTS / "*.json", "python bench/<script>.py")
    return "\n".join(rows)


def fuzz() -> str:
    runs = [(name, _load(RESULTS / name)) for name in ("fuzz.json", "fuzz_bounded.json")]
    runs = [(name, data) for name, data in runs if data]
    if not runs:
        return _missing(RESULTS / "fuzz.json", "make fuzz")
    rows = ["| run | seed | cases | entry points | runs | crashes | refusals (distinct messages) | successes | time |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, data in runs:
        label = "`make fuzz` (every zoo file)" if data["profile"] == "long" else "`make test` slice (small files)"
        rows.append(f"| {label} | {data['seed']} | {data['cases']:,} | {len(data['entry_points'])} | {data['runs']:,} | "
                    f"**{data['crashes']}** | {data['refusals']:,} ({data['distinct_refusals']}) | {data['ok']:,} | "
                    f"{data['seconds'] / 60:.0f} min |")
    name, data = runs[0]
    formats = ", ".join(f"{fmt} {n:,}" for fmt, n in sorted(data["cases_by_format"].items()))
    rows += ["", f"Cases by format in `{name}`: {formats}. Outcomes by entry point (a crash, a hang, a file left "
             "behind and a read over 8x its file all count as crashes):", "",
             "| entry point | runs | success | one KeraffeError | crashes |", "|---|---|---|---|---|"]
    for entry in data["entry_points"]:
        kinds = data["outcomes_by_entry_point"][entry]
        bad = sum(v for k, v in kinds.items() if k not in ("ok", "refused"))
        rows.append(f"| {entry} | {sum(kinds.values()):,} | {kinds.get('ok', 0):,} | {kinds.get('refused', 0):,} | "
                    f"{bad} |")
    return "\n".join(rows)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def _ratio(value) -> str:
    """Three significant figures, trailing zeros kept: a ratio of 1.001 reads 1.00, not 1."""
    return "n/a" if value is None else f"{value:#.3g}"


def _target_cell(entry: dict | None) -> str:
    if entry is None:
        return "n/a"
    if entry["status"] in ("refused", "fit failed"):
        return f"{entry['status']}: {entry['reason'].replace('|', '/')[:90]}"
    check = "passes" if entry["status"] == "passes" else f"fails: {entry['violations']}"
    if not entry.get("rewrites") and "caffe_layers" not in entry:
        return f"{check}; unchanged"  # a zoo Caffe net no rewrite touched: the same net
    if "max_rel_error" in entry:
        agree = f"{entry['max_rel_error']:.1e}" + ("" if entry.get("agrees") else " (MISMATCH)")
    else:
        agree = f"not run: {entry.get('verify_error', '')[:60]}"
    rewrites = ", ".join(f"{name} x{count}" for name, count in sorted(entry.get("rewrites", {}).items()))
    return f"{check}; {agree}" + (f"; {rewrites}" if rewrites else "")


def targets() -> str:
    path = RESULTS / "targets.json"
    data = _load(path)
    if data is None:
        return _missing(path, "python bench/targets.py")
    names = data["targets"]
    rows = [f"Each net exported (or, for the zoo's Caffe nets, fitted Caffe -> Caffe as `keraffe check --fix` does) "
            f"for each NPU target, then checked against the target's rules (docs/targets.md). A cell says whether "
            f"the result passes `keraffe check` (or the rules it breaks, with the number of layers), its largest "
            f"relative error in real Caffe (against Keras over every compared blob; for zoo Caffe nets, each "
            f"rewritten layer's output against the original layer's, fed the original run's values), and the exact "
            f"rewrites applied.", ""]
    parts = (("applications", "keras.applications model (weights=None, seeded)"),
             ("zoo_keras", "zoo Keras file"))
    plural = {"applications": "keras.applications models", "zoo_keras": "zoo Keras files",
              "zoo_caffe": "zoo Caffe nets"}
    summary = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for part in plural:
        entries = data.get(part, {})
        if not entries:
            continue
        cells = []
        for target in names:
            got = [row[target] for row in entries.values() if target in row]
            passing = sum(1 for e in got if e["status"] == "passes")
            agree = sum(1 for e in got if e.get("agrees"))
            cells.append(f"{passing}/{len(got)} pass, {agree}/{len(got)} agree")
        summary.append(f"| {plural[part]} | " + " | ".join(cells) + " |")
    rows += summary
    for part, label in parts:
        entries = data.get(part, {})
        if not entries:
            continue
        rows += ["", f"| {label} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for name, row in entries.items():
            rows.append(f"| {name} | " + " | ".join(_target_cell(row.get(t)) for t in names) + " |")
    entries = data.get("zoo_caffe", {})
    shown = {name: row for name, row in entries.items()
             if any(row.get(t, {}).get("status") != "passes" or not row.get(t, {}).get("agrees") for t in names)}
    if entries:
        rewritten = sum(1 for row in entries.values() if any(row.get(t, {}).get("rewrites") for t in names))
        rows += ["", f"Zoo Caffe nets (those `tests/convert/caffe_to_keras/test_zoo.py` verifies in real Caffe): "
                 f"{len(entries) - len(shown)} of {len(entries)} pass every target and compute the same "
                 f"({rewritten} of them after keraffe's rewrites for at least one target); the others:", "",
                 "| zoo Caffe net | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for name, row in sorted(shown.items()):
            rows.append(f"| {name} | " + " | ".join(_target_cell(row.get(t)) for t in names) + " |")
    return "\n".join(rows)


def target_rules(name: str):
    def build() -> str:
        from keraffe.targets import get_profile

        profile = get_profile(name)
        rows = ["| rule | applies to | rule (as the source states it) | source | conf. | severity | keraffe's fix |",
                "|---|---|---|---|---|---|---|"]
        for rule in profile.rules:
            fix = f"`{rule.fix}`" + (f"; otherwise: {rule.remedy}" if rule.remedy else "") if rule.fix else rule.remedy
            cells = (rule.id, rule.scope, rule.text, rule.source, rule.confidence, rule.severity, fix)
            rows.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
        rows += ["", f"Layer types taken ({len(profile.layer_types)}): " + ", ".join(sorted(profile.layer_types)) + ".",
                 "", f"Rewrites, in the order keraffe applies them: " + ", ".join(f"`{r}`" for r in profile.rewrites)
                 + ".", "", "Channel multiple: " + (f"{profile.channel_multiple} ({profile.channel_note}); "
                 "`keraffe prune --target` rounds to it by default." if profile.channel_multiple else
                 f"none ({profile.channel_note}); `keraffe prune --target` keeps `--round-to 1`.")]
        return "\n".join(rows)

    return build


def target_rewrites() -> str:
    from keraffe.targets import profiles
    from keraffe.targets.fit import REWRITES

    used = {name: [p for p, profile in profiles().items() if name in profile.rewrites] for name in REWRITES}
    rows = ["| rewrite (pass module in `src/keraffe/passes/`) | what it does | targets |", "|---|---|---|"]
    for name, rewrite in REWRITES.items():
        rows.append(f"| `{name}` | {rewrite.description} | {', '.join(used[name])} |")
    return "\n".join(rows)


TABLES = {"demo": demo, "caffe-layers": caffe_layers, "keras-layers": keras_layers, "zoo": zoo, "applications": applications,
          "keras-hub": keras_hub,
          "pruning": pruning, "structured": structured, "vs-torch-pruning": vs_torch_pruning, "speed": speed,
          "fuzz": fuzz, "targets": targets}

#: docs/targets.md: each target's rules and the rewrites, from keraffe.targets.
TARGET_DOC = REPO / "docs" / "targets.md"
TARGET_TABLES = {"target-rules-nnie": target_rules("nnie"), "target-rules-ascend": target_rules("ascend"),
                 "target-rules-rknn": target_rules("rknn"), "target-rewrites": target_rewrites}


def render(text: str, tables=None) -> str:
    for name, build in (tables or TABLES).items():
        pattern = re.compile(rf"(<!-- table:{name} -->\n)(?:.*?\n)?(<!-- /table:{name} -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + build() + "\n" + m.group(2), text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is not up to date")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    stale = []
    for path, tables in ((README, TABLES), (TARGET_DOC, TARGET_TABLES)):
        current = path.read_text()
        updated = render(current, tables)
        if updated == current:
            continue
        if args.check:
            stale.append(str(path.relative_to(REPO)))
        else:
            path.write_text(updated)
    if stale:
        print(f"{', '.join(stale)}: tables are out of date: run python tools/gen_readme.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
