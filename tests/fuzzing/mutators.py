"""Structure-aware mutators: each knows one file format well enough to break it where readers look.

A mutator takes the bytes of a real file and a :class:`Choices` (the source of
every decision, so that hypothesis can replay and shrink a case) and returns
new bytes. Byte flips alone rarely get past a parser's first check; these
mutators change what the format means: a number in a prototxt becomes 0, -1
or 2**63; a field disappears or repeats; a caffemodel blob claims a shape its
data cannot fill and every enclosing length is re-encoded so the file still
parses; a .keras archive gets a config with an absurd layer width, loses its
weights or carries a zip bomb.

Nothing here imports keraffe: the mutators must not share the readers'
assumptions about the formats.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Callable, Protocol, Sequence


class Choices(Protocol):
    """Where a mutator's decisions come from (hypothesis' data object in the tests)."""

    def integer(self, low: int, high: int) -> int: ...

    def pick(self, options: Sequence): ...


#: Values that break arithmetic on sizes: zero, negatives, int32/int64 edges, past uint64.
HOSTILE_NUMBERS = ("0", "-1", "-2147483648", "2147483647", "4294967295", "4294967296", "9223372036854775807",
                   "18446744073709551616", "100000", "1e309", "-0.0", "nan", "3.5", "65535")
HOSTILE_INTS = (0, -1, -2**31, 2**31 - 1, 2**32, 2**62, 2**63 - 1, 100000, 65535, 3)
HOSTILE_LENGTHS = (2**31 - 1, 2**32 + 7, 2**62, 2**64 - 1)


def apply_several(data: bytes, choices: Choices, mutations: Sequence[Callable[[bytes, Choices], bytes]],
                  most: int = 3) -> tuple[bytes, list[str]]:
    """Apply 1..most mutations picked from ``mutations``; return the bytes and the mutation names, in order."""
    applied = []
    for _ in range(choices.integer(1, most)):
        mutation = choices.pick(mutations)
        data = mutation(data, choices)
        applied.append(mutation.__name__)
    return data, applied


# ------------------------------------------------------------------ prototxt (protobuf text)

_TOKEN = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|\'[^\'\\\n]*(?:\\.[^\'\\\n]*)*\'|#[^\n]*|[A-Za-z_][A-Za-z0-9_.]*|'
                    r'[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|\S')


def _tokens(text: str) -> list[re.Match]:
    return [m for m in _TOKEN.finditer(text) if not m.group().startswith("#")]


def _fields(tokens: list[re.Match]) -> list[tuple[int, int]]:
    """Character spans of every field: ``name: value`` or ``name { ... }`` (braces matched)."""
    closing = _matching_braces(tokens)
    spans = []
    for i, token in enumerate(tokens[:-1]):
        if not re.fullmatch(r"[A-Za-z_]\w*", token.group()):
            continue
        following = tokens[i + 1].group()
        if following == ":" and i + 2 < len(tokens):
            value = tokens[i + 2]
            if value.group() == "{":
                if i + 2 in closing:
                    spans.append((token.start(), tokens[closing[i + 2]].end()))
            else:
                spans.append((token.start(), value.end()))
        elif following == "{" and i + 1 in closing:
            spans.append((token.start(), tokens[closing[i + 1]].end()))
    return spans


def _matching_braces(tokens: list[re.Match]) -> dict[int, int]:
    """Index of each opening brace token -> index of its closing one (unclosed ones left out)."""
    stack, pairs = [], {}
    for index, token in enumerate(tokens):
        if token.group() == "{":
            stack.append(index)
        elif token.group() == "}" and stack:
            pairs[stack.pop()] = index
    return pairs


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def prototxt_number(data: bytes, choices: Choices) -> bytes:
    """A number becomes 0, negative or huge (num_output, kernel_size, dim, pad, axis, ...)."""
    text = _text(data)
    numbers = [m for m in _tokens(text) if re.fullmatch(r"[-+]?[\d.][\deE.+-]*", m.group())]
    if not numbers:
        return data
    target = numbers[choices.integer(0, len(numbers) - 1)]
    return (text[:target.start()] + choices.pick(HOSTILE_NUMBERS) + text[target.end():]).encode()


def prototxt_delete_field(data: bytes, choices: Choices) -> bytes:
    text = _text(data)
    spans = _fields(_tokens(text))
    if not spans:
        return data
    start, end = spans[choices.integer(0, len(spans) - 1)]
    return (text[:start] + text[end:]).encode()


def prototxt_repeat_field(data: bytes, choices: Choices) -> bytes:
    text = _text(data)
    spans = _fields(_tokens(text))
    if not spans:
        return data
    start, end = spans[choices.integer(0, len(spans) - 1)]
    copies = choices.pick((1, 2, 5, 200))
    return (text[:end] + (" " + text[start:end]) * copies + text[end:]).encode()


def prototxt_unbalance(data: bytes, choices: Choices) -> bytes:
    """Insert or remove one brace."""
    text = _text(data)
    tokens = _tokens(text)
    if not tokens:
        return data
    token = tokens[choices.integer(0, len(tokens) - 1)]
    if token.group() in "{}" and choices.integer(0, 1):
        return (text[:token.start()] + text[token.end():]).encode()
    return (text[:token.start()] + choices.pick(("{", "}", "{ {", "} }")) + " " + text[token.start():]).encode()


def prototxt_deep_nesting(data: bytes, choices: Choices) -> bytes:
    """Open a message many levels deep (with or without closing it)."""
    text = _text(data)
    depth = choices.pick((40, 70, 1000, 100000))
    name = choices.pick(("layer", "convolution_param", "weight_filler", "input_param", "shape", "bogus"))
    closed = choices.integer(0, 1)
    tokens = _tokens(text)
    at = tokens[choices.integer(0, len(tokens) - 1)].start() if tokens else 0
    nested = f"{name} {{ " * depth + ("} " * depth if closed else "")
    return (text[:at] + nested + text[at:]).encode()


_ENUM_VALUES = ("MAX", "AVE", "STOCHASTIC", "TEST", "TRAIN", "FLOOR", "CEIL", "SUM", "PROD", "CAFFE", "CUDNN",
                "BOGUS", "99", "-1", "ACROSS_CHANNELS", "true", "false")


def prototxt_bad_enum(data: bytes, choices: Choices) -> bytes:
    """An enum (or bool) value becomes another type's value, an unknown name or a number out of range."""
    text = _text(data)
    tokens = _tokens(text)
    values = [tokens[i + 2] for i in range(len(tokens) - 2)
              if tokens[i + 1].group() == ":" and re.fullmatch(r"[A-Za-z_]\w*", tokens[i + 2].group())]
    if not values:
        return data
    target = values[choices.integer(0, len(values) - 1)]
    return (text[:target.start()] + choices.pick(_ENUM_VALUES) + text[target.end():]).encode()


