"""Reading a net written against a Caffe fork's own schema (``--caffe-proto FORK.proto``).

keraffe's caffe.proto carries the fields of the forks in the wild, but not of
every fork there is. A user with a fork's ``caffe.proto`` can have the net read
with it: the prototxt is parsed by the fork's schema (so every field the fork
knows parses, with the fork's defaults), then moved field by field, by name,
into keraffe's schema. Field numbers play no part, so forks that put a field
on another number (MobileNet-YOLO's reorg_param is 149, keraffe's 159) read the
same. What keraffe's schema lacks is kept aside per layer
(:attr:`ForkRead.foreign`): a converter refuses a layer that carries such a
field, since keraffe cannot know what it changes, and lists them all at once.

Where the fork gives a field another default than keraffe does (SSD-style
Upsample's ``scale`` is 1 in MobileNet-YOLO, 2 in keraffe), the fork's default
is written out explicitly, so the net means what it meant in its fork.

The .proto file is read by a small proto2 parser here (messages, nested
messages and enums, fields with labels, defaults and options, oneofs; options,
imports of google/protobuf files, reserved ranges and extensions are skipped),
so no protoc is needed. Weight files need no fork schema: keraffe reads only a
layer's name, type and blobs from them, whose numbers every fork shares.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.descriptor import FieldDescriptor

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.errors import CaffeFormatError

_SCALARS = {
    "double": FieldDescriptor.TYPE_DOUBLE, "float": FieldDescriptor.TYPE_FLOAT,
    "int32": FieldDescriptor.TYPE_INT32, "int64": FieldDescriptor.TYPE_INT64,
    "uint32": FieldDescriptor.TYPE_UINT32, "uint64": FieldDescriptor.TYPE_UINT64,
    "sint32": FieldDescriptor.TYPE_SINT32, "sint64": FieldDescriptor.TYPE_SINT64,
    "fixed32": FieldDescriptor.TYPE_FIXED32, "fixed64": FieldDescriptor.TYPE_FIXED64,
    "sfixed32": FieldDescriptor.TYPE_SFIXED32, "sfixed64": FieldDescriptor.TYPE_SFIXED64,
    "bool": FieldDescriptor.TYPE_BOOL, "string": FieldDescriptor.TYPE_STRING, "bytes": FieldDescriptor.TYPE_BYTES,
}
_LABELS = {"optional": FieldDescriptor.LABEL_OPTIONAL, "required": FieldDescriptor.LABEL_REQUIRED,
           "repeated": FieldDescriptor.LABEL_REPEATED}
_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[A-Za-z_][\w.]*|'
                    r'[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|\S', re.S)


class _Parser:
    """proto2 text -> FileDescriptorProto, for the subset Caffe schemas use."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.tokens: list[tuple[str, int]] = []
        line = 1
        for match in _TOKEN.finditer(text):
            token = match.group(0)
            if not (token.isspace() or token.startswith("//") or token.startswith("/*")):
                self.tokens.append((token, line))
            line += token.count("\n")
        self.pos = 0

    # -------------------------------------------------------------- tokens

    def _peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def _next(self) -> str:
        if self.pos >= len(self.tokens):
            raise self._error("unexpected end of file")
        token = self.tokens[self.pos][0]
        self.pos += 1
        return token

    def _expect(self, wanted: str) -> None:
        token = self._next()
        if token != wanted:
            self.pos -= 1
            raise self._error(f"expected '{wanted}', found '{token}'")

    def _error(self, message: str) -> CaffeFormatError:
        line = self.tokens[min(self.pos, len(self.tokens) - 1)][1] if self.tokens else 1
        return CaffeFormatError(f"{self.source}:{line}: {message} (keraffe reads proto2 Caffe schemas)")

    def _skip_statement(self) -> None:
        """Skip to the end of a statement or a braced block (options, reserved, extensions, services)."""
        depth = 0
        while True:
            token = self._next()
            if token == "{":
                depth += 1
            elif token == "}":
                depth -= 1
                if depth == 0:
                    return
            elif token == ";" and depth == 0:
                return

    # -------------------------------------------------------------- grammar

    def parse(self) -> descriptor_pb2.FileDescriptorProto:
        result = descriptor_pb2.FileDescriptorProto(name=Path(self.source).name, syntax="proto2")
        while self._peek() is not None:
            token = self._next()
            if token == "syntax":
                self._expect("=")
                syntax = self._next().strip("\"'")
                if syntax != "proto2":
                    raise self._error(f"syntax {syntax!r}: Caffe schemas are proto2")
                self._expect(";")
            elif token == "package":
                result.package = self._next()
                self._expect(";")
            elif token == "message":
                self._message(result.message_type.add())
            elif token == "enum":
                self._enum(result.enum_type.add())
            elif token in ("import", "option", "service", "extend"):
                self._skip_statement()
            elif token == ";":
                continue
            else:
                self.pos -= 1
                raise self._error(f"unexpected '{token}'")
        return result

    def _message(self, message: descriptor_pb2.DescriptorProto) -> None:
        message.name = self._next()
        self._expect("{")
        self._body(message, oneof_index=None)

    def _members(self):
        """The first token of each statement of a braced block, up to its closing brace (empty statements skipped)."""
        while True:
            token = self._next()
            if token == "}":
                return
            if token != ";":
                yield token

    def _body(self, message, oneof_index) -> None:
        for token in self._members():
            if token == "message":
                self._message(message.nested_type.add())
            elif token == "enum":
                self._enum(message.enum_type.add())
            elif token == "oneof":
                index = len(message.oneof_decl)
                message.oneof_decl.add(name=self._next())
                self._expect("{")
                self._body(message, oneof_index=index)
            elif token in ("option", "reserved", "extensions", "extend"):
                self._skip_statement()
            else:
                self.pos -= 1
                self._field(message, oneof_index)

    def _field(self, message, oneof_index) -> None:
        token = self._next()
        label = _LABELS.get(token)
        if label is None:
            label = FieldDescriptor.LABEL_OPTIONAL
            self.pos -= 1
        type_name = self._next()
        if type_name in ("group", "map") or type_name.startswith("map<"):
            raise self._error(f"'{type_name}' fields are not supported")
        field = message.field.add(name=self._next(), label=label)
        self._expect("=")
        field.number = int(self._next())
        if type_name in _SCALARS:
            field.type = _SCALARS[type_name]
        else:
            field.type_name = type_name  # resolved once every name is known
        if oneof_index is not None:
            field.oneof_index = oneof_index
        if self._peek() == "[":
            self._next()
            while True:
                name = self._next()
                if name == "(":  # a custom option: (name).sub = value
                    while self._next() != ")":
                        pass
                    name = "custom"
                    while self._peek() not in ("=",):
                        self._next()
                self._expect("=")
                value = self._value()
                if name == "default":
                    field.default_value = value
                elif name == "packed":
                    field.options.packed = value == "true"
                separator = self._next()
                if separator == "]":
                    break
                if separator != ",":
                    raise self._error(f"expected ',' or ']' in field options, found '{separator}'")
        self._expect(";")

    def _value(self) -> str:
        token = self._next()
        if token in ("-", "+"):
            token = ("-" if token == "-" else "") + self._next()
        if token[:1] in "\"'":
            return text_format_unescape(token[1:-1])
        return token

    def _enum(self, enum: descriptor_pb2.EnumDescriptorProto) -> None:
        enum.name = self._next()
        self._expect("{")
        for token in self._members():
            if token in ("option", "reserved"):
                self._skip_statement()
                continue
            value = enum.value.add(name=token)
            self._expect("=")
            number = self._next()
            if number == "-":
                number = "-" + self._next()
            value.number = int(number, 0)
            if self._peek() == "[":
                while self._next() != "]":
                    pass
            self._expect(";")


