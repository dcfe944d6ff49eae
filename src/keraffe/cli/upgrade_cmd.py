"""Upgrade an old Caffe net (and its weights) to the current format.

Does what Caffe's upgrade_net_proto_text and upgrade_net_proto_binary tools do:
V0 and V1 layers become V2 layers, input fields become an Input layer, old data
transformation fields move into transform_param. It also writes the forks'
``ceil_mode`` as BVLC's ``round_mode``. Every layer is kept, whatever its phase.
"""

from __future__ import annotations

from pathlib import Path

from keraffe.cli.options import add_caffe_proto_option
from keraffe.errors import KeraffeError

HELP = "upgrade a V0/V1 or fork-spelled net (and weights) to current Caffe"


def add_arguments(parser) -> None:
    parser.add_argument("prototxt", help="the net to upgrade")
    parser.add_argument("-o", "--output", required=True, help="where to write the upgraded prototxt")
    parser.add_argument("--weights", help="the net's weights (.caffemodel V0/V1/V2 or .caffemodel.h5)")
    parser.add_argument("--weights-out", help="where to write the upgraded .caffemodel (needs --weights)")
    add_caffe_proto_option(parser)


def run(args) -> int:
    from keraffe.caffe.caffemodel import read_weights, write_caffemodel
    from keraffe.caffe.prototxt import format_prototxt, read_prototxt
    from keraffe.caffe.upgrade import net_version, upgrade_net
    from keraffe.files import atomic_output, refuse_overwriting_input

    if bool(args.weights) != bool(args.weights_out):
        raise KeraffeError("give --weights and --weights-out together")
    for output in (args.output, args.weights_out):
        # Caught here: the atomic rename onto a folder fails only after all the work.
        if output and Path(output).is_dir():
            raise KeraffeError(f"{output} is a folder; give the path of the file to write")
    refuse_overwriting_input(args.output, args.prototxt, args.weights, args.caffe_proto)
    if args.weights_out:
        refuse_overwriting_input(args.weights_out, args.prototxt, args.weights, args.output)
        # refuse_overwriting_input only sees files that exist; -o may not exist yet.
        if Path(args.weights_out).resolve() == Path(args.output).resolve():
            raise KeraffeError(
                f"-o and --weights-out both name {args.output}; the prototxt and the weights "
                "need two different files"
            )
    if args.caffe_proto:
        from keraffe.caffe.fork_schema import load_fork_schema, parse_with_schema
        from keraffe.caffe.prototxt import read_prototxt_text

        read = parse_with_schema(read_prototxt_text(args.prototxt), args.prototxt, load_fork_schema(args.caffe_proto))
        if read.foreign:
            fields = "; ".join(f"{'layer ' + repr(name) if name else 'the net'}: {', '.join(found)}"
                               for name, found in read.foreign.items())
            raise KeraffeError(f"{args.prototxt}: keraffe's schema has no place for these fields of "
                               f"{args.caffe_proto}, so the upgraded net would lose them: {fields}")
        original = read.net
    else:
        original = read_prototxt(args.prototxt)
    upgraded, notes = upgrade_net(original, args.prototxt)
    weights = read_weights(args.weights) if args.weights else None
    # The prototxt becomes visible only after the weights are written, so a
    # failed weights write (missing folder, full disk) leaves neither output.
    with atomic_output(args.output, "w") as handle:
        handle.write(format_prototxt(upgraded))
        if weights is not None:
            # Blobs, not arrays: legacy 4-D blob dims must stay legacy for Caffe to load the file.
            size = write_caffemodel(args.weights_out, weights.net, weights.blobs())
    print(f"{args.prototxt} ({net_version(original)}) -> {args.output} (V2)")
    for note in notes or ["already current; written unchanged in content"]:
        print(f"  {note}")
    if weights is not None:
        print(f"{args.weights} -> {args.weights_out} ({len(weights.layers)} layers, {size:,} bytes)")
    return 0
