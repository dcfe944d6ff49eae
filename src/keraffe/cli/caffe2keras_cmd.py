"""Convert a Caffe net (prototxt, and caffemodel when given) into a Keras 3 .keras model.

The Keras model is channels-last: every NCHW image blob becomes an NHWC tensor,
and weights are permuted once, here. Layers keep their Caffe blob names. Where
no standard Keras layer computes exactly what Caffe does, keraffe's own layers
are used; they load after `import keraffe`.
"""

from __future__ import annotations

from collections import Counter

from keraffe.cli.options import add_caffe_proto_option, add_input_shape_option, input_shapes_from

HELP = "convert a Caffe net to a Keras 3 model"


def add_arguments(parser) -> None:
    parser.add_argument("prototxt", help="the Caffe net")
    parser.add_argument("--weights", help="the net's .caffemodel or .caffemodel.h5")
    parser.add_argument("-o", "--output", required=True, help="the .keras file to write")
    add_input_shape_option(parser)
    add_caffe_proto_option(parser)
    parser.add_argument("--phase", default="TEST", choices=["TEST", "TRAIN"], help="net phase (default TEST)")
    parser.add_argument("--stage", action="append", default=[], help="net state stage (repeatable)")


def run(args) -> int:
    from keraffe.caffe.net import load_net
    from keraffe.convert.caffe_to_keras import check_supported, convert_net
    from keraffe.files import refuse_overwriting_input
    from keraffe.keras_io import save_keras_model

    refuse_overwriting_input(args.output, args.prototxt, args.weights, args.caffe_proto)
    net = load_net(args.prototxt, args.weights, input_shapes_from(args), phase=args.phase, stages=args.stage,
                   check_types=check_supported, caffe_proto=args.caffe_proto)
    model, tensor_map = convert_net(net, release_weights=True)
    save_keras_model(model, args.output)
    kinds = Counter(type(layer).__name__ for layer in model.layers)
    custom = sorted(name for name in kinds if type(model.get_layer(
        next(l.name for l in model.layers if type(l).__name__ == name))).__module__.startswith("keraffe"))
    print(f"{args.prototxt} -> {args.output}: {len(net.layers)} Caffe layers, {len(model.layers)} Keras layers, "
          f"{model.count_params():,} parameters")
    if custom:
        print("  keraffe layers used (no exact standard Keras layer): " + ", ".join(custom))
    if not args.weights:
        print("  no --weights given: the model keeps Keras' own initialisation")
    fused = [e for e in tensor_map.entries.values() if e.note.startswith("fused")]
    if fused:
        print(f"  {len(fused)} BatchNorm+Scale pair(s) fused into BatchNormalization layers")
    for note in net.notes:
        print(f"  note: {note}")
    return 0
