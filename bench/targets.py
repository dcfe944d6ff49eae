"""NPU targets (nnie, ascend, rknn): does each export pass ``keraffe check``, and does it still compute the same?

Three sets of nets, each taken to every target:

* the 17 keras.applications models (weights=None, seeded; bench/fidelity.py's
  list) and the zoo's Keras files that convert (tests/convert/keras_to_caffe/
  test_zoo.py's list), exported with ``keras_to_caffe(..., target=T)``: the
  export's own check (clean, or the rules it breaks), the exact rewrites it
  applied, and the largest relative error against Keras in real Caffe over
  every compared blob;
* the zoo's Caffe nets that convert and match real Caffe
  (tests/convert/caffe_to_keras/zoo_expectations.json, "verified by caffe"),
  fitted Caffe -> Caffe as ``keraffe check --fix`` does (trained weights where
  the zoo has them, else seeded): the check before and after, and, in real
  Caffe, the largest relative error of each rewritten layer's output against
  the original's, each judged on the original run's own inputs (a net of the
  original layer, and one of the layers that replace it, fed the same
  values), which is the rewrite's own error and what the tolerance judges;
  the same through the whole fitted net (round-off of earlier rewrites
  carried along) and at the net's outputs are recorded too (seeded weights
  drive some deep nets to activations of 1e6, whose softmax turns float32
  summation order in an averaged pooling into 1e-3).

Results go to bench/results/targets.json (resumable: finished entries are
kept unless named again); tools/gen_readme.py renders the README table.

    python bench/targets.py [--part applications|zoo_keras|zoo_caffe ...] [--only NAME ...] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGETS = ("nnie", "ascend", "rknn")
TOLERANCE = 1e-4


def _tests_on_path():
    for path in (REPO / "tests", REPO / "tests" / "convert", HERE):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def _violations(report) -> str:
    return report.summary() if report is not None else ""


def _rewrites(notes) -> dict[str, int]:
    counts: dict[str, int] = {}
    for note in notes:
        name = note.split(":", 1)[0]
        counts[name] = counts.get(name, 0) + 1
    return counts


def export_entry(model, target: str, workdir: Path) -> dict:
    """Export one Keras model for one target; its check, rewrites and agreement with Keras in real Caffe."""
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.errors import KeraffeError
    from keraffe.verify import verify

    start = time.perf_counter()
    try:
        export = keraffe.keras_to_caffe(model, workdir / f"{target}.prototxt", target=target)
    except KeraffeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return {"status": "refused", "reason": " ".join(lines[-2:])[:240]}
    entry = {
        "status": "passes" if export.target_check.clean else "fails",
        "violations": _violations(export.target_check),
        "advice": len(export.target_check.advice),
        "rewrites": _rewrites(export.target_notes),
        "caffe_layers": len(export.net.layer),
        "export_s": round(time.perf_counter() - start, 2),
    }
    try:
        report = verify(model, load_net(export.prototxt, export.caffemodel), per_layer=True, runtime="caffe",
                        tolerance=TOLERANCE, tensor_map=export.tensor_map)
        entry["max_rel_error"] = max(c.rel for c in report.layers)
        entry["agrees"] = bool(all(c.ok for c in report.layers))
        entry["blobs_compared"] = len(report.layers)
    except KeraffeError as error:
        entry["agrees"] = False
        entry["verify_error"] = str(error).strip().splitlines()[-1][:200]
    return entry


def _export_each(names, load, results: dict, save) -> None:
    """Every target's export of each named model (``load(name)`` builds or reads it), saved after each."""
    for name in names:
        model = load(name)
        row = results.setdefault(name, {})
        with tempfile.TemporaryDirectory() as tmp:
            for target in TARGETS:
                row[target] = export_entry(model, target, Path(tmp))
                print(name, target, row[target], flush=True)
        save()


def applications(names, results: dict, save) -> None:
    from fidelity import MODELS, build

    _export_each(names or MODELS, build, results, save)


def zoo_keras(names, results: dict, save) -> None:
    _tests_on_path()
    from conftest import ZOO
    from keras_to_caffe.test_zoo import HYPERLPR, KERAS3, XCEPTION

    from keraffe.keras_io import load_keras_model

    _export_each(names or (XCEPTION + KERAS3 + HYPERLPR), lambda relpath: load_keras_model(ZOO / relpath),
                 results, save)


def _relative_error(got, want) -> float:
    """max |got - want| / max |want| over finite values; equal infinities and NaNs at the same places count as 0."""
    import numpy as np

    same = (got == want) | (np.isnan(got) & np.isnan(want))
    if not np.isfinite(want).any():
        return 0.0 if same.all() else float("inf")
    scale = float(np.abs(want[np.isfinite(want)]).max()) or 1.0
    return float(np.where(same, 0.0, np.abs(got - want)).max()) / scale


