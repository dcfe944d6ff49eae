"""Reading and writing Caffe weight files: binary ``.caffemodel`` and HDF5 ``.caffemodel.h5``.

A caffemodel is one ``NetParameter`` message whose layers carry their weights as
``blobs``. Caffe matches weights to the layers of the deploy net by layer name
(never by net name or position), so :class:`CaffeWeights` is a name-keyed map.

Blob payloads are streamed between the file and numpy with :mod:`keraffe.caffe.wire`;
protobuf only ever sees the small non-weight part of each layer. That keeps
memory near one copy of the weights and lifts Caffe's own 512 MB read limit.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from google.protobuf.message import DecodeError

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.wire import (
    MAX_MESSAGE_BYTES,
    WIRE_FIXED32,
    WIRE_LENGTH,
    WIRE_VARINT,
    StreamReader,
    encode_key,
    encode_length_delimited,
    encode_varint,
    iter_fields,
)
from keraffe.errors import CaffeFormatError
from keraffe.files import atomic_output
from keraffe.limits import check_elements, check_expansion, check_total, count

# Field numbers used by the streaming reader (see caffe.proto).
_NET_NAME = 1
_NET_V1_LAYERS = 2
_NET_LAYER = 100
_LAYER_BLOBS = 7
_V1_LAYER_BLOBS = 6
_V1_NESTED_V0 = 1
_V0_BLOBS = 50
_BLOB_LEGACY_DIMS = (1, 2, 3, 4)
_BLOB_DATA = 5
_BLOB_SHAPE = 7
_BLOB_DOUBLE_DATA = 8
_BLOB_RAW_TYPE = 10
_BLOB_RAW_DATA = 12

_RAW_DTYPES = {pb.FLOAT16: "<f2", pb.FLOAT: "<f4", pb.DOUBLE: "<f8"}


@dataclasses.dataclass
class Blob:
    """One weight array, with how its shape was stored.

    ``legacy`` blobs come from files that gave shapes as four numbers
    (num, channels, height, width); Caffe accepts them for any shape whose
    product matches after padding with leading ones, and so do we.
    """

    data: np.ndarray
    legacy: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


@dataclasses.dataclass
class LayerWeights:
    name: str
    type: str
    blobs: list[Blob]


@dataclasses.dataclass
class CaffeWeights:
    """Weights of a net, keyed by layer name in file order."""

    source: Path | None
    net_name: str
    layers: dict[str, LayerWeights]
    #: The layer definitions stored in the file (V2 form, blobs removed).
    net: pb.NetParameter

    def arrays(self) -> dict[str, list[np.ndarray]]:
        return {name: [blob.data for blob in layer.blobs] for name, layer in self.layers.items()}

    def blobs(self) -> dict[str, list[Blob]]:
        """The blobs with how their shapes were stored; write_caffemodel keeps legacy dims."""
        return {name: list(layer.blobs) for name, layer in self.layers.items()}


# ------------------------------------------------------------------ reading


def read_weights(path: str | os.PathLike) -> CaffeWeights:
    """Read a ``.caffemodel`` (binary, V0/V1/V2) or ``.caffemodel.h5`` (HDF5) file."""
    path = Path(path)
    if not path.is_file():
        raise CaffeFormatError(f"{path}: weights file not found")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return read_hdf5_weights(path)
    return read_caffemodel(path)


def read_caffemodel(path: str | os.PathLike) -> CaffeWeights:
    """Read a binary caffemodel, streaming the weights into float32 arrays."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise CaffeFormatError(f"{path}: the weights file is empty")
    with open(path, "rb") as handle:
        _refuse_text(path, handle)
        reader = StreamReader(handle, size)
        net_rest = bytearray()
        scanned: list[tuple[int, bytes, list[Blob]]] = []
        try:
            while reader.pos < size:
                key = reader.read_varint()
                field, wire_type = key >> 3, key & 7
                if field in (_NET_LAYER, _NET_V1_LAYERS) and wire_type == WIRE_LENGTH:
                    length = reader.read_varint()
                    end = reader.pos + length
                    _check_end(path, end, size)
                    if field == _NET_LAYER:
                        rest, blobs = _scan_message(reader, end, _LAYER_BLOBS, None)
                    else:
                        rest, blobs = _scan_message(reader, end, _V1_LAYER_BLOBS, _V1_NESTED_V0)
                    scanned.append((field, bytes(rest), blobs))
                else:
                    net_rest += encode_varint(key)
                    net_rest += _copy_value(reader, wire_type)
        except CaffeFormatError as error:
            raise CaffeFormatError(f"{path}: not a valid Caffe weights file ({error})") from None

    net = pb.NetParameter()
    try:
        net.ParseFromString(bytes(net_rest))
    except DecodeError as error:
        raise CaffeFormatError(f"{path}: not a valid Caffe weights file ({error})") from None
    try:
        return _assemble(path, net, scanned)
    except UnicodeDecodeError as error:
        # protobuf accepts any bytes in a proto2 string field, and fails only when it is read.
        raise CaffeFormatError(
            f"{path}: not a valid Caffe weights file (a name or text field is not UTF-8: {error.reason})"
        ) from None


