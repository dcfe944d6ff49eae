"""Remove whole channels from a Keras model, or from a Caffe net through Keras and back.

``keraffe prune MODEL.keras -o SMALL.keras --ratio 0.5`` writes a physically
smaller Keras model (fewer filters; coupled layers cut together; layers the
planner does not understand keep their channels). ``keraffe prune
NET.prototxt --weights W.caffemodel -o SMALL.prototxt --ratio 0.5`` converts
the net to Keras, prunes it, fine-tunes it when --data is given, and exports
it back to Caffe (SMALL.caffemodel next to the prototxt unless
--weights-out).

With --target nnie, ascend or rknn the export is fitted to that NPU toolchain
and checked (see ``keraffe check``), and --round-to defaults to the channel
multiple the toolchain's vendor documents (16 for ascend; 1 where none is).

--data is an .npz with x_train and y_train (integer labels), and optionally
x_test and y_test to report accuracy before and after. Images are in the
model's own order: NHWC for a Keras model, Caffe's NCHW for a Caffe net.
"""

from __future__ import annotations

from pathlib import Path

from keraffe.cli.options import (add_caffe_proto_option, add_input_shape_option, add_target_option, input_shapes_from,
                                 print_target_check)

HELP = "remove whole channels (structured pruning) from a Keras model or a Caffe net"

CAFFE_SUFFIXES = (".prototxt", ".pt")


def add_arguments(parser) -> None:
    parser.add_argument("model", help="MODEL.keras (or .h5), or NET.prototxt with --weights")
    parser.add_argument("-o", "--output", required=True, help="SMALL.keras, or SMALL.prototxt for a Caffe net")
    parser.add_argument("--weights", help="the Caffe net's .caffemodel")
    parser.add_argument("--weights-out", help="the pruned .caffemodel (default: next to the output prototxt)")
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--ratio", type=float, help="fraction of each coupled channel group to remove, e.g. 0.5")
    amount.add_argument("--target-macs", type=float,
                        help="MACs to reach: a count, or a fraction (<= 1) of the model's")
    parser.add_argument("--importance", default="l1", choices=["l1", "l2", "bn_gamma", "taylor"],
                        help="how channels are ranked (default l1; taylor needs --data)")
    parser.add_argument("--round-to", type=int, default=None,
                        help="keep a multiple of this many channels per group (default: the channel multiple of "
                             "--target's NPU where its vendor documents one, e.g. 16 for ascend; else 1)")
    parser.add_argument("--min-channels", type=int, default=1, help="fewest channels a group keeps (default 1)")
    parser.add_argument("--exclude", action="append", default=[], metavar="LAYER",
                        help="a layer whose channels stay (repeatable)")
    parser.add_argument("--data", help=".npz with x_train, y_train [, x_test, y_test] to fine-tune on")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs when --data is given (default 3)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="fine-tuning learning rate (Adam)")
    add_target_option(parser, "the Caffe export of a pruned Caffe net")
    parser.add_argument("--verify", action="store_true",
                        help="compare the exported Caffe net with the pruned Keras model (real Caffe, else OpenCV)")
    parser.add_argument("--report", action="store_true",
                        help="also export both models to Caffe and time them in OpenCV DNN")
    add_input_shape_option(parser)
    add_caffe_proto_option(parser)


def _load_data(path, caffe_order: bool):
    from keraffe.errors import KeraffeError
    from keraffe.layout import NHWC
    from keraffe.limits import read_numpy

    path = Path(path)
    if not path.is_file():
        raise KeraffeError(f"--data {path}: file not found")
    arrays = read_numpy(path, f"--data {path}")
    if not isinstance(arrays, dict):
        raise KeraffeError(f"--data {path}: an .npy file; --data is an .npz archive with x_train and y_train")
    missing = [name for name in ("x_train", "y_train") if name not in arrays]
    if missing:
        raise KeraffeError(f"--data {path}: needs arrays x_train and y_train; it has {sorted(arrays)}")
    for name in ("x_train", "x_test"):
        if name in arrays:
            value = arrays[name].astype("float32")
            arrays[name] = NHWC.to_keras(value) if caffe_order and value.ndim == 4 else value
    return arrays


def _accuracy(model, x, y) -> float:
    from keraffe.pruning.structured.sensitivity import accuracy

    return accuracy(model, (x, y))


