"""Check a Caffe net against an NPU toolchain's rules before running the vendor tool.

``keraffe check NET.prototxt --target nnie|ascend|rknn`` lists every
violation at once: the layer, the rule, the rule's source (docs/targets.md
cites each one) and the exact rewrite keraffe would apply, if any. It exits
0 when the net is clean and 1 when it breaks a rule; advice (a channel count
off the NPU's block size) is listed without failing. ``--weights`` adds the
rules about the weights file. ``--fix -o FIXED.prototxt`` applies keraffe's
rewrites, writes the result (and, with --weights, its caffemodel), and
checks that. Any Caffe net can be checked (and fixed), keraffe's or not;
layer types keraffe has no shape rule for are checked by type only, and the
layers after them are rewritten only where no shape is needed.
"""

from __future__ import annotations

from pathlib import Path

from keraffe.cli.options import add_input_shape_option, input_shapes_from

HELP = "check a Caffe net against an NPU toolchain's rules (nnie, ascend, rknn)"


def add_arguments(parser) -> None:
    from keraffe.targets import TARGET_NAMES

    parser.add_argument("prototxt", help="the net's prototxt")
    parser.add_argument("--weights", help="its caffemodel (adds the rules about the weights file)")
    parser.add_argument("--target", required=True, choices=list(TARGET_NAMES), help="the NPU toolchain")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (for CI)")
    parser.add_argument("--fix", action="store_true",
                        help="apply keraffe's exact rewrites and write the result to -o (then check that)")
    parser.add_argument("-o", "--output", help="with --fix: the prototxt to write")
    parser.add_argument("--weights-out", help="with --fix and --weights: the caffemodel (default: next to -o)")
    add_input_shape_option(parser)


def run(args) -> int:
    from keraffe.errors import KeraffeError
    from keraffe.targets import get_profile
    from keraffe.targets.check import check_net, load_for_check

    if args.fix != bool(args.output):
        raise KeraffeError("--fix and -o go together: -o names the fixed prototxt to write")
    if args.weights_out and not (args.fix and args.weights):
        raise KeraffeError("--weights-out is the fixed caffemodel: it needs --fix and --weights")
    profile = get_profile(args.target)
    net, stored, unchecked = load_for_check(args.prototxt, args.weights, input_shapes_from(args))
    if args.fix:
        net, notes = _fix(net, profile, args)
        report = check_net(net, profile, None, unchecked)
        report.net = args.output
    else:
        notes = []
        report = check_net(net, profile, stored, unchecked)
    if args.json:
        print(report.to_json())
    else:
        for note in notes:
            print(f"fixed: {note}")
        print(report.render(), end="")
    return 0 if report.clean else 1


def _fix(net, profile, args):
    from keraffe.caffe.caffemodel import write_caffemodel
    from keraffe.caffe.prototxt import Dialect, write_prototxt
    from keraffe.files import refuse_overwriting_input
    from keraffe.targets.fit import fit_net

    output = Path(args.output)
    caffemodel = Path(args.weights_out) if args.weights_out else output.with_suffix(".caffemodel")
    refuse_overwriting_input(output, args.prototxt, args.weights)
    if args.weights:
        refuse_overwriting_input(caffemodel, args.prototxt, args.weights, output)
    fitted = fit_net(net, profile)
    header = f"Fitted by keraffe for target '{profile.name}' ({profile.title}) from {args.prototxt}."
    if args.weights:
        write_caffemodel(caffemodel, fitted.net.to_net_parameter(), fitted.net.weight_arrays())
    write_prototxt(output, fitted.net.to_net_parameter(), Dialect.BVLC, header)
    notes = fitted.notes + [f"wrote {output}" + (f" and {caffemodel}" if args.weights else "")]
    return fitted.net, notes
