"""The one place that knows how Caffe's NCHW and Keras' NHWC relate.

Every tensor that crosses between the two frameworks carries a :class:`Layout`:
the permutation that takes the Caffe blob's axes to the Keras tensor's axes
(``keras_array = caffe_array.transpose(layout.perm)``). Rank-4 image blobs use
:data:`NHWC`; other blobs keep Caffe's order. A rank-2 blob made by flattening
an NHWC tensor has the same values as Caffe's blob in another order; its layout
records the (C, H, W) shape it came from so the order can be mapped exactly.

Converters and the verifier use only these functions to move arrays, axes and
weights between the two orders; nothing else in keraffe transposes for layout.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Caffe (N, C, H, W) -> Keras (N, H, W, C).
NHWC_PERM = (0, 2, 3, 1)


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a Keras tensor's axes relate to its Caffe blob's axes."""

    #: Keras axis i holds Caffe axis perm[i].
    perm: tuple[int, ...]
    #: Set when the tensor is a (N, H*W*C) flattening of an NHWC tensor whose
    #: Caffe blob is the (N, C*H*W) flattening of (N, C, H, W): the (C, H, W).
    flattened_from: tuple[int, int, int] | None = None
    #: SSD detections: Keras holds (batch, rows, 7) padded with -1 rows; Caffe
    #: holds (1, 1, n, 7), the valid rows of every image one after another (or,
    #: when no image has any, one [image, -1, ...] row per image).
    detections: bool = False

    @property
    def rank(self) -> int:
        return len(self.perm)

    @property
    def is_identity(self) -> bool:
        return self.perm == tuple(range(len(self.perm))) and self.flattened_from is None

    def keras_axis(self, caffe_axis: int) -> int:
        """The Keras axis that holds a Caffe axis (negative Caffe axes count from the end)."""
        if self.flattened_from is not None and caffe_axis % 2 == 1:
            raise ValueError("the flattened axis of an NHWC flattening has no single Caffe meaning")
        return self.perm.index(caffe_axis % self.rank)

    def keras_shape(self, caffe_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(caffe_shape[a] for a in self.perm)

    def caffe_shape(self, keras_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The Caffe blob's shape for a Keras tensor of ``keras_shape`` (batch axis included)."""
        if self.flattened_from is not None:
            return (keras_shape[0], int(np.prod(self.flattened_from)))
        shape = [0] * len(keras_shape)
        for keras_axis, caffe_axis in enumerate(self.perm):
            shape[caffe_axis] = keras_shape[keras_axis]
        return tuple(shape)

    def axes_to_keras(self, caffe_array: np.ndarray) -> np.ndarray:
        """An array over the Caffe blob's axes, its axes moved into the Keras tensor's order (no flattening)."""
        return np.transpose(caffe_array, self.perm)

    def axes_to_caffe(self, keras_array: np.ndarray) -> np.ndarray:
        """An array over the Keras tensor's axes, its axes moved into the Caffe blob's order (no flattening)."""
        return np.transpose(keras_array, np.argsort(self.perm))

    def to_keras(self, caffe_array: np.ndarray) -> np.ndarray:
        """A Caffe blob's values in the Keras tensor's order."""
        if self.detections:
            raise ValueError("Caffe's detection rows cannot be laid out as the padded Keras tensor")
        if self.flattened_from is not None:
            n = caffe_array.shape[0]
            c, h, w = self.flattened_from
            return caffe_array.reshape(n, c, h, w).transpose(0, 2, 3, 1).reshape(n, -1)
        return self.axes_to_keras(caffe_array)

    def to_caffe(self, keras_array: np.ndarray) -> np.ndarray:
        """A Keras tensor's values in the Caffe blob's order."""
        if self.detections:
            valid = [detections[detections[:, 0] >= 0] for detections in keras_array]
            if any(len(rows) for rows in valid):
                return np.concatenate(valid)[None, None]
            # Only when no image has a detection does Caffe write one [image, -1, ...] row per image.
            empty = [[image] + [-1.0] * 6 for image in range(len(keras_array))]
            return np.asarray(empty, dtype=keras_array.dtype).reshape(-1, 7)[None, None]
        if self.flattened_from is not None:
            n = keras_array.shape[0]
            c, h, w = self.flattened_from
            return keras_array.reshape(n, h, w, c).transpose(0, 3, 1, 2).reshape(n, -1)
        return self.axes_to_caffe(keras_array)

    def describe(self) -> str:
        if self.detections:
            return "detections (batch, rows, 7), -1 padded"
        if self.flattened_from is not None:
            return "flattened NHWC of (C,H,W)=" + "x".join(str(d) for d in self.flattened_from)
        if self.perm == NHWC_PERM:
            return "NHWC"
        if self.is_identity:
            return "caffe order"
        return "axes " + ",".join(str(a) for a in self.perm)

    def to_json(self) -> dict:
        return {"perm": list(self.perm), "flattened_from": list(self.flattened_from) if self.flattened_from else None,
                "detections": self.detections}

    @classmethod
    def from_json(cls, data: dict) -> "Layout":
        flat = data.get("flattened_from")
        return cls(tuple(data["perm"]), tuple(flat) if flat else None, bool(data.get("detections", False)))


def identity(rank: int) -> Layout:
    return Layout(tuple(range(rank)))


NHWC = Layout(NHWC_PERM)
#: Caffe (N, C, L) -> Keras (N, L, C): sequences of models with Conv1D.
NLC = Layout((0, 2, 1))
#: Caffe (N, C, D, H, W) -> Keras (N, D, H, W, C): volumes, channels first in Caffe as images are.
NDHWC = Layout((0, 2, 3, 4, 1))


def time_major(rank: int) -> Layout:
    """Caffe's recurrent blobs are time-major, (T, N, ...); Keras' are batch-first, (N, T, ...).

    LSTM and RNN read x as (T, N, ...) and cont as (T, N), and write (T, N, H)
    (their exposed states are (1, N, H)). The Keras tensor puts the batch axis
    first, as Keras' own recurrent layers and every Keras user expect, and
    keeps the other axes in Caffe's order.
    """
    return Layout((1, 0) + tuple(range(2, rank)))


def batch_first(layout: Layout) -> Layout:
    """The layout that keeps ``layout``'s Keras batch axis first and every other axis in Caffe's order.

    For an ordinary blob (the batch is Caffe's axis 0) that is Caffe's own
    order; for a time-major one, :func:`time_major`. Keras cannot move its
    batch axis, so this is the Caffe-like order a handler can ask for.
    """
    batch = layout.perm[0]
    return Layout((batch,) + tuple(a for a in range(layout.rank) if a != batch))


def default_layout(rank: int) -> Layout:
    """Rank-4 blobs are images (NCHW in Caffe, NHWC in Keras); others keep Caffe's order."""
    return NHWC if rank == 4 else identity(rank)


#: Layout of keraffe's DetectionOutput tensor.
DETECTIONS = Layout((0, 1, 2), detections=True)

#: Region proposals (Faster R-CNN's rois): Caffe holds (R, 5) rows [image, x1, y1, x2, y2], R known only after
#: the forward pass. Keras holds a fixed number of rows per image, each image's proposals first and the rest
#: rows of -1 (the DETECTIONS convention), in Caffe's axis order. Every blob computed row by row from them
#: (ROI pooling, the classifier after it) has one row per proposal row, padding included; the tensor map
#: records which proposals select its rows (MapEntry.rows_of), and :func:`proposal_rows` says which are real.
PROPOSALS = identity(2)


def proposal_rows(proposals: np.ndarray) -> np.ndarray:
    """Which rows of keraffe's proposals tensor hold a proposal (the others are -1 padding)."""
    return np.asarray(proposals)[:, 0] >= 0


def flattened_nhwc(chw: tuple[int, int, int]) -> Layout:
    return Layout((0, 1), tuple(int(d) for d in chw))


def without_axes(layout: Layout, keras_axes) -> Layout:
    """The layout after the Keras axes ``keras_axes`` (and the blob axes that hold them) are dropped."""
    dropped = {layout.perm[a] for a in keras_axes}
    kept = [layout.perm[a] for a in range(layout.rank) if a not in set(keras_axes)]
    return Layout(tuple(c - sum(1 for d in dropped if d < c) for c in kept))


def with_unit_axis(layout: Layout, keras_axis: int) -> Layout:
    """The layout after a size-1 Keras axis is inserted at ``keras_axis``, held as a new last axis of the blob."""
    perm = list(layout.perm)
    perm.insert(keras_axis, layout.rank)
    return Layout(tuple(perm))


def transposed(layout: Layout, keras_axes) -> Layout:
    """The layout of ``transpose(tensor, keras_axes)``, the blob unchanged: only the record of its axes moves."""
    return Layout(tuple(layout.perm[a] for a in keras_axes))


def relative_perm(source: Layout, target: Layout) -> tuple[int, ...]:
    """Keras-side permutation turning a tensor in ``source`` layout into ``target`` layout."""
    return tuple(source.perm.index(a) for a in target.perm)


def caffe_permute_order(source: Layout, target: Layout) -> tuple[int, ...]:
    """Caffe Permute order (top axis j is bottom axis order[j]) moving a blob from ``source`` to ``target``.

    Both layouts describe the same Keras tensor; the blob holds its values in
    ``source``'s Caffe order and must hold them in ``target``'s.
    """
    return tuple(source.perm[target.perm.index(j)] for j in range(len(source.perm)))


# ------------------------------------------------------------------ weights


def conv_kernel_to_keras(weight: np.ndarray) -> np.ndarray:
    """Caffe convolution weights (O, I/g, kH, kW) -> Keras Conv2D kernel (kH, kW, I/g, O)."""
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def conv_kernel_to_caffe(kernel: np.ndarray) -> np.ndarray:
    """Keras Conv2D kernel (kH, kW, I/g, O) -> Caffe weights (O, I/g, kH, kW)."""
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def conv3d_kernel_to_caffe(kernel: np.ndarray) -> np.ndarray:
    """Keras Conv3D kernel (kD, kH, kW, I/g, O) -> Caffe N-D convolution weights (O, I/g, kD, kH, kW)."""
    return np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2))