def _fine_tune(model, data, args):
    import keras

    from keraffe.pruning.structured.importance import _default_loss

    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss=_default_loss(model, data["y_train"]))
    model.fit(data["x_train"], data["y_train"], epochs=args.epochs, batch_size=args.batch_size, verbose=0)


def run(args) -> int:
    from keraffe.errors import KeraffeError
    from keraffe.files import refuse_overwriting_input
    from keraffe.pruning.structured import plan_channels

    source = Path(args.model)
    caffe = source.suffix.lower() in CAFFE_SUFFIXES
    refuse_overwriting_input(args.output, args.model, args.weights, args.caffe_proto)
    if caffe:
        import keraffe

        if not args.weights:
            raise KeraffeError("pruning a Caffe net needs its trained weights: --weights W.caffemodel")
        model = keraffe.caffe_to_keras(source, args.weights, input_shapes_from(args), caffe_proto=args.caffe_proto)
    else:
        from keraffe.keras_io import load_keras_model

        if args.weights:
            raise KeraffeError("--weights is for a Caffe net; a .keras model carries its own weights")
        if args.caffe_proto:
            raise KeraffeError("--caffe-proto is for a Caffe net; a .keras model has no Caffe schema")
        model = load_keras_model(source)
    data = _load_data(args.data, caffe) if args.data else None
    if args.importance == "taylor" and data is None:
        raise KeraffeError("--importance taylor needs --data: channels are ranked by gradients on it")
    sample = (data["x_train"][:512], data["y_train"][:512]) if data is not None else None
    round_to = round_to_for(args, caffe)
    plan = plan_channels(model, args.ratio, target_macs=args.target_macs, importance=args.importance, data=sample,
                         round_to=round_to, min_channels=args.min_channels, exclude=args.exclude)
    result = plan.apply()
    pruned = result.model
    print(f"{source}: {model.count_params():,} -> {pruned.count_params():,} parameters")
    print(plan.summary())
    for item in result.fold.unfolded:
        print(f"  note: {item.layer}: the constants of {item.channels} removed channel(s) were not folded: "
              f"{item.reason}")
    if data is not None:
        test = ("x_test", "y_test") if "x_test" in data and "y_test" in data else None
        if test:
            print(f"accuracy: dense {_accuracy(model, data[test[0]], data[test[1]]):.2f}%, pruned "
                  f"{_accuracy(pruned, data[test[0]], data[test[1]]):.2f}%", end="")
        if args.epochs > 0:
            _fine_tune(pruned, data, args)
            if test:
                print(f", after {args.epochs} epoch(s) of fine-tuning "
                      f"{_accuracy(pruned, data[test[0]], data[test[1]]):.2f}%", end="")
        print()
    status = 0
    if caffe:
        status = _export(pruned, args)
    else:
        from keraffe.keras_io import save_keras_model

        save_keras_model(pruned, args.output)
        print(f"wrote {args.output}")
    if args.report:
        from keraffe.verify.latency import deployment_report

        print(deployment_report(model, pruned).render(), end="")
    return status


def round_to_for(args, caffe: bool) -> int:
    """--round-to as given, else (for a Caffe net) the channel multiple its target's NPU vendor documents, else 1."""
    if args.round_to is not None:
        return args.round_to
    if not caffe:
        return 1
    from keraffe.targets import TARGET_NAMES, get_profile

    if args.target in TARGET_NAMES:
        multiple = get_profile(args.target).channel_multiple
        if multiple:
            print(f"--round-to {multiple}: target {args.target}'s channel multiple "
                  f"({get_profile(args.target).channel_note})")
            return multiple
    return 1


def _export(pruned, args) -> int:
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.errors import KeraffeError
    from keraffe.verify import verify

    export = keraffe.keras_to_caffe(pruned, args.output, args.weights_out, target=args.target)
    print(f"wrote {export.prototxt} and {export.caffemodel} (target {args.target})")
    status = print_target_check(export)
    if not args.verify:
        return status
    from keraffe.verify.caffe_runtime import pycaffe_available

    runtime = "caffe" if pycaffe_available() else "opencv"
    report = verify(pruned, load_net(export.prototxt, export.caffemodel), runtime=runtime,
                    tensor_map=export.tensor_map)
    print(f"verify ({runtime}): largest relative error {report.max_rel:.2e}, {'ok' if report.ok else 'FAILED'}")
    if not report.ok:
        raise KeraffeError(f"the exported net differs from the pruned Keras model in {runtime}")
    return status