def text_format_unescape(text: str) -> str:
    return bytes(text, "utf-8").decode("unicode_escape")


def _resolve(file: descriptor_pb2.FileDescriptorProto, source: str) -> None:
    """Give every message- or enum-typed field its fully qualified type and kind, as protoc does."""
    kinds: dict[str, int] = {}
    package = f".{file.package}" if file.package else ""

    def collect(scope: str, messages, enums) -> None:
        for enum in enums:
            kinds[f"{scope}.{enum.name}"] = FieldDescriptor.TYPE_ENUM
        for message in messages:
            name = f"{scope}.{message.name}"
            kinds[name] = FieldDescriptor.TYPE_MESSAGE
            collect(name, message.nested_type, message.enum_type)

    collect(package, file.message_type, file.enum_type)

    def resolve(scope: str, messages) -> None:
        for message in messages:
            inner = f"{scope}.{message.name}"
            for field in message.field:
                if not field.type_name:
                    continue
                wanted = field.type_name
                if wanted.startswith("."):
                    candidates = [wanted]
                else:
                    parts = inner.split(".")
                    candidates = [".".join(parts[:i] + [wanted]) for i in range(len(parts), 0, -1)]
                    candidates = [c if c.startswith(".") else "." + c for c in candidates]
                found = next((c for c in candidates if c in kinds), None)
                if found is None:
                    raise CaffeFormatError(f"{source}: field {message.name}.{field.name} has type '{wanted}', "
                                           "which the file does not define")
                field.type_name = found
                field.type = kinds[found]
            resolve(inner, message.nested_type)

    resolve(package, file.message_type)