def depthwise_kernel_to_keras(weight: np.ndarray, channels: int) -> np.ndarray:
    """Caffe depthwise weights (C*M, 1, kH, kW) -> Keras DepthwiseConv2D kernel (kH, kW, C, M).

    Caffe's output channel c*M + m reads input channel c, as Keras' does.
    """
    out, _, kh, kw = weight.shape
    multiplier = out // channels
    return np.ascontiguousarray(weight.reshape(channels, multiplier, kh, kw).transpose(2, 3, 0, 1))


def depthwise_kernel_to_caffe(kernel: np.ndarray) -> np.ndarray:
    """Keras DepthwiseConv2D kernel (kH, kW, C, M) -> Caffe grouped weights (C*M, 1, kH, kW)."""
    kh, kw, channels, multiplier = kernel.shape
    return np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw))


def deconv_kernel_to_keras(weight: np.ndarray) -> np.ndarray:
    """Caffe deconvolution weights (I, O/g, kH, kW) -> Keras Conv2DTranspose kernel (kH, kW, O/g, I).

    Keras' transposed convolution correlates with the kernel flipped, as Caffe's
    col2im does, so only the axes move.
    """
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def deconv_kernel_to_caffe(kernel: np.ndarray) -> np.ndarray:
    """Keras Conv2DTranspose kernel (kH, kW, O, I) -> Caffe deconvolution weights (I, O, kH, kW)."""
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def dense_rows_caffe_to_keras(kernel: np.ndarray, layout: Layout, caffe_tail: tuple[int, ...]) -> np.ndarray:
    """Reorder (K, N) Dense kernel rows from Caffe's flatten order to the Keras tensor's flatten order.

    ``layout`` is the input's layout and ``caffe_tail`` its Caffe shape after
    the batch axis. Reshaped output-major, the kernel is a free view of Caffe's
    (N, K) array, and the reorder makes the only copy; VGG-16's fc6 is 411 MB,
    so a second one shows in peak memory.
    """
    outputs = kernel.shape[1]
    if layout.flattened_from is not None:
        c, h, w = layout.flattened_from
        blocks, keras_order = kernel.T.reshape(outputs, c, h, w), [2, 3, 1, 0]
    else:
        blocks = kernel.T.reshape((outputs,) + tuple(caffe_tail))
        keras_order = list(layout.perm[1:]) + [0]
    return np.ascontiguousarray(blocks.transpose(keras_order).reshape(-1, outputs))


def conv1d_kernel_to_caffe(kernel: np.ndarray) -> np.ndarray:
    """Keras Conv1D kernel (k, C/g, O) -> Caffe weights (O, C/g, k, 1) of the (k x 1) convolution it becomes."""
    return np.ascontiguousarray(kernel.transpose(2, 1, 0)[..., None])


def dense_rows_nhwc_to_nchw(kernel: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Reorder Dense kernel rows from Keras' (H, W, C) flatten order to Caffe's (C, H, W) order."""
    c, h, w = chw
    out = kernel.shape[1]
    return np.ascontiguousarray(kernel.reshape(h, w, c, out).transpose(2, 0, 1, 3).reshape(c * h * w, out))
