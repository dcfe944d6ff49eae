"""Convert a Keras 3 model (.keras, or .h5) into a Caffe prototxt and caffemodel.

Rank-4 tensors become NCHW blobs and weights are permuted once, here. Layers
keep their Keras names. The default target, caffe1, uses only Caffe 1.0 layer
types, so the result loads in any Caffe and in vendor NPU toolchains; layers
with no Caffe 1.0 equivalent are built exactly from Caffe 1.0 layers, and the
report says how. Anything Caffe cannot compute exactly is refused, never
approximated. For an NPU toolchain (--target nnie, ascend or rknn) the net is
then fitted to the toolchain by exact rewrites and checked against its rules
(as ``keraffe check`` does); the command exits 1 when the check finds errors.
"""

from __future__ import annotations

from keraffe.cli.options import add_input_shape_option, add_target_option, input_shapes_from, print_target_check

HELP = "convert a Keras 3 model to a Caffe net"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="the .keras or .h5 model")
    parser.add_argument("-o", "--output", required=True, help="the prototxt to write")
    parser.add_argument("--weights-out", help="the caffemodel to write (default: next to the prototxt)")
    add_target_option(parser, "what the net is for")
    add_input_shape_option(parser)


def run(args) -> int:
    import keraffe

    export = keraffe.keras_to_caffe(args.model, args.output, args.weights_out, target=args.target,
                                    input_shape=input_shapes_from(args))
    from keraffe.convert.tensor_map import recorded_map_path

    print(f"{args.model} -> {export.prototxt}, {export.caffemodel} (target {export.target}): "
          f"{len(export.net.layer)} Caffe layers; tensor map for verify in {recorded_map_path(export.prototxt)}")
    if export.report:
        print("layers that did not map one to one:")
        for item in export.report:
            made = ", ".join(item.caffe_layers) or "no layer"
            print(f"  {item.keras_layer} ({item.keras_class}) -> {made}: {item.note}")
    return print_target_check(export)