@dataclasses.dataclass
class ForkSchema:
    """A fork's caffe.proto, built into its own descriptor pool (so it never clashes with keraffe's)."""

    source: str
    net_class: type


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> ForkSchema:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CaffeFormatError(f"{path}: cannot read the Caffe schema ({error})") from None
    file = _Parser(text, path).parse()
    _resolve(file, path)
    pool = descriptor_pool.DescriptorPool()
    try:
        pool.Add(file)
    except (TypeError, ValueError) as error:
        raise CaffeFormatError(f"{path}: not a schema protobuf accepts: {error}") from None
    package = f"{file.package}." if file.package else ""
    try:
        descriptor = pool.FindMessageTypeByName(f"{package}NetParameter")
    except KeyError:
        raise CaffeFormatError(f"{path}: the schema defines no NetParameter message; is it a Caffe caffe.proto?") \
            from None
    if hasattr(message_factory, "GetMessageClass"):
        net_class = message_factory.GetMessageClass(descriptor)
    else:  # protobuf < 4.22
        net_class = message_factory.MessageFactory(pool).GetPrototype(descriptor)
    return ForkSchema(path, net_class)


def load_fork_schema(path: str | os.PathLike) -> ForkSchema:
    """Read a fork's caffe.proto (cached while the file is unchanged)."""
    path = Path(path)
    if not path.is_file():
        raise CaffeFormatError(f"{path}: Caffe schema (.proto) not found")
    return _load(str(path.resolve()), path.stat().st_mtime)


@dataclasses.dataclass
class ForkRead:
    """A net read with a fork's schema: in keraffe's schema, and what keraffe's schema lacks."""

    net: pb.NetParameter
    #: Layer name -> the fields (dotted paths) the fork has and keraffe's schema does not.
    foreign: dict[str, list[str]]


