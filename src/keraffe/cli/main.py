"""The ``keraffe`` command: one sub-command per job, one module per sub-command.

User mistakes (a missing file, a malformed net, an unsupported layer) surface as
:class:`keraffe.errors.KeraffeError`; they are printed as one message and the
command exits 1, with no traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from keraffe.cli.backend import native_stderr_silenced, start_keras
from keraffe.cli.options import add_max_elements_option

#: Sub-command name -> module under keraffe.cli that defines add_arguments() and run().
COMMANDS = {
    "inspect": "inspect_cmd",
    "upgrade": "upgrade_cmd",
    "caffe2keras": "caffe2keras_cmd",
    "keras2caffe": "keras2caffe_cmd",
    "verify": "verify_cmd",
    "prune": "prune_cmd",
    "check": "check_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keraffe",
        description="Convert neural networks between Keras 3 and Caffe, exactly, and prune Keras models.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"keraffe.cli.{module_name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.__doc__)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show the full traceback on errors")
        module.add_arguments(sub)
        add_max_elements_option(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if args.debug:
        return _run(args)
    with native_stderr_silenced():
        return _run(args)


def _run(args) -> int:
    from keraffe.errors import KeraffeError
    from keraffe.limits import element_cap

    try:
        if _needs_keras(args):
            start_keras()
        with element_cap(args.max_elements):
            return int(args.run(args) or 0)
    except KeraffeError as error:
        if args.debug:
            traceback.print_exc()
        print(f"keraffe {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"keraffe {args.command}: interrupted", file=sys.stderr)
        return 130


#: Commands that run Keras (the others only read and write Caffe files, and never import Keras).
KERAS_COMMANDS = {"caffe2keras", "keras2caffe", "verify", "prune"}


def _needs_keras(args) -> bool:
    if args.command in KERAS_COMMANDS:
        return True
    model = str(getattr(args, "model", ""))
    return args.command == "inspect" and model.lower().endswith((".keras", ".h5", ".hdf5"))


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