def _assemble(path: Path, net: pb.NetParameter, scanned) -> CaffeWeights:
    """Parse the layers' non-blob bytes, upgrade them, and pair them with their blobs."""
    from keraffe.caffe.upgrade import upgrade_net

    names: list[str] = []
    blobs_in_order: list[list[Blob]] = []
    for field, rest, blobs in scanned:
        try:
            if field == _NET_LAYER:
                layer = net.layer.add()
                layer.ParseFromString(rest)
                names.append(layer.name)
            else:
                v1_layer = net.layers.add()
                v1_layer.ParseFromString(rest)
                names.append(v1_layer.name or v1_layer.layer.name)
        except DecodeError as error:
            raise CaffeFormatError(
                f"{path}: layer #{len(names)} is corrupt ({error})"
            ) from None
        blobs_in_order.append(blobs)
    if not scanned:
        raise CaffeFormatError(f"{path}: no layers found; is this a Caffe weights file?")

    blobs_by_name = dict(zip(names, blobs_in_order))
    upgraded, _ = upgrade_net(net, source=str(path))
    layers: dict[str, LayerWeights] = {}
    for layer in upgraded.layer:
        layers[layer.name] = LayerWeights(layer.name, layer.type, blobs_by_name.get(layer.name, []))
    return CaffeWeights(path, net.name, layers, upgraded)


def _refuse_text(path: Path, handle) -> None:
    head = handle.read(256)
    handle.seek(0)
    stripped = head.lstrip()
    if stripped[:1].isalpha() and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        raise CaffeFormatError(
            f"{path}: this looks like a prototxt text file, not binary weights; "
            "pass the .caffemodel file as weights"
        )


def _check_end(path: Path, end: int, size: int) -> None:
    if end > size:
        raise CaffeFormatError(f"file is truncated (a layer ends at byte {end}, the file has {size} bytes)")


def _copy_value(reader: StreamReader, wire_type: int) -> bytes:
    if wire_type == WIRE_VARINT:
        return encode_varint(reader.read_varint())
    if wire_type == WIRE_LENGTH:
        length = reader.read_varint()
        return encode_varint(length) + reader.read_bytes(length)
    if wire_type == WIRE_FIXED32:
        return reader.read_bytes(4)
    if wire_type == 1:
        return reader.read_bytes(8)
    raise CaffeFormatError(f"unsupported wire type {wire_type} at offset {reader.pos}")


def _scan_message(
    reader: StreamReader, end: int, blob_field: int, nested_field: int | None
) -> tuple[bytearray, list[Blob]]:
    """Split one layer message into its non-blob bytes and its decoded blobs."""
    rest = bytearray()
    blobs: list[Blob] = []
    name_field = {_LAYER_BLOBS: 1, _V1_LAYER_BLOBS: 4, _V0_BLOBS: 1}[blob_field]
    name = "?"
    while reader.pos < end:
        key = reader.read_varint()
        field, wire_type = key >> 3, key & 7
        if field == blob_field and wire_type == WIRE_LENGTH:
            length = _payload_length(reader, end, "layer")
            try:
                blobs.append(_read_blob(reader, reader.pos + length))
            except CaffeFormatError as error:
                raise CaffeFormatError(f"layer '{name}', blob {len(blobs)}: {error}") from None
        elif field == name_field and wire_type == WIRE_LENGTH:
            raw_name = reader.read_bytes(reader.read_varint())
            name = raw_name.decode("utf-8", "replace")
            rest += encode_length_delimited(field, len(raw_name)) + raw_name
        elif nested_field is not None and field == nested_field and wire_type == WIRE_LENGTH:
            length = _payload_length(reader, end, "layer")
            nested_rest, nested_blobs = _scan_message(reader, reader.pos + length, _V0_BLOBS, None)
            rest += encode_length_delimited(field, len(nested_rest)) + nested_rest
            blobs.extend(nested_blobs)
        else:
            rest += encode_varint(key)
            rest += _copy_value(reader, wire_type)
    if reader.pos != end:
        raise CaffeFormatError(f"a layer's fields overrun its length at offset {reader.pos}")
    return rest, blobs