def prototxt_dangling_blob(data: bytes, choices: Choices) -> bytes:
    """A bottom or top names a blob nothing produces (or the layer's own top, or an earlier one)."""
    text = _text(data)
    tokens = _tokens(text)
    sites = [tokens[i + 2] for i in range(len(tokens) - 2)
             if tokens[i].group() in ("bottom", "top", "input") and tokens[i + 1].group() == ":"
             and tokens[i + 2].group().startswith('"')]
    if not sites:
        return data
    target = sites[choices.integer(0, len(sites) - 1)]
    other = sites[choices.integer(0, len(sites) - 1)].group()
    replacement = choices.pick(('"nowhere"', other, '""', '"data"'))
    return (text[:target.start()] + replacement + text[target.end():]).encode()


_TYPES = ('"Convolution"', '"InnerProduct"', '"Pooling"', '"Input"', '"Python"', '"Reshape"', '"Concat"',
          '"Eltwise"', '"Slice"', '"Deconvolution"', '"BatchNorm"', '"Scale"', '"Crop"', '"Flatten"', '"Softmax"',
          '"PriorBox"', '"DetectionOutput"', '"Interp"', '"Permute"', '"Split"', '"Silence"', '"Data"', '""')


def prototxt_swap_type(data: bytes, choices: Choices) -> bytes:
    text = _text(data)
    tokens = _tokens(text)
    sites = [tokens[i + 2] for i in range(len(tokens) - 2)
             if tokens[i].group() == "type" and tokens[i + 1].group() == ":"]
    if not sites:
        return data
    target = sites[choices.integer(0, len(sites) - 1)]
    return (text[:target.start()] + choices.pick(_TYPES) + text[target.end():]).encode()


