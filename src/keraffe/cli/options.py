"""Argument types shared by several sub-commands."""

from __future__ import annotations

import argparse

from keraffe.errors import KeraffeError


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not a list of integers like 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"shape {text!r} needs positive integers like 1,3,224,224")
    return dims


def parse_input_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """``N,C,H,W`` for a net's only input, or ``NAME=N,C,H,W`` for a named one."""
    name, _, dims = text.rpartition("=")
    return (name or None), parse_shape(dims)


def add_input_shape_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input-shape", action="append", type=parse_input_shape, metavar="[NAME=]N,C,H,W",
        help="shape of the net's input in Caffe's NCHW order (repeat as NAME=... for several inputs); "
             "needed for train/val nets whose data layers only know their shape at training time",
    )


def add_caffe_proto_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--caffe-proto", metavar="FORK.proto",
        help="the caffe.proto of the fork the net was written for: the prototxt is read with it, and fields "
             "keraffe's own schema lacks are named (docs/caffe_forks.md)",
    )


def input_shapes_from(args) -> dict[str, tuple[int, ...]] | tuple[int, ...] | None:
    given = getattr(args, "input_shape", None)
    if not given:
        return None
    if len(given) == 1 and given[0][0] is None:
        return given[0][1]
    if any(name is None for name, _ in given):
        raise KeraffeError("with several --input-shape options, name each input: NAME=N,C,H,W")
    return {name: dims for name, dims in given}


def parse_count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def add_max_elements_option(parser: argparse.ArgumentParser) -> None:
    from keraffe.limits import DEFAULT_MAX_ELEMENTS

    parser.add_argument(
        "--max-elements", type=parse_count, metavar="N",
        help=f"most values keraffe allocates for one tensor a file declares, and for a model's weights in all "
             f"(default {DEFAULT_MAX_ELEMENTS:,}); larger declarations are refused before allocating",
    )


def add_target_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--target: caffe1 (default), caffe, opencv, or an NPU toolchain (nnie, ascend, rknn; see docs/targets.md)."""
    from keraffe.convert.keras_to_caffe.targets import TARGETS

    parser.add_argument(
        "--target", choices=list(TARGETS), default="caffe1",
        help=f"{what}: caffe1: Caffe 1.0 layers only (default); caffe: BVLC master; opencv: OpenCV 4.x DNN; "
             "nnie, ascend, rknn: the NPU toolchain's layers, fitted to its limits by exact rewrites and checked "
             "(see keraffe check and docs/targets.md)",
    )


def print_target_check(export) -> int:
    """Print an NPU target's rewrites and check; 1 when the check found errors (the files are written either way)."""
    if export.target_check is None:
        return 0
    for note in export.target_notes:
        print(f"  target {export.target}: {note}")
    report = export.target_check
    print(report.render(), end="")
    if not report.clean:
        print(f"the net is exact Caffe, but target {export.target}'s toolchain will refuse it "
              f"({len(report.errors)} error(s) above)")
        return 1
    return 0