def _payload_length(reader: StreamReader, end: int, parent: str = "blob") -> int:
    """Read a field's length prefix and check that the payload fits inside its parent message.

    Checked before anything is allocated: a corrupt length must be an error,
    not an attempt to allocate terabytes.
    """
    length = reader.read_varint()
    if reader.pos + length > end:
        raise CaffeFormatError(
            f"a field of {length} bytes at offset {reader.pos} runs past the end of its {parent} "
            f"(offset {end})"
        )
    return length


def _read_blob(reader: StreamReader, end: int) -> Blob:
    legacy_dims: dict[int, int] = {}
    shape: list[int] | None = None
    chunks: list[np.ndarray] = []
    double_chunks: list[np.ndarray] = []
    # One float per field (an unpacked repeated float): gathered as bytes, never as one object each.
    unpacked = bytearray()
    raw: bytes | None = None
    raw_type = pb.FLOAT
    while reader.pos < end:
        key = reader.read_varint()
        field, wire_type = key >> 3, key & 7
        if field in _BLOB_LEGACY_DIMS and wire_type == WIRE_VARINT:
            value = reader.read_varint()
            legacy_dims[field] = value - (1 << 64) if value >= 1 << 63 else value
        elif field == _BLOB_DATA and wire_type == WIRE_LENGTH:
            length = _payload_length(reader, end)
            if length % 4:
                raise CaffeFormatError(f"blob data of {length} bytes is not whole floats")
            array = np.empty(length // 4, dtype="<f4")
            reader.read_into(memoryview(array).cast("B"))
            chunks.append(array)
        elif field == _BLOB_DATA and wire_type == WIRE_FIXED32:
            unpacked += reader.read_bytes(4)
        elif field == _BLOB_DOUBLE_DATA and wire_type == WIRE_LENGTH:
            length = _payload_length(reader, end)
            if length % 8:
                raise CaffeFormatError(f"blob double_data of {length} bytes is not whole doubles")
            array = np.empty(length // 8, dtype="<f8")
            reader.read_into(memoryview(array).cast("B"))
            double_chunks.append(array)
        elif field == _BLOB_SHAPE and wire_type == WIRE_LENGTH:
            length = _payload_length(reader, end)
            message = pb.BlobShape()
            try:
                message.ParseFromString(reader.read_bytes(length))
            except DecodeError:
                raise CaffeFormatError(f"the blob's shape is corrupt (offset {reader.pos - length})") from None
            shape = [int(d) for d in message.dim]
        elif field == _BLOB_RAW_TYPE and wire_type == WIRE_VARINT:
            raw_type = reader.read_varint()
        elif field == _BLOB_RAW_DATA and wire_type == WIRE_LENGTH:
            raw = reader.read_bytes(_payload_length(reader, end))
        else:
            reader.skip_value(wire_type)
    if reader.pos != end:
        raise CaffeFormatError(f"a blob's fields overrun its length at offset {reader.pos}")

    if unpacked:
        chunks.append(np.frombuffer(bytes(unpacked), dtype="<f4"))
    if chunks:
        values = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    elif double_chunks:
        values = np.concatenate(double_chunks).astype(np.float32)
    elif raw is not None:
        if raw_type not in _RAW_DTYPES:
            raise CaffeFormatError(f"blob raw_data of type {raw_type} is not a float type")
        itemsize = np.dtype(_RAW_DTYPES[raw_type]).itemsize
        if len(raw) % itemsize:
            raise CaffeFormatError(f"blob raw_data of {len(raw)} bytes is not whole {itemsize}-byte values")
        values = np.frombuffer(raw, dtype=_RAW_DTYPES[raw_type]).astype(np.float32)
    else:
        values = np.empty(0, dtype=np.float32)

    legacy = bool(legacy_dims)
    if legacy:
        dims = [legacy_dims.get(i, 0) for i in _BLOB_LEGACY_DIMS]
    elif shape is not None:
        dims = shape
    elif values.size == 1:
        # Caffe writes a scalar blob (a shared PReLU slope) with no shape at all, and reads it as shape ().
        dims = []
    else:
        dims = [values.size] if values.size else [0]
    check_blob_shape(dims, values.size)
    return Blob(values.astype(np.float32, copy=False).reshape(dims), legacy=legacy)


def check_blob_shape(dims, held: int) -> None:
    """A blob's declared shape must have no negative axis and exactly as many values as it holds.

    Counted as an exact integer: numpy's product wraps around, and a shape
    whose product wraps to the number of values held would become an array
    with a shape no memory could hold.
    """
    if any(d < 0 for d in dims):
        raise CaffeFormatError(f"blob declares shape {tuple(dims)}, with a negative axis")
    expected = count(dims)
    if expected != held:
        raise CaffeFormatError(f"blob declares shape {tuple(dims)} ({expected} values) but holds {held} values")


def read_hdf5_weights(path: str | os.PathLike) -> CaffeWeights:
    """Read Caffe's HDF5 weight format: datasets ``data/<layer name>/<blob index>``."""
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise CaffeFormatError(f"{path}: cannot open as HDF5 ({error})") from None
    try:
        with handle:
            layers = _read_hdf5_layers(path, handle)
    except (OSError, RuntimeError, KeyError) as error:
        # h5py's answers to a damaged file: a corrupt object header, B-tree, chunk or link.
        raise CaffeFormatError(f"{path}: the HDF5 file is corrupt ({error})") from None
    if not layers:
        raise CaffeFormatError(f"{path}: no layer weights under the 'data' group")
    net = pb.NetParameter()
    for name in layers:
        net.layer.add(name=name)
    return CaffeWeights(path, "", layers, net)


def _read_hdf5_layers(path: Path, handle) -> dict[str, LayerWeights]:
    import h5py

    if "data" not in handle:
        raise CaffeFormatError(
            f"{path}: an HDF5 file without the 'data' group Caffe writes; "
            "is this a Keras .h5 file rather than Caffe weights?"
        )
    datasets: list[tuple[str, list]] = []

    def visit(name: str, group) -> None:
        if not isinstance(group, h5py.Group):
            return
        # A layer's group holds its blobs as datasets "0", "1", ...; it may also hold
        # the groups of layers named under it ("conv1" and "conv1/bn": Caffe makes
        # conv1/bn a subgroup of conv1), which are visited on their own.
        indices = sorted(int(k) for k, v in group.items() if k.isdigit() and isinstance(v, h5py.Dataset))
        if not indices:
            return
        if indices != list(range(len(indices))):
            raise CaffeFormatError(f"{path}: layer '{name}' has blobs numbered {indices}, not 0 to {len(indices) - 1}")
        datasets.append((name, [group[str(i)] for i in indices]))

    handle["data"].visititems(visit)
    # Every declared size is checked before the first array is read.
    total = sum(_check_hdf5_blob(path, name, i, dataset) for name, blobs in datasets for i, dataset in enumerate(blobs))
    check_total(f"{path}: the weights", total)
    return {name: LayerWeights(name, "", [Blob(np.asarray(d, dtype=np.float32)) for d in blobs])
            for name, blobs in datasets}


def _check_hdf5_blob(path: Path, name: str, index: int, dataset) -> int:
    """A stored blob's declared size against the cap and its stored bytes; returns its value count.

    An HDF5 dataset declares its shape apart from its data: a few bytes can
    declare a terabyte of fill value, or of compressed zeros.
    """
    what = f"{path}: layer '{name}' blob {index}"
    if dataset.dtype.kind not in "fiu" or dataset.shape is None:
        raise CaffeFormatError(f"{what} is not an array of numbers (HDF5 type {dataset.dtype})")
    values = check_elements(what, dataset.shape)
    check_expansion(what, dataset.id.get_storage_size(), values * dataset.dtype.itemsize)
    return values


# ------------------------------------------------------------------ writing


def _blob_parts(array: np.ndarray | Blob) -> tuple[bytes, memoryview, bytes]:
    """A BlobProto as (fields before the payload, float payload, fields after it).

    The payload is a view of the array's own memory (no copy when it already
    is contiguous little-endian float32), so writing a file never holds a
    second copy of the weights.

    A :class:`Blob` read from a legacy file keeps its legacy 4-D dims
    (num, channels, height, width): Caffe accepts those for any shape that
    matches after padding with leading ones, but compares a ``shape`` field
    exactly, so writing a legacy (1, 1, 1, N) bias as a shape would make the
    rewritten file one that Caffe refuses to load.
    """
    legacy = isinstance(array, Blob) and array.legacy and array.data.ndim == 4
    source = np.asarray(array.data if isinstance(array, Blob) else array)
    # ascontiguousarray makes a 0-d array 1-d; Caffe compares shapes exactly, and a shared PReLU
    # slope or a Scale with num_axes 0 holds a 0-axis blob.
    data = np.ascontiguousarray(source, dtype="<f4").reshape(source.shape)
    before = bytearray()
    if legacy:
        for field, dim in zip(_BLOB_LEGACY_DIMS, data.shape):
            before += encode_key(field, WIRE_VARINT) + encode_varint(int(dim))
    if data.size:
        before += encode_length_delimited(_BLOB_DATA, data.nbytes)
    payload = memoryview(data.reshape(-1)).cast("B") if data.size else memoryview(b"")
    if legacy:
        return bytes(before), payload, b""
    dims = b"".join(encode_varint(int(d)) for d in data.shape)
    shape = (encode_length_delimited(1, len(dims)) + dims) if dims else b""
    return bytes(before), payload, encode_length_delimited(_BLOB_SHAPE, len(shape)) + shape


def encode_blob(array: np.ndarray | Blob) -> bytes:
    """Encode a float array as a BlobProto, fields in protobuf's canonical order."""
    before, payload, after = _blob_parts(array)
    return before + payload.tobytes() + after


def _split_before(buffer: bytes, field_number: int) -> int:
    """Offset of the key of the first top-level field numbered above ``field_number``."""
    key_start = 0
    for field, _wire_type, _start, end, _value in iter_fields(buffer):
        if field > field_number:
            return key_start
        key_start = end
    return len(buffer)


def iter_caffemodel_chunks(
    net: pb.NetParameter, weights: Mapping[str, Sequence[np.ndarray | Blob]]
) -> tuple[int, Iterable[bytes | memoryview]]:
    """Serialise a net and its weights as a stream of chunks, with the total length.

    Each layer is written the way protobuf would write it (fields in number
    order, blobs at field 7), so Caffe and protobuf read the result as usual.
    """
    head = pb.NetParameter()
    head.CopyFrom(net)
    del head.layer[:]
    del head.layers[:]
    head_bytes = head.SerializeToString(deterministic=True)
    parts: list[tuple[bytes, list, bytes]] = []
    total = len(head_bytes)
    for layer in net.layer:
        bare = pb.LayerParameter()
        bare.CopyFrom(layer)
        del bare.blobs[:]
        layer_bytes = bare.SerializeToString(deterministic=True)
        cut = _split_before(layer_bytes, _LAYER_BLOBS)
        blob_entries = []
        for array in weights.get(layer.name, ()):
            before, payload, after = _blob_parts(array if isinstance(array, Blob) else np.asarray(array))
            length = len(before) + payload.nbytes + len(after)
            blob_entries.append((encode_length_delimited(_LAYER_BLOBS, length) + before, payload, after))
        body_length = len(layer_bytes) + sum(len(b) + p.nbytes + len(a) for b, p, a in blob_entries)
        prefix = encode_length_delimited(_NET_LAYER, body_length)
        parts.append((prefix + layer_bytes[:cut], blob_entries, layer_bytes[cut:]))
        total += len(prefix) + body_length
        if total > MAX_MESSAGE_BYTES:
            raise CaffeFormatError(
                "the net's weights exceed 2 GiB; a caffemodel is one protobuf message "
                "and protobuf cannot read messages of 2 GiB or more"
            )

    def chunks() -> Iterable[bytes | memoryview]:
        yield head_bytes
        for before, blob_entries, after in parts:
            yield before
            for entry in blob_entries:
                yield from entry
            yield after

    return total, chunks()


def write_caffemodel(
    path: str | os.PathLike, net: pb.NetParameter, weights: Mapping[str, Sequence[np.ndarray | Blob]]
) -> int:
    """Write ``net`` (V2 layers) with ``weights`` as a binary caffemodel; return its size.

    Layers without an entry in ``weights`` are written without blobs, as Caffe
    itself does for parameter-free layers. Weights may be arrays, or the
    :class:`Blob` objects of :meth:`CaffeWeights.blobs` to keep legacy 4-D
    dims as the source file had them. The write is atomic.
    """
    if len(net.layers):
        raise CaffeFormatError("write_caffemodel expects a V2 net; upgrade V1 layers first")
    unknown = sorted(set(weights) - {layer.name for layer in net.layer})
    if unknown:
        raise CaffeFormatError(f"weights given for layers the net does not have: {', '.join(unknown)}")
    total, chunks = iter_caffemodel_chunks(net, weights)
    with atomic_output(path) as handle:
        for chunk in chunks:
            handle.write(chunk)
    return total
