"""Weight arrays into and out of Keras variables with one copy, where Keras' default paths make two more.

VGG-16's fc6 kernel alone is 411 MB, so every transient copy of it shows in a
conversion's peak memory. Measured on TensorFlow (NumPy 2):

* creating a variable from a NumPy array holds two copies besides the array
  (the tensor conversion's and the variable's);
* Keras' .keras writer turns each variable into NumPy with ``np.array(variable)``,
  which reads the variable into a fresh array (one copy) and then copies that
  again, because Keras' ``__array__`` does not take NumPy 2's ``copy`` argument.

:func:`initial_value` makes the variable adopt one fresh, aligned copy of the
array; :func:`host_view` shows a variable to a writer without copying it.
Both only change how many copies exist on the way, never the values.
"""

from __future__ import annotations

import numpy as np

ALIGNMENT = 64
"""Bytes. TensorFlow's CPU kernels require buffers aligned to EIGEN_MAX_ALIGN_BYTES (64 on AVX-512 builds)."""


def aligned_copy(array: np.ndarray, dtype=None) -> np.ndarray:
    """A C-contiguous copy of ``array`` (cast to ``dtype``) whose data starts on an ALIGNMENT-byte boundary.

    NumPy's large allocations come from mmap with a 16-byte header, so they are
    never 64-byte aligned; TensorFlow aborts the process on an unaligned buffer.
    """
    array = np.asarray(array)
    dtype = np.dtype(dtype or array.dtype)
    nbytes = int(np.prod(array.shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    out = raw[start:start + nbytes].view(dtype).reshape(array.shape)
    np.copyto(out, array, casting="same_kind")
    return out


def initial_value(array: np.ndarray, dtype=None):
    """What an initialiser returns so that the new variable holds ``array`` at the cost of one copy.

    On TensorFlow the copy is handed to TensorFlow through DLPack, which wraps
    it without copying, and the variable adopts that buffer. The copy is never
    shared with the caller's array, so the variable and the caller's data stay
    independent. Other backends take the array as Keras would.
    """
    import keras

    if dtype is not None:
        dtype = keras.backend.standardize_dtype(dtype)
    wanted = np.dtype(dtype) if dtype is not None else np.asarray(array).dtype
    # NumPy's DLPack export takes only its own numeric types (not ml_dtypes' bfloat16): those go Keras' way.
    if keras.backend.backend() != "tensorflow" or np.size(array) == 0 or wanted.kind not in "fiu":
        return np.asarray(array, dtype=dtype)
    import tensorflow as tf

    return tf.experimental.dlpack.from_dlpack(aligned_copy(array, dtype).__dlpack__())


def host_view(variable, snapshot: bool = False):
    """A read-only NumPy array of a Keras variable's value, without a copy where the backend allows.

    Variables on the CPU are shown without a copy (one on an accelerator is
    copied to the host once). On TensorFlow and JAX the array is a snapshot: a
    later assignment gives the variable new memory. A PyTorch view follows the
    variable as it changes; ``snapshot=True`` copies it there, for callers that
    keep the array (bfloat16, which NumPy cannot view, is always copied).
    """
    import keras

    native = variable.value  # the backend's own variable or array
    backend = keras.backend.backend()
    if backend == "tensorflow":
        view = np.asarray(native.read_value())  # a read aliases the variable's buffer; np.asarray keeps it
    elif backend == "torch":
        import torch

        if native.dtype == torch.bfloat16:
            view = keras.ops.convert_to_numpy(variable)
        else:
            view = native.detach().cpu().numpy()
            if snapshot:
                view = view.copy()
    else:
        view = np.asarray(native)
    view.flags.writeable = False
    return view


def weight_array(variable) -> np.ndarray:
    """A layer's weight as a read-only float32 NumPy snapshot; a float32 variable is shown, not copied, where it can be.

    Keras -> Caffe converters only reorder weights into Caffe's layout (one
    copy, where the order changes) before writing them; Keras' own NumPy
    conversion would add two more of each. Read only, so a converter can never
    write into the model it converts.
    """
    import keras

    array = host_view(variable, snapshot=True) if isinstance(variable, keras.Variable) else np.asarray(variable)
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    array.flags.writeable = False
    return array
