"""Show a model layer by layer: shapes, parameters and multiply-accumulates.

For a Caffe net (``NET.prototxt``) each row is one layer with its bottoms, tops,
output shapes in Caffe's NCHW order, parameter count and MACs. For a Keras model
(``MODEL.keras`` or ``.h5``) each row shows parameters, non-zeros and sparsity,
with the gzip-compressed size of the whole model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from keraffe.cli.options import add_caffe_proto_option, add_input_shape_option, input_shapes_from

HELP = "show a Caffe net or Keras model layer by layer"

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def add_arguments(parser) -> None:
    parser.add_argument("model", help="NET.prototxt, or MODEL.keras / MODEL.h5")
    parser.add_argument("--weights", help="the net's .caffemodel or .caffemodel.h5 (checks it against the net)")
    add_input_shape_option(parser)
    add_caffe_proto_option(parser)
    parser.add_argument("--phase", default="TEST", choices=["TEST", "TRAIN"], help="net phase (default TEST)")
    parser.add_argument("--stage", action="append", default=[], help="net state stage (repeatable)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def caffe_report(net) -> dict:
    """The JSON form of `keraffe inspect` for a Caffe net."""
    layers = []
    for node in net.layers:
        layers.append({
            "name": node.name,
            "type": node.type,
            "bottoms": [str(t) for t in node.inputs],
            "tops": [str(t) for t in node.outputs],
            "shapes": [list(net.shapes[t]) for t in node.outputs],
            "params": node.num_params,
            "macs": node.shapes.macs if node.shapes else 0,
        })
    return {
        "layers": layers,
        "total_params": sum(layer["params"] for layer in layers),
        "total_macs": sum(layer["macs"] for layer in layers),
    }


def run(args) -> int:
    path = Path(args.model)
    if path.suffix.lower() in KERAS_SUFFIXES:
        return _run_keras(args, path)
    from keraffe.caffe.net import load_net

    net = load_net(path, args.weights, input_shapes_from(args), phase=args.phase, stages=args.stage,
                   caffe_proto=args.caffe_proto)
    report = caffe_report(net)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    _print_caffe_table(net, report)
    return 0


def _print_caffe_table(net, report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    title = f"{net.name or Path(net.source).stem} ({net.source})"
    table = Table(title=title, show_lines=False)
    for column, justify in (("layer", "left"), ("type", "left"), ("bottoms", "left"), ("tops", "left"),
                            ("shape (NCHW)", "left"), ("params", "right"), ("MACs", "right")):
        table.add_column(column, justify=justify, overflow="fold")
    for row in report["layers"]:
        table.add_row(
            row["name"], row["type"], ", ".join(row["bottoms"]), ", ".join(row["tops"]),
            "  ".join("x".join(str(d) for d in shape) or "scalar" for shape in row["shapes"]),
            f"{row['params']:,}", f"{row['macs']:,}",
        )
    table.add_section()
    table.add_row("total", f"{len(report['layers'])} layers", "", "", "",
                  f"{report['total_params']:,}", f"{report['total_macs']:,}")
    console.print(table)
    outputs = ", ".join(f"{t} {'x'.join(str(d) for d in net.shapes[t])}" for t in net.outputs)
    console.print(f"outputs: {outputs}")
    for note in net.notes:
        console.print(f"note: {note}", highlight=False)


def _run_keras(args, path: Path) -> int:
    from keraffe.errors import KeraffeError

    try:
        from keraffe.pruning import summary
    except ImportError:  # the pruning package is optional at this stage of the project
        raise KeraffeError("inspecting Keras models needs keraffe.pruning, which is not installed") from None
    from keraffe.keras_io import load_keras_model

    model = load_keras_model(path)
    # A .keras file's own sizes (what a user ships); an .h5 file is measured as .keras.
    result = summary(model, saved_file=path if path.suffix == ".keras" else None)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(result)
    return 0
