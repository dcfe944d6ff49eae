"""Run a Keras model and a Caffe net on the same input and compare their outputs.

Real Caffe (--runtime caffe, the default) or OpenCV DNN (--runtime opencv) runs
the Caffe side. NCHW/NHWC are matched by the layout recorded for each tensor at
conversion. Exits 1 when any output differs by more than the tolerance (max
absolute error over max |reference|).
"""

from __future__ import annotations

import json

from keraffe.cli.options import add_caffe_proto_option, add_input_shape_option, input_shapes_from

HELP = "compare a Keras model with a Caffe net, output by output or layer by layer"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="the .keras (or .h5) model")
    parser.add_argument("prototxt", help="the Caffe net")
    parser.add_argument("--weights", help="the net's weights (.caffemodel)")
    parser.add_argument("--input", help=".npy / .npz in Caffe's NCHW order, or an image; default: seeded noise")
    parser.add_argument("--per-layer", action="store_true", help="compare every blob, marking the first divergence")
    parser.add_argument("--runtime", choices=["caffe", "opencv"], default="caffe", help="reference runtime")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error allowed (1e-4)")
    add_input_shape_option(parser)
    add_caffe_proto_option(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    import keraffe

    report = keraffe.verify(args.model, args.prototxt, args.weights, args.input, per_layer=args.per_layer,
                            runtime=args.runtime, tolerance=args.tolerance, input_shape=input_shapes_from(args),
                            caffe_proto=args.caffe_proto)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(report.render(), end="")
    return 0 if report.ok else 1
