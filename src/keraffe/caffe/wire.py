"""The few pieces of protobuf's wire format that keraffe handles by hand.

Weight files are almost entirely packed float arrays. Letting protobuf parse
them builds a second copy of every weight inside the message, then numpy makes
a third. Reading and writing the blob payloads ourselves streams them straight
between the file and numpy arrays, so a 553 MB VGG-16 file needs about 553 MB
of memory, and files over Caffe's own 512 MB reading limit work up to
protobuf's 2 GB message limit.
"""

from __future__ import annotations

from typing import BinaryIO

from keraffe.errors import CaffeFormatError

WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_LENGTH = 2
WIRE_FIXED32 = 5

#: protobuf refuses messages of 2 GiB and more.
MAX_MESSAGE_BYTES = 2**31 - 1


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer as a base-128 varint."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def encode_key(field: int, wire_type: int) -> bytes:
    return encode_varint((field << 3) | wire_type)


def encode_length_delimited(field: int, payload_length: int) -> bytes:
    """Key and length prefix of a length-delimited field (payload follows)."""
    return encode_key(field, WIRE_LENGTH) + encode_varint(payload_length)


def decode_varint(buffer: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a varint in ``buffer`` at ``pos``; return (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buffer):
            raise CaffeFormatError("truncated varint")
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CaffeFormatError("varint longer than 10 bytes")


def iter_fields(buffer: bytes | memoryview, start: int = 0, end: int | None = None):
    """Yield (field number, wire type, value start, value end, varint value) in a buffer.

    For length-delimited fields the value span is the payload; for varints the
    decoded number is the last item; fixed-width fields give their byte span.
    """
    end = len(buffer) if end is None else end
    pos = start
    while pos < end:
        key, pos = decode_varint(buffer, pos)
        field, wire_type = key >> 3, key & 7
        if field == 0:
            raise CaffeFormatError("field number 0 is invalid")
        if wire_type == WIRE_VARINT:
            value, next_pos = decode_varint(buffer, pos)
            yield field, wire_type, pos, next_pos, value
        elif wire_type == WIRE_LENGTH:
            length, pos = decode_varint(buffer, pos)
            next_pos = pos + length
            yield field, wire_type, pos, next_pos, None
        elif wire_type == WIRE_FIXED32:
            next_pos = pos + 4
            yield field, wire_type, pos, next_pos, None
        elif wire_type == WIRE_FIXED64:
            next_pos = pos + 8
            yield field, wire_type, pos, next_pos, None
        else:
            raise CaffeFormatError(f"unsupported wire type {wire_type} for field {field}")
        if next_pos > end:
            raise CaffeFormatError(f"field {field} runs past the end of its message")
        pos = next_pos


class StreamReader:
    """Sequential reader over a binary file that knows varints and skips cheaply."""

    def __init__(self, handle: BinaryIO, size: int):
        self.handle = handle
        self.size = size
        self.pos = handle.tell()

    def read_varint(self) -> int:
        result = 0
        shift = 0
        while True:
            byte = self.handle.read(1)
            if not byte:
                raise CaffeFormatError("file ends in the middle of a varint")
            self.pos += 1
            value = byte[0]
            result |= (value & 0x7F) << shift
            if not value & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise CaffeFormatError("varint longer than 10 bytes")

    def read_bytes(self, count: int) -> bytes:
        if self.pos + count > self.size:
            raise CaffeFormatError(
                f"file is truncated: a field needs {count} bytes at offset {self.pos}, "
                f"but the file has {self.size} bytes"
            )
        data = self.handle.read(count)
        self.pos += count
        return data

    def read_into(self, target: memoryview) -> None:
        count = target.nbytes
        if self.pos + count > self.size:
            raise CaffeFormatError(
                f"file is truncated: a blob needs {count} bytes at offset {self.pos}, "
                f"but the file has {self.size} bytes"
            )
        got = self.handle.readinto(target)
        if got != count:
            raise CaffeFormatError(f"file is truncated at offset {self.pos + (got or 0)}")
        self.pos += count

    def skip(self, count: int) -> None:
        if self.pos + count > self.size:
            raise CaffeFormatError(
                f"file is truncated: a field of {count} bytes at offset {self.pos} "
                f"runs past the end ({self.size} bytes)"
            )
        self.handle.seek(count, 1)
        self.pos += count

    def skip_value(self, wire_type: int) -> None:
        if wire_type == WIRE_VARINT:
            self.read_varint()
        elif wire_type == WIRE_LENGTH:
            self.skip(self.read_varint())
        elif wire_type == WIRE_FIXED32:
            self.skip(4)
        elif wire_type == WIRE_FIXED64:
            self.skip(8)
        else:
            raise CaffeFormatError(f"unsupported wire type {wire_type} at offset {self.pos}")
