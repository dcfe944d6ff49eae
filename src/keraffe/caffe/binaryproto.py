"""Mean files: a single BlobProto in binary form (``mean.binaryproto``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from keraffe.caffe.caffemodel import check_blob_shape
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.errors import CaffeFormatError


def blob_to_array(blob: pb.BlobProto) -> np.ndarray:
    """A BlobProto's values in its declared shape (legacy 4-D dims or ``shape``)."""
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    elif blob.HasField("shape"):
        shape = tuple(blob.shape.dim)
    else:
        shape = None
    if len(blob.data):
        values = np.asarray(blob.data, dtype=np.float32)
    elif len(blob.double_data):
        values = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    elif blob.raw_data:
        dtypes = {pb.FLOAT16: "<f2", pb.FLOAT: "<f4", pb.DOUBLE: "<f8"}
        if blob.raw_data_type not in dtypes:
            raise CaffeFormatError(f"raw_data of type {blob.raw_data_type} is not a float type")
        values = np.frombuffer(blob.raw_data, dtype=dtypes[blob.raw_data_type]).astype(np.float32)
    else:
        values = np.empty(0, dtype=np.float32)
    if shape is None:
        shape = values.shape
    check_blob_shape(shape, values.size)
    return values.reshape(shape)


def read_mean(path: str | os.PathLike) -> np.ndarray:
    """Read a mean ``.binaryproto`` as a float32 array in Caffe's (N, C, H, W) order."""
    path = Path(path)
    if not path.is_file():
        raise CaffeFormatError(f"{path}: mean file not found")
    blob = pb.BlobProto()
    try:
        blob.ParseFromString(path.read_bytes())
    except DecodeError as error:
        raise CaffeFormatError(f"{path}: not a binaryproto blob ({error})") from None
    try:
        return blob_to_array(blob)
    except CaffeFormatError as error:
        raise CaffeFormatError(f"{path}: {error}") from None