def parse_with_schema(text: str, source: str, schema: ForkSchema) -> ForkRead:
    """Parse prototxt text with the fork's schema and move it, by field name, into keraffe's."""
    fork_net = schema.net_class()
    try:
        text_format.Parse(text, fork_net)
    except text_format.ParseError as error:
        message = re.sub(r"^\d+:\d+\s*:\s*", "", str(error))
        raise CaffeFormatError(f"{source}:{error.GetLine()}:{error.GetColumn()}: {message} "
                               f"(read with {schema.source})") from None
    net = pb.NetParameter()
    foreign: dict[str, list[str]] = {}
    lost: list[str] = []
    for field, value in fork_net.ListFields():
        if field.name in ("layer", "layers"):
            continue
        _copy_field(field, value, net, field.name, lost)
    for kind in ("layer", "layers"):
        if kind not in fork_net.DESCRIPTOR.fields_by_name:
            continue
        for fork_layer in getattr(fork_net, kind):
            layer = getattr(net, kind).add()
            missing: list[str] = []
            _copy_message(fork_layer, layer, "", missing)
            if missing:
                foreign.setdefault(layer.name or f"#{len(getattr(net, kind))}", []).extend(missing)
    if lost:
        foreign.setdefault("", []).extend(lost)
    return ForkRead(net, foreign)


def _copy_message(source, target, path: str, missing: list[str]) -> None:
    for field, value in source.ListFields():
        _copy_field(field, value, target, path + field.name, missing)
    _write_fork_defaults(source, target)


def _copy_field(field, value, target, path: str, missing: list[str]) -> None:
    mine = target.DESCRIPTOR.fields_by_name.get(field.name)
    if mine is None or not _compatible(field, mine):
        missing.append(path)
        return
    repeated = _repeated(field)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if repeated:
            for item in value:
                _copy_message(item, getattr(target, mine.name).add(), f"{path}.", missing)
        else:
            _copy_message(value, getattr(target, mine.name), f"{path}.", missing)
        return
    values = list(value) if repeated else [value]
    if field.type == FieldDescriptor.TYPE_ENUM:
        converted = []
        for number in values:
            name = field.enum_type.values_by_number[number].name if number in field.enum_type.values_by_number \
                else None
            mine_value = mine.enum_type.values_by_name.get(name) if name else None
            if mine_value is None:
                missing.append(f"{path}: {name or number}")
                return
            converted.append(mine_value.number)
        values = converted
    try:
        if repeated:
            getattr(target, mine.name).extend(values)
        else:
            setattr(target, mine.name, values[0])
    except (TypeError, ValueError):
        missing.append(path)


def _repeated(field) -> bool:
    # protobuf 7 dropped FieldDescriptor.label for is_repeated; older releases have only label.
    repeated = getattr(field, "is_repeated", None)
    return bool(repeated) if repeated is not None else field.label == FieldDescriptor.LABEL_REPEATED


_NUMBERS = {FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT32,
            FieldDescriptor.CPPTYPE_UINT64}
_FLOATS = {FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE}


def _compatible(theirs, mine) -> bool:
    if _repeated(theirs) != _repeated(mine):
        return False
    if theirs.cpp_type == mine.cpp_type:
        return True
    # An integer field read into a float one (or a wider integer) keeps its value.
    return theirs.cpp_type in _NUMBERS and (mine.cpp_type in _NUMBERS or mine.cpp_type in _FLOATS)


def _write_fork_defaults(source, target) -> None:
    """Fields the fork leaves unset but defaults differently from keraffe: the fork's default, written out."""
    for field in source.DESCRIPTOR.fields:
        if _repeated(field) or field.type == FieldDescriptor.TYPE_MESSAGE:
            continue
        if source.HasField(field.name):
            continue
        mine = target.DESCRIPTOR.fields_by_name.get(field.name)
        if mine is None or not _compatible(field, mine) or target.HasField(mine.name):
            continue
        theirs = getattr(source, field.name)
        if field.type == FieldDescriptor.TYPE_ENUM:
            name = field.enum_type.values_by_number.get(theirs)
            wanted = mine.enum_type.values_by_name.get(name.name) if name else None
            if wanted is None or wanted.number == mine.default_value:
                continue
            setattr(target, mine.name, wanted.number)
        elif theirs != mine.default_value:
            try:
                setattr(target, mine.name, theirs)
            except (TypeError, ValueError):
                continue