def fit_entry(net, inputs, target: str) -> dict:
    """Fit a loaded zoo net to one target: the checks before and after, and how the rewritten layers' outputs
    and the net's outputs compare with the original's in real Caffe."""
    from keraffe.errors import KeraffeError
    from keraffe.targets import get_profile
    from keraffe.targets.check import check_net
    from keraffe.targets.fit import fit_net
    from keraffe.verify import run_reference

    profile = get_profile(target)
    before = check_net(net, profile)
    try:
        fitted = fit_net(net, profile)
    except KeraffeError as error:
        return {"status": "fit failed", "reason": str(error).splitlines()[0][:200]}
    after = check_net(fitted.net, profile)
    entry = {
        "status": "passes" if after.clean else "fails",
        "violations": _violations(after),
        "violations_before": _violations(before),
        "advice": len(after.advice),
        "rewrites": _rewrites(fitted.notes),
    }
    if not fitted.layers:
        entry["max_rel_error"], entry["agrees"] = 0.0, True  # the same net: nothing to run again
        return entry
    nodes = [node for node in net.layers if node.name in fitted.layers]
    rewritten = sorted({t.blob for node in nodes for t in node.outputs})
    outputs = [t.blob for t in net.outputs]
    blobs = list(dict.fromkeys(rewritten + outputs + [t.blob for node in nodes for t in node.inputs]))
    try:
        want = run_reference(net, inputs, blobs, "caffe")
        got = run_reference(fitted.net, inputs, blobs, "caffe")
        isolated = {node.name: _isolated_error(net, fitted.net, node, want) for node in nodes}
    except KeraffeError as error:
        entry["agrees"] = False
        entry["verify_error"] = str(error).strip().splitlines()[-1][:200]
        return entry
    chained = {node.name: max(_relative_error(got[t.blob], want[t.blob]) for t in node.outputs) for node in nodes}
    entry["max_rel_error"] = max(chained[n] if isolated[n] is None else isolated[n] for n in chained)
    entry["chained_rel_error"] = max(chained.values())
    entry["output_rel_error"] = max(_relative_error(got[b], want[b]) for b in outputs)
    entry["agrees"] = entry["max_rel_error"] <= TOLERANCE
    return entry


def _final_version(net, tensor) -> bool:
    return all(t.version <= tensor.version for t in net.shapes if t.blob == tensor.blob)


def _isolated_error(net, fitted, node, want) -> float | None:
    """One rewritten layer judged on the original's own inputs: the original layer and the layers that replace it,
    each in a net of its own fed the original run's values (so round-off from earlier rewrites stays out).
    None where a bottom or top is rewritten in place later (the run's value of that blob is another version)."""
    from keraffe.caffe.net import net_from_parameter
    from keraffe.caffe.proto import caffe_pb2 as pb
    from keraffe.verify import run_reference

    bottoms = [t.blob for t in node.inputs]
    tops = [t.blob for t in node.outputs]
    if set(bottoms) & set(tops) or not all(_final_version(net, t) for t in (*node.inputs, *node.outputs)):
        return None

    def piece(source, name):
        full = source.to_net_parameter()
        needed, chosen = set(tops), []
        for layer in reversed(full.layer):
            if set(layer.top) & needed:
                chosen.append(layer)
                needed |= set(layer.bottom) - set(bottoms)
        small = pb.NetParameter(name=name)
        feed = small.layer.add(name="feed", type="Input")
        for blob in bottoms:
            feed.top.append(blob)
            feed.input_param.shape.add().dim.extend(want[blob].shape)
        for layer in reversed(chosen):
            small.layer.add().CopyFrom(layer)
        weights = {k: v for k, v in source.weight_arrays().items() if k in {layer.name for layer in chosen}}
        return run_reference(net_from_parameter(small, weights, name), {b: want[b] for b in bottoms}, tops, "caffe")

    before, after = piece(net, "original"), piece(fitted, "rewritten")
    return max(_relative_error(after[b], before[b]) for b in tops)


def zoo_caffe(names, results: dict, save) -> None:
    _tests_on_path()
    from caffe_to_keras.test_zoo import EXPECTATIONS, INPUT_SHAPES, STAGES, TRAINED
    from conftest import ZOO

    from keraffe.caffe.net import load_net
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.verify import seeded_inputs

    expected = json.loads(EXPECTATIONS.read_text())
    chosen = names or sorted(k for k, v in expected.items() if v["status"] == "verified by caffe")
    for relpath in chosen:
        weights = TRAINED.get(relpath)
        net = load_net(ZOO / relpath, ZOO / weights if weights else None, INPUT_SHAPES.get(relpath),
                       stages=STAGES.get(relpath, ()))
        if not weights:
            attach_seeded_weights(net, seed=0)
        inputs = seeded_inputs(net)
        row = {"weights": "trained" if weights else "seeded"}
        for target in TARGETS:
            row[target] = fit_entry(net, inputs, target)
            print(relpath, target, row[target], flush=True)
        results[relpath] = row
        save()


PARTS = {"applications": applications, "zoo_keras": zoo_keras, "zoo_caffe": zoo_caffe}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", nargs="*", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--only", nargs="*", default=None, help="model names, zoo files or zoo prototxts")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "targets.json")
    args = parser.parse_args(argv)
    _tests_on_path()
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data.update({"runtime": "caffe", "tolerance": TOLERANCE, "targets": list(TARGETS)})

    def save():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")

    for part in args.part:
        PARTS[part](args.only, data.setdefault(part, {}), save)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