def prototxt_truncate(data: bytes, choices: Choices) -> bytes:
    return data[:choices.integer(0, len(data))]


def prototxt_move_layer(data: bytes, choices: Choices) -> bytes:
    """Move one field (a whole layer, say) to another place: blobs then come before their producers."""
    text = _text(data)
    spans = _fields(_tokens(text))
    if len(spans) < 2:
        return data
    start, end = spans[choices.integer(0, len(spans) - 1)]
    moved = text[start:end]
    rest = text[:start] + text[end:]
    at = choices.integer(0, len(rest))
    return (rest[:at] + " " + moved + " " + rest[at:]).encode()


PROTOTXT = (prototxt_number, prototxt_delete_field, prototxt_repeat_field, prototxt_unbalance, prototxt_deep_nesting,
            prototxt_bad_enum, prototxt_dangling_blob, prototxt_swap_type, prototxt_truncate, prototxt_move_layer)
#: The mutations that keep the text parseable more often than not: for the entry points past the parser.
PROTOTXT_MEANING = (prototxt_number, prototxt_number, prototxt_delete_field, prototxt_repeat_field,
                    prototxt_dangling_blob)


# ------------------------------------------------------------------ protobuf wire (caffemodel, binaryproto)


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        out.append(bits | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(buffer: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buffer) or shift > 63:
            raise ValueError("bad varint")
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


#: Which length-delimited fields are messages, by the message they sit in (caffe.proto numbering):
#: NetParameter.layer(100)/layers(2) -> LayerParameter / V1LayerParameter; their blobs (7 / 6) -> BlobProto;
#: V1's nested V0 layer (1) -> V0LayerParameter, whose blobs are 50; BlobProto.shape (7) -> BlobShape.
_MESSAGES = {
    "net": {100: "layer", 2: "v1layer"},
    "layer": {7: "blob"},
    "v1layer": {6: "blob", 1: "v0layer"},
    "v0layer": {50: "blob"},
    "blob": {7: "shape"},
    "shape": {},
}


class Field:
    """One field of a decoded protobuf message: number, wire type, and bytes or sub-fields."""

    def __init__(self, number: int, wire: int, value):
        self.number, self.wire, self.value = number, wire, value

    def encode(self) -> bytes:
        key = varint(self.number << 3 | self.wire)
        if self.wire == 0:
            return key + varint(self.value)
        if self.wire == 2:
            payload = encode_fields(self.value) if isinstance(self.value, list) else self.value
            return key + varint(len(payload)) + payload
        return key + self.value


def decode_fields(buffer: bytes, kind: str) -> list[Field]:
    """The fields of a message of ``kind``, sub-messages decoded; raises ValueError if it does not parse."""
    fields, pos = [], 0
    while pos < len(buffer):
        key, pos = _read_varint(buffer, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buffer, pos)
        elif wire == 2:
            length, pos = _read_varint(buffer, pos)
            if pos + length > len(buffer):
                raise ValueError("length past the end")
            value = buffer[pos:pos + length]
            pos += length
            inner = _MESSAGES[kind].get(number)
            if inner is not None:
                value = decode_fields(value, inner)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buffer[pos:pos + size], pos + size
        else:
            raise ValueError("unknown wire type")
        fields.append(Field(number, wire, value))
    return fields


def encode_fields(fields: list[Field]) -> bytes:
    return b"".join(f.encode() for f in fields)


def _messages(fields: list[Field], kind: str, wanted: str, found: list) -> list[list[Field]]:
    """Every sub-message of kind ``wanted`` (as its field list), depth first."""
    for field in fields:
        inner = _MESSAGES[kind].get(field.number)
        if inner is not None and isinstance(field.value, list):
            if inner == wanted:
                found.append(field.value)
            _messages(field.value, inner, wanted, found)
    return found


def _structured(mutate: Callable[[list[Field], str, Choices], None]):
    """A wire mutator that edits the decoded tree and re-encodes it, every enclosing length made consistent."""

    def mutator(data: bytes, choices: Choices, top: str = "net") -> bytes:
        try:
            fields = decode_fields(data, top)
        except ValueError:
            return data
        mutate(fields, top, choices)
        return encode_fields(fields)

    mutator.__name__ = mutate.__name__
    return mutator


@_structured
def wire_blob_dims(fields, top, choices):
    """A blob's shape (legacy num/channels/height/width or shape.dim) becomes 0, negative or huge."""
    blobs = [fields] if top == "blob" else _messages(fields, top, "blob", [])
    if not blobs:
        return
    blob = blobs[choices.integer(0, len(blobs) - 1)]
    shapes = [f for f in blob if f.number == 7 and isinstance(f.value, list)]
    legacy = [f for f in blob if f.number in (1, 2, 3, 4) and f.wire == 0]
    value = choices.pick(HOSTILE_INTS)
    if shapes and choices.integer(0, 1):
        shape = shapes[0].value
        dims = [f for f in shape if f.number == 1]
        if dims and dims[0].wire == 2:  # packed
            count = 0
            pos = 0
            values = []
            while pos < len(dims[0].value):
                v, pos = _read_varint(dims[0].value, pos)
                values.append(v)
            if values:
                values[choices.integer(0, len(values) - 1)] = value
                dims[0].value = b"".join(varint(v) for v in values)
                count += 1
        elif dims:
            dims[choices.integer(0, len(dims) - 1)].value = value & ((1 << 64) - 1)
        else:
            shape.append(Field(1, 0, value & ((1 << 64) - 1)))
    elif legacy:
        legacy[choices.integer(0, len(legacy) - 1)].value = value & ((1 << 64) - 1)
    else:
        blob.insert(0, Field(choices.integer(1, 4), 0, value & ((1 << 64) - 1)))


@_structured
def wire_blob_data(fields, top, choices):
    """A blob's data is cut, doubled, emptied, or turned into raw_data of an odd type."""
    blobs = [fields] if top == "blob" else _messages(fields, top, "blob", [])
    if not blobs:
        return
    blob = blobs[choices.integer(0, len(blobs) - 1)]
    data = [f for f in blob if f.number == 5 and f.wire == 2]
    if not data:
        return
    target = data[0]
    action = choices.pick(("cut", "double", "empty", "raw", "odd", "unpacked"))
    if action == "cut":
        target.value = target.value[:choices.integer(0, len(target.value))]
    elif action == "double":
        target.value = target.value * 2
    elif action == "empty":
        target.value = b""
    elif action == "raw":
        blob.remove(target)
        blob.append(Field(10, 0, choices.pick((0, 1, 2, 7, 2**32))))
        blob.append(Field(12, 2, target.value))
    elif action == "odd":
        target.value = target.value + b"\x01"
    else:  # the same floats, one field each (unpacked repeated float)
        index = blob.index(target)
        blob[index:index + 1] = [Field(5, 5, target.value[i:i + 4]) for i in range(0, len(target.value) // 4 * 4, 4)]


@_structured
def wire_drop_or_repeat(fields, top, choices):
    """A field disappears or repeats: a whole layer, a blob, a shape, a name."""
    kind = choices.pick(("layer", "v1layer", "blob", "shape"))
    owners = [fields] if top in ("blob",) and kind in ("blob", "shape") else _messages(fields, top, kind, [])
    pool = owners + [fields]
    owner = pool[choices.integer(0, len(pool) - 1)]
    if not owner:
        return
    index = choices.integer(0, len(owner) - 1)
    if choices.integer(0, 1):
        del owner[index]
    else:
        owner[index:index] = [owner[index]] * choices.pick((1, 3))


def wire_huge_length(data: bytes, choices: Choices) -> bytes:
    """A length prefix (of a layer, blob or data field) becomes a huge varint; nothing else changes."""
    sites = []
    try:
        _length_sites(data, 0, len(data), "net", sites, 0)
    except ValueError:
        pass
    if not sites:
        return data
    start, end = sites[choices.integer(0, len(sites) - 1)]
    return data[:start] + varint(choices.pick(HOSTILE_LENGTHS)) + data[end:]


def _length_sites(buffer: bytes, pos: int, end: int, kind: str, sites: list, depth: int) -> None:
    while pos < end:
        key, pos = _read_varint(buffer, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(buffer, pos)
        elif wire == 2:
            length_start = pos
            length, pos = _read_varint(buffer, pos)
            sites.append((length_start, pos))
            inner = _MESSAGES.get(kind, {}).get(number)
            if inner is not None and depth < 4:
                _length_sites(buffer, pos, min(pos + length, end), inner, sites, depth + 1)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError("unknown wire type")


def flip_bytes(data: bytes, choices: Choices) -> bytes:
    if not data:
        return data
    damaged = bytearray(data)
    for _ in range(choices.integer(1, 16)):
        damaged[choices.integer(0, len(damaged) - 1)] ^= choices.integer(1, 255)
    return bytes(damaged)


def truncate(data: bytes, choices: Choices) -> bytes:
    return data[:choices.integer(0, max(0, len(data) - 1))]


CAFFEMODEL = (wire_blob_dims, wire_blob_data, wire_drop_or_repeat, wire_huge_length, flip_bytes, truncate)
#: The mutations that re-encode a well-formed file (every length consistent).
CAFFEMODEL_MEANING = (wire_blob_dims, wire_blob_data, wire_drop_or_repeat)


def _as_blob(mutator):
    def blob_mutator(data: bytes, choices: Choices) -> bytes:
        return mutator(data, choices, top="blob")

    blob_mutator.__name__ = mutator.__name__
    return blob_mutator


BINARYPROTO = (_as_blob(wire_blob_dims), _as_blob(wire_blob_data), flip_bytes, truncate)


# ------------------------------------------------------------------ HDF5 (.caffemodel.h5, Keras .h5)


def _rewrite_h5(data: bytes, edit: Callable) -> bytes:
    """An HDF5 file changed in place by ``edit`` (h5py on a copy in memory); the bytes unchanged if h5py cannot open it."""
    import h5py

    buffer = io.BytesIO(data)
    try:
        with h5py.File(buffer, "r+") as handle:
            edit(handle)
    except (OSError, RuntimeError, KeyError, ValueError):
        return data  # a file an earlier mutation damaged: h5py cannot walk it to edit it
    return buffer.getvalue()


def _datasets(handle) -> list[str]:
    import h5py

    names = []
    handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


def _one_dataset(handle, choices: Choices) -> str | None:
    names = _datasets(handle)
    return names[choices.integer(0, len(names) - 1)] if names else None


ABSURD_SHAPES = ((100000, 100000), (2**31 - 1,), (0,), (2**40,), (3, 0, 5), ())


def h5_absurd_dataset(data: bytes, choices: Choices) -> bytes:
    """A stored array becomes an absurd shape that costs the file nothing: fill value, chunked, or gzip zeros."""
    import numpy as np

    def edit(handle):
        name = _one_dataset(handle, choices)
        if name is None:
            return
        parent = handle[name].parent
        leaf = name.rsplit("/", 1)[-1]
        del parent[leaf]
        shape = choices.pick(ABSURD_SHAPES)
        how = choices.pick(("fill", "chunked", "gzip", "strings", "float64"))
        if how == "strings":
            parent[leaf] = np.array([b"x"] * 3)
        elif how == "float64" and np.prod(shape, dtype=object) < 10**6:
            parent[leaf] = np.zeros(shape, np.float64)
        elif how == "gzip" and shape and 0 not in shape and np.prod(shape, dtype=object) < 10**13:
            parent.create_dataset(leaf, shape=shape, dtype="f4", chunks=tuple(min(d, 1024) or 1 for d in shape),
                                  compression="gzip")
        elif how == "chunked" and shape and 0 not in shape:
            parent.create_dataset(leaf, shape=shape, dtype="f4", chunks=tuple(min(d, 1024) for d in shape))
        else:
            try:
                parent.create_dataset(leaf, shape=shape, dtype="f4", fillvalue=1.0)
            except ValueError:  # h5py refuses this shape contiguous
                parent.create_dataset(leaf, shape=(100000, 100000), dtype="f4", fillvalue=1.0)

    return _rewrite_h5(data, edit)


def h5_drop_or_rename(data: bytes, choices: Choices) -> bytes:
    """A dataset or group disappears, or moves to a name its reader does not expect."""

    def edit(handle):
        name = _one_dataset(handle, choices)
        if name is None:
            return
        if choices.integer(0, 1):
            del handle[name]
        else:
            handle.move(name, name.rsplit("/", 1)[0] + "/" + choices.pick(("7", "x", "-1", "00")) if "/" in name
                        else choices.pick(("7", "x")))

    return _rewrite_h5(data, edit)


def h5_config(data: bytes, choices: Choices) -> bytes:
    """A Keras .h5 model's JSON architecture (the model_config attribute) is mutated as JSON."""

    def edit(handle):
        raw = handle.attrs.get("model_config")
        if raw is None:
            return
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        handle.attrs["model_config"] = mutate_json_text(text, choices)

    return _rewrite_h5(data, edit)


HDF5_CAFFE = (h5_absurd_dataset, h5_drop_or_rename, flip_bytes, truncate)
HDF5_KERAS = (h5_absurd_dataset, h5_drop_or_rename, h5_config, flip_bytes, truncate)


# ------------------------------------------------------------------ JSON (Keras configs)


def _json_sites(node, path=()):
    """(path, value) of every value in a parsed JSON tree."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _json_sites(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _json_sites(value, path + (index,))


def _replace(tree, path, value):
    if not path:
        return value
    parent = tree
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return tree


_JSON_VALUES = (0, -1, 2**31 - 1, 10**12, 1e309, -3.5, None, "", "Lambda", "__lambda__", "TorchModuleWrapper",
                "keras.layers", [], {}, [None], True)


def mutate_json_text(text: str, choices: Choices) -> str:
    """One structure-aware change to a JSON document, or broken JSON."""
    action = choices.pick(("value", "number", "delete", "repeat", "nest", "break"))
    if action == "break":
        cut = choices.integer(0, len(text))
        return text[:cut] + choices.pick(("", "}", "{", '"', "]]]", "\x00"))
    try:
        tree = json.loads(text)
    except ValueError:
        return text
    sites = list(_json_sites(tree))
    if action == "number":
        numbers = [s for s in sites if isinstance(s[1], (int, float)) and not isinstance(s[1], bool)]
        sites = numbers or sites
    path, value = sites[choices.integer(0, len(sites) - 1)]
    if action in ("value", "number"):
        tree = _replace(tree, path, choices.pick(_JSON_VALUES))
    elif action == "delete" and path:
        parent = tree
        for step in path[:-1]:
            parent = parent[step]
        del parent[path[-1]]
    elif action == "repeat" and isinstance(value, list) and value:
        value.extend([value[choices.integer(0, len(value) - 1)]] * choices.pick((1, 4)))
    elif action == "nest":
        depth = choices.pick((50, 70, 5000))
        tree = _replace(tree, path, json.loads("[" * depth + json.dumps(value) + "]" * depth))
    return json.dumps(tree)


# ------------------------------------------------------------------ .keras (zip)


def _members(data: bytes) -> dict[str, bytes] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return None


def _zip(members: dict[str, bytes], deflated: set[str] = frozenset()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content, zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED)
    return buffer.getvalue()


def keras_config(data: bytes, choices: Choices) -> bytes:
    """config.json mutated as JSON (an absurd width, a Lambda, deep nesting, a cut) or broken JSON."""
    members = _members(data)
    if members is None or "config.json" not in members:
        return data
    members["config.json"] = mutate_json_text(members["config.json"].decode("utf-8", "replace"), choices).encode()
    return _zip(members)


def keras_weights(data: bytes, choices: Choices) -> bytes:
    """The weights member goes missing, turns to garbage, is cut, or holds absurd arrays."""
    members = _members(data)
    if members is None or "model.weights.h5" not in members:
        return data
    action = choices.pick(("missing", "garbage", "cut", "absurd", "renamed"))
    weights = members.pop("model.weights.h5")
    if action == "garbage":
        members["model.weights.h5"] = bytes(choices.integer(0, 255) for _ in range(64)) * 16
    elif action == "cut":
        members["model.weights.h5"] = weights[:choices.integer(0, len(weights))]
    elif action == "absurd":
        members["model.weights.h5"] = h5_absurd_dataset(weights, choices)
    elif action == "renamed":
        members["weights.h5"] = weights
    return _zip(members)


#: Zeros that deflate about 1000 to 1: the zip bomb's payload (built once, 64 MiB when inflated).
_BOMB_BYTES = 64 << 20


def keras_zip_bomb(data: bytes, choices: Choices) -> bytes:
    """A member (a new one, the config or the weights) inflates to 64 MiB from a few kilobytes."""
    members = _members(data) or {}
    name = choices.pick(("bomb.bin", "config.json", "model.weights.h5", "assets/vocab.txt"))
    members[name] = bytes(_BOMB_BYTES)
    return _zip(members, deflated={name})


KERAS_ZIP = (keras_config, keras_weights, keras_zip_bomb, flip_bytes, truncate)
