"""Reading and writing prototxt text.

Reading accepts every dialect the schema knows (V0, V1, V2 and the forks); a
syntax error or unknown field is reported with file, line and column. Writing
prints protobuf's text format, which is what Caffe itself prints, in one of two
spellings of pooling rounding: BVLC's ``round_mode`` or the forks' ``ceil_mode``
(which OpenCV and brocolli-caffe read).
"""

from __future__ import annotations

import enum
import os
import re
from pathlib import Path

from google.protobuf import text_format

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.errors import CaffeFormatError
from keraffe.files import atomic_output
from keraffe.limits import MAX_NESTING, nesting_overflow


class Dialect(enum.Enum):
    """How the written text spells fields that Caffe dialects disagree on."""

    #: BVLC master: ``round_mode: FLOOR``.
    BVLC = "bvlc"
    #: OpenCV DNN, brocolli-caffe and the older forks: ``ceil_mode: false``.
    FORK = "fork"


def parse_prototxt(text: str, source: str = "<text>") -> pb.NetParameter:
    """Parse prototxt text into a NetParameter, as written (no upgrade)."""
    net = pb.NetParameter()
    if text.startswith("\ufeff"):
        text = text[1:]
    _check_nesting(text, source)
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as error:
        line, column = error.GetLine(), error.GetColumn()
        message = re.sub(r"^\d+:\d+\s*:\s*", "", str(error))
        message = message.replace("keraffe_caffe.", "")
        hint = ""
        if "SolverParameter" not in message and re.search(r"no field named \"(base_lr|net|train_net|solver_mode)\"", message):
            hint = " (this looks like a solver file; pass the net's prototxt instead)"
        raise CaffeFormatError(f"{source}:{line}:{column}: {message}{hint}") from None
    return net


#: What can open or close a message in protobuf text, skipping strings and comments (which may hold braces).
#: Strings are matched as runs of plain characters between escapes: a per-character alternation would
#: make the regex engine keep a backtracking record per character of an unterminated string.
_NESTING_TOKENS = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|\'[^\'\\\n]*(?:\\.[^\'\\\n]*)*\'|#[^\n]*|[{}<>]')


def _check_nesting(text: str, source: str) -> None:
    """Refuse messages nested deeper than keraffe.limits.MAX_NESTING before protobuf's recursive parser sees them.

    Caffe's schema nests a few levels; protobuf's text parser recurses once a
    level, so a file of a million open braces would otherwise end in a RecursionError.
    """
    offset = nesting_overflow(text, _NESTING_TOKENS, "{<")
    if offset is not None:
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        raise CaffeFormatError(
            f"{source}:{line}:{column}: messages nested more than {MAX_NESTING} deep; "
            "no Caffe net nests so deep (is a closing brace missing?)"
        )


def read_prototxt_text(path: str | os.PathLike) -> str:
    """A prototxt file's text, refusing binary files and text that is not UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise CaffeFormatError(f"{path}: prototxt file not found")
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise CaffeFormatError(f"{path}: this is a binary file; a prototxt is text (is it the caffemodel?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise CaffeFormatError(f"{path}:{line}: not UTF-8 text ({error.reason})") from None
    return text[1:] if text.startswith("\ufeff") else text


def read_prototxt(path: str | os.PathLike) -> pb.NetParameter:
    """Read a prototxt file as written (no upgrade)."""
    return parse_prototxt(read_prototxt_text(path), str(path))


def format_prototxt(net: pb.NetParameter, dialect: Dialect = Dialect.BVLC, header: str = "") -> str:
    """Print a net the way Caffe prints it, in the given dialect, after ``header`` as # comments."""
    message = pb.NetParameter()
    message.CopyFrom(net)
    for layer in message.layer:
        del layer.blobs[:]
        if layer.HasField("pooling_param"):
            _spell_rounding(layer.pooling_param, dialect)
        _write_disputed_defaults(layer)
    text = text_format.MessageToString(message, use_short_repeated_primitives=False)
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + text


#: Fields whose default differs between Caffe forks, by layer type: keraffe writes them even when
#: they hold keraffe's default, so no runtime reads the other fork's (SSD's PriorBox clip is false,
#: OpenCV's and brocolli's true; SegNet's Upsample scale is 2, brocolli's 1).
DISPUTED_DEFAULTS = {
    "PriorBox": ("prior_box_param", "clip"),
    "Upsample": ("upsample_param", "scale"),
}


def _write_disputed_defaults(layer: pb.LayerParameter) -> None:
    if layer.type not in DISPUTED_DEFAULTS:
        return
    param_name, field = DISPUTED_DEFAULTS[layer.type]
    param = getattr(layer, param_name)
    if param_name == "upsample_param" and any(
            param.HasField(f"{kind}_h") and param.HasField(f"{kind}_w") for kind in ("scale", "upsample")):
        return  # both sizes are given another way; a scale would only add noise
    setattr(param, field, getattr(param, field))


def _spell_rounding(param: pb.PoolingParameter, dialect: Dialect) -> None:
    floor = (param.HasField("round_mode") and param.round_mode == pb.PoolingParameter.FLOOR) or (
        param.HasField("ceil_mode") and not param.ceil_mode
    )
    param.ClearField("round_mode")
    param.ClearField("ceil_mode")
    if floor:
        if dialect is Dialect.BVLC:
            param.round_mode = pb.PoolingParameter.FLOOR
        else:
            param.ceil_mode = False


def write_prototxt(path: str | os.PathLike, net: pb.NetParameter, dialect: Dialect = Dialect.BVLC,
                   header: str = "") -> None:
    """Write a net as prototxt text, atomically."""
    text = format_prototxt(net, dialect, header)
    with atomic_output(path, "w") as handle:
        handle.write(text)
