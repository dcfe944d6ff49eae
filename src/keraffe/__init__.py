"""keraffe: exact Keras 3 <-> Caffe conversion, and pruning for Keras 3 models.

Importing keraffe imports no Keras and no backend, and sets no environment
variable: Keras loads, on the backend the user chose (``KERAS_BACKEND``), when a
function here first needs it. keraffe's Keras layers are registered the moment
Keras loads (at once if it already has), so models that use them load with
``keras.saving.load_model(path)`` (safe_mode on) after ``import keraffe``.
"""

from __future__ import annotations

import os

from keraffe.errors import KeraffeError
from keraffe.keras_io import register_layers_when_keras_loads

# keraffe.verify names both a subpackage and the function below. Importing a subpackage sets the
# parent's attribute of its name, so it is imported here first (it loads no Keras): the function,
# defined after it, then stays keraffe.verify however often the subpackage is used later.
from keraffe import verify as _verify_subpackage  # noqa: E402  isort: skip

del _verify_subpackage

register_layers_when_keras_loads()

__version__ = "0.1.0"


def caffe_to_keras(prototxt, caffemodel=None, input_shape=None, phase: str = "TEST", stages=(), max_elements=None,
                   caffe_proto=None):
    """Convert a Caffe net (and its weights) into a Keras 3 model that computes the same thing.

    ``input_shape`` gives the input's (N, C, H, W), or a dict of them by input
    name; train/val nets need it. Without ``caffemodel`` the model keeps Keras'
    own initialisation. The returned model carries ``keraffe_tensor_map``, the
    record of which Keras tensor holds which Caffe blob in which layout.
    ``max_elements`` sets the cap on the values of any one declared blob and of
    all weights (keraffe.limits; default 2**28): larger nets are refused before
    anything is allocated.
    ``caffe_proto`` is the caffe.proto of the fork the net was written for
    (keraffe.caffe.fork_schema).
    """
    from keraffe.caffe.net import load_net
    from keraffe.convert.caffe_to_keras import check_supported, convert_net

    net = load_net(prototxt, caffemodel, input_shape, phase=phase, stages=stages, check_types=check_supported,
                   max_elements=max_elements, caffe_proto=caffe_proto)
    model, tensor_map = convert_net(net, release_weights=True)
    model.keraffe_tensor_map = tensor_map
    return model


def keras_to_caffe(model_or_path, prototxt, caffemodel=None, target: str = "caffe1", input_shape=None,
                   max_elements=None):
    """Convert a Keras model into a Caffe prototxt and caffemodel that compute exactly the same thing.

    ``target`` is "caffe1" (Caffe 1.0 layer types only, the default), "caffe"
    (BVLC master), "opencv" (OpenCV 4.x DNN), or an NPU toolchain: "nnie",
    "ascend" or "rknn" (the result is fitted to it by exact rewrites and
    checked; the check is ``export.target_check``, see docs/targets.md). ``input_shape`` is Caffe's
    (N, C, H, W) for models whose input size is open. The caffemodel goes next
    to the prototxt unless given, and the tensor map (which Keras tensor holds
    which blob, for ``verify``) beside it as NET.keraffe.json. Returns the
    CaffeExport (net, weights, tensor map and the legalisation report of layers
    that did not map one to one). ``max_elements`` is the cap for reading a
    model file (see caffe_to_keras).
    """
    from keraffe.convert.keras_to_caffe import export_files, with_input_shape
    from keraffe.keras_io import load_keras_model

    source = None
    if isinstance(model_or_path, (str, os.PathLike)):
        source = model_or_path
        model = load_keras_model(model_or_path, max_elements=max_elements)
    else:
        model = model_or_path
    batch = 1
    if input_shape is not None:
        model, batch = with_input_shape(model, input_shape)
    return export_files(model, prototxt, caffemodel, target, batch_size=batch, source=source)


def register_keras_layer(layer, handler=None):
    """Convert Keras layer class ``layer`` (or its registered name) to Caffe with ``handler(ctx, layer, call)``.

    Only a layer whose ``call`` cannot be inlined needs one (composite layers
    convert without); see docs/keras_to_caffe.md. Usable as a decorator.
    """
    from keraffe.convert.keras_to_caffe import register_keras_layer as register

    return register(layer, handler)


def verify(model, prototxt, weights=None, inputs=None, per_layer=False, runtime="caffe", tolerance=1e-4,
           input_shape=None, max_elements=None, caffe_proto=None):
    """Run a Keras model and a Caffe net on the same input and compare them (see keraffe.verify).

    ``max_elements`` is the cap for reading the files (see caffe_to_keras); ``caffe_proto`` the fork's schema.
    """
    from keraffe.caffe.net import load_net
    from keraffe.keras_io import load_keras_model
    from keraffe.verify import read_inputs, verify as run_verify

    if isinstance(model, (str, os.PathLike)):
        model = load_keras_model(model, max_elements=max_elements)
    net = load_net(prototxt, weights, input_shape, max_elements=max_elements, caffe_proto=caffe_proto)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = read_inputs(inputs, net)
    return run_verify(model, net, inputs, per_layer=per_layer, runtime=runtime, tolerance=tolerance)


def register_caffe_layer(type_name=None, *, python_layer=None, output_shapes=None, weight_shapes=None):
    """Teach Caffe -> Keras a layer type of your own, or a Python layer by module and class (a decorator).

    See keraffe.convert.caffe_to_keras.plugins.register_caffe_layer and docs/caffe_plugins.md.
    """
    from keraffe.convert.caffe_to_keras.plugins import register_caffe_layer as register

    return register(type_name, python_layer=python_layer, output_shapes=output_shapes, weight_shapes=weight_shapes)


__all__ = ["KeraffeError", "caffe_to_keras", "keras_to_caffe", "register_caffe_layer", "register_keras_layer", "verify"]
