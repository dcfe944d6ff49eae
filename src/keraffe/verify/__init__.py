"""Check that a Keras model and a Caffe net compute the same thing, tensor by tensor.

:func:`verify` runs both on the same input through an independent Caffe
runtime (real Caffe, or OpenCV DNN) and compares every output, and with
``per_layer`` every blob that has a Keras counterpart. Values are moved between
NCHW and NHWC by the layout recorded at conversion (the tensor map), never by
trying permutations until something matches.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from keraffe.errors import KeraffeError
from keraffe.keras_graph import operations_by_name, output_of
from keraffe.limits import read_numpy
from keraffe.verify.report import TensorComparison, VerifyReport, compare

RUNTIMES = ("caffe", "opencv")

#: Layer kinds neither runtime has: verify leaves them (and what follows them) out of the reference run and
#: names them in the report. keraffe's tests judge them against NumPy ports of their sources instead.
NO_RUNTIME = {
    "YoloDetectionOutput": "MobileNet-YOLO's layer; neither brocolli-caffe nor OpenCV has it",
    "Yolov3DetectionOutput": "MobileNet-YOLO's layer; neither brocolli-caffe nor OpenCV has it",
}


def judged_part(net):
    """(net without the layers no runtime has and those that depend on them, {left-out tensor: why})."""
    import dataclasses

    unjudged: dict[str, str] = {}
    kept = []
    for node in net.layers:
        reason = NO_RUNTIME.get(node.kind)
        if reason is None and any(str(t) in unjudged for t in node.inputs):
            reason = "computed from a tensor no runtime judges"
        if reason is None:
            kept.append(node)
            continue
        for tensor in node.outputs:
            unjudged[str(tensor)] = f"{node.type} '{node.name}': {reason}"
    if not unjudged:
        return net, {}
    outputs = [t for t in net.outputs if str(t) not in unjudged]
    return dataclasses.replace(net, layers=kept, outputs=outputs), unjudged
#: Caffe's ReadProtoFromBinaryFile sets protobuf's total-bytes limit to 512 MiB.
CAFFE_READ_LIMIT = 536870912


def seeded_inputs(net, seed: int = 0) -> dict[str, np.ndarray]:
    """One seeded standard-normal array per net input, in Caffe's NCHW shapes."""
    rng = np.random.default_rng(seed)
    return {str(t): rng.standard_normal(net.shapes[t]).astype(np.float32) for t in net.inputs}


def read_inputs(path: str | os.PathLike, net) -> dict[str, np.ndarray]:
    """Inputs from a file: .npy (the net's only input), .npz (by input name) or an image.

    Arrays are in Caffe's NCHW order and must have the net's input shapes. An
    image is resized to the input's H x W and given as B, G, R channels in
    0..255 (OpenCV's order, which Caffe nets are trained on), with no mean removed.
    """
    path = Path(path)
    if not path.is_file():
        raise KeraffeError(f"{path}: input file not found")
    names = [str(t) for t in net.inputs]
    shapes = {str(t): net.shapes[t] for t in net.inputs}
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if len(names) != 1:
            raise KeraffeError(f"{path}: the net has {len(names)} inputs; give them as an .npz keyed by input name")
        arrays = {names[0]: read_numpy(path, str(path))}
    elif suffix == ".npz":
        arrays = read_numpy(path, str(path))
        if not isinstance(arrays, dict):
            raise KeraffeError(f"{path}: an .npy file, not an .npz archive of arrays by input name")
    else:
        from keraffe.layout import NHWC
        from keraffe.verify.opencv_runtime import import_cv2

        cv2 = import_cv2()  # reading images is OpenCV's job; .npy and .npz inputs need no OpenCV

        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise KeraffeError(f"{path}: not an .npy, .npz or image file keraffe can read")
        if len(names) != 1:
            raise KeraffeError(f"{path}: an image feeds a net with one input; this net has {len(names)}")
        n, c, h, w = shapes[names[0]]
        image = cv2.resize(image, (w, h)).astype(np.float32)
        image = image[:, :, None] if image.ndim == 2 else image
        if image.shape[2] != c:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None] if c == 1 else image[:, :, :c]
        arrays = {names[0]: np.repeat(NHWC.to_caffe(image[None]), n, axis=0)}
    unknown = sorted(set(arrays) - set(names))
    missing = sorted(set(names) - set(arrays))
    if unknown or missing:
        raise KeraffeError(f"{path}: inputs {unknown or missing} do not match the net's inputs {names}")
    for name, array in arrays.items():
        if tuple(array.shape) != tuple(shapes[name]):
            raise KeraffeError(
                f"{path}: input '{name}' has shape {tuple(array.shape)}; the net needs {tuple(shapes[name])} "
                "(Caffe's N, C, H, W order)"
            )
    return {name: np.asarray(array, dtype=np.float32) for name, array in arrays.items()}


def tensor_map_for(model, net):
    """The tensor map relating ``model`` to ``net``: recorded at conversion, or derived once.

    A model converted in this process carries its map; a net keraffe wrote
    from a Keras model has it in a file beside the prototxt
    (:func:`keraffe.convert.tensor_map.recorded_map_path`). Otherwise
    keraffe's conversions are deterministic, so the map of converting the net
    to Keras (or the model to Caffe, for the target the prototxt names) is
    used if its names agree with the model's.
    """
    from keraffe.convert.tensor_map import read_recorded_map

    recorded = getattr(model, "keraffe_tensor_map", None)
    if recorded is not None:
        return recorded
    layer_names = set(operations_by_name(model))
    recorded = read_recorded_map(net.source)
    if recorded is not None and all(e.keras_layer in layer_names for e in recorded.materialised()):
        return recorded
    from keraffe.convert.caffe_to_keras import convert_net

    try:
        _, planned = convert_net(net)
    except KeraffeError:
        planned = None
    if planned is not None and all(e.keras_layer in layer_names for e in planned.materialised()):
        return planned
    planned = _map_of_export(model, net)
    if planned is not None:
        return planned
    raise KeraffeError(
        f"cannot relate the Keras model '{model.name}' to {net.source}: the layer names do not match a keraffe "
        "conversion in either direction"
    )


def _map_of_export(model, net):
    """The tensor map of converting ``model`` to Caffe once, for the target the prototxt's header names."""
    from keraffe.convert.keras_to_caffe import convert_model
    from keraffe.convert.tensor_map import exported_target

    try:
        export = convert_model(model, exported_target(net.source) or "caffe1")
    except KeraffeError:
        return None
    tops = {t.blob for node in net.layers for t in node.outputs}
    if all(e.caffe_blob in tops for e in export.tensor_map.entries.values()):
        return export.tensor_map
    return None


def _keras_tensor(model, entry, operations=None):
    operations = operations if operations is not None else operations_by_name(model)
    if entry.keras_layer not in operations:
        raise KeraffeError(f"the Keras model has no layer '{entry.keras_layer}' (Caffe tensor {entry.caffe_tensor})")
    return output_of(operations[entry.keras_layer], entry.keras_node, entry.keras_output)


def run_reference(net, inputs: Mapping[str, np.ndarray], blobs: Sequence[str], runtime: str) -> dict[str, np.ndarray]:
    """Run the net in real Caffe or OpenCV from files keraffe writes (a deploy prototxt and caffemodel)."""
    from keraffe.caffe.caffemodel import write_caffemodel
    from keraffe.caffe.prototxt import Dialect, write_prototxt
    from keraffe.passes.bvlc_spelling import bvlc_spelling
    from keraffe.verify.opencv_runtime import OPENCV_WRONG

    if runtime not in RUNTIMES:
        raise KeraffeError(f"runtime must be one of {', '.join(RUNTIMES)}, received {runtime!r}")
    with tempfile.TemporaryDirectory(prefix="keraffe-verify-") as tmp:
        prototxt = Path(tmp, "net.prototxt")
        caffemodel = Path(tmp, "net.caffemodel")
        deploy, weights = bvlc_spelling(net, runtime)
        # A Parameter layer the net is fed through (keraffe.caffe.net) takes its input as its blob.
        parameters = {str(node.outputs[0]): node.name for node in net.layers
                      if node.type == "Parameter" and str(node.outputs[0]) in inputs}
        for tensor, layer in parameters.items():
            weights[layer] = [np.asarray(inputs[tensor], np.float32)]
        inputs = {name: value for name, value in inputs.items() if name not in parameters}
        if runtime == "opencv":
            wrong = sorted({layer.type for layer in deploy.layer} & set(OPENCV_WRONG))
            if wrong:
                raise KeraffeError("OpenCV DNN cannot judge this net: " +
                                   "; ".join(f"its {t} {OPENCV_WRONG[t]}" for t in wrong))
            # OpenCV computes an activation in place over its input when nothing else reads that
            # input, even if the input was asked for; one more reader keeps every asked-for blob.
            kept = [b for b in dict.fromkeys(blobs) if b not in inputs]
            # OpenCV fails on a net input nothing reads (a spelling may drop the one reader it had).
            read = {bottom for layer in deploy.layer for bottom in layer.bottom}
            kept += [name for name in inputs if name not in read]
            if kept:
                keeper = deploy.layer.add(name="keraffe_keep_blobs", type="Silence")
                keeper.bottom.extend(kept)
        write_prototxt(prototxt, deploy, Dialect.FORK)
        write_caffemodel(caffemodel, deploy, weights)
        if runtime == "caffe":
            from keraffe.verify.caffe_runtime import pycaffe_available, run_pycaffe

            if not pycaffe_available():
                raise KeraffeError("real Caffe is not built (run `make pycaffe`); or use --runtime opencv")
            if caffemodel.stat().st_size > CAFFE_READ_LIMIT:
                # Caffe's reader refuses weight files over 512 MiB (a protobuf limit it sets itself);
                # the same arrays go into its parameter blobs through pycaffe instead.
                return run_pycaffe(prototxt, None, inputs, list(blobs), weights=weights)
            return run_pycaffe(prototxt, caffemodel, inputs, list(blobs))
        from keraffe.verify.opencv_runtime import opencv_layer_name, run_opencv

        named = {layer.name: opencv_layer_name(layer) for layer in deploy.layer}
        producers = {}
        for node in net.layers:
            for index, tensor in enumerate(node.outputs):
                producers[tensor.blob] = (named.get(node.name, node.name), index)
        # OpenCV keeps net inputs outside its layer list: they are what we fed.
        computed = [b for b in blobs if b not in inputs]
        layers = list(dict.fromkeys(producers[b][0] for b in computed))
        results = run_opencv(prototxt, caffemodel, inputs, layers, fusion=False) if layers else {}
        return {blob: inputs[blob] if blob in inputs else results[producers[blob][0]][producers[blob][1]]
                for blob in blobs}


def verify(model, net, inputs: Mapping[str, np.ndarray] | None = None, per_layer: bool = False,
           runtime: str = "caffe", tolerance: float = 1e-4, tensor_map=None) -> VerifyReport:
    """Compare ``model`` (a keras.Model) with ``net`` (a loaded CaffeNet with weights).

    Returns a :class:`VerifyReport`; its ``ok`` says whether every output is
    within ``tolerance`` (max abs error over max |reference|). Layers no
    runtime has (:data:`NO_RUNTIME`) and what follows them are left out of the
    run and listed in the report's ``unjudged`` (``ok`` speaks for the
    compared outputs only, and the rendered report says what was left out).
    Blobs with a row per region proposal are compared on the real proposals'
    rows (keraffe.layout.PROPOSALS).
    """
    import keras

    fed = set(net.inputs)
    if not net.has_weights and any(n.shapes is not None and n.shapes.params and not set(n.outputs) <= fed
                                   for n in net.layers):
        raise KeraffeError(f"{net.source}: verify needs the Caffe net's weights (--weights)")
    tmap = tensor_map or tensor_map_for(model, net)
    inputs = {str(k): v for k, v in inputs.items()} if inputs is not None else seeded_inputs(net)
    entries = {e.caffe_tensor: e for e in tmap.entries.values()}
    net, unjudged = judged_part(net)
    final = {}
    for node in net.layers:
        for tensor in node.outputs:
            final[tensor.blob] = tensor
    outputs = [name for name in tmap.outputs if name not in unjudged]
    chosen = list(outputs)
    if per_layer:
        # A layer inside a nested model has no tensor in the outer model's graph; the nested
        # model's own output (a top-level layer) stands for it.
        top_level = {operation.name for operation in getattr(model, "operations", model.layers)}
        for node in net.layers:
            for tensor in node.outputs:
                name = str(tensor)
                entry = entries.get(name)
                if (final[tensor.blob] == tensor and entry is not None and entry.keras_layer in top_level
                        and name not in chosen):
                    chosen.append(name)
    order = {str(t): i for i, t in enumerate(t for n in net.layers for t in n.outputs)}
    chosen.sort(key=lambda name: (name not in outputs, order.get(name, 0)))
    missing = [name for name in chosen if name not in entries or entries[name].keras_layer is None]
    if missing:
        raise KeraffeError(f"no Keras tensor holds Caffe tensor(s) {', '.join(missing)}")

    blobs = [entries[name].caffe_blob for name in chosen]
    reference = run_reference(net, inputs, blobs, runtime)
    operations = operations_by_name(model)
    # Blobs with a row per region proposal need the proposals, to know which of their rows are real.
    fetched = chosen + [source for source in dict.fromkeys(entries[name].rows_of for name in chosen)
                        if source and source not in chosen]
    feature_model = keras.Model(model.inputs, [_keras_tensor(model, entries[name], operations) for name in fetched])
    keras_inputs = [entries[name].layout.to_keras(inputs[name]) for name in tmap.inputs]
    values = dict(zip(fetched, run_model(feature_model, keras_inputs)))
    comparisons = []
    for name in chosen:
        entry = entries[name]
        reference_value = reference[entry.caffe_blob]
        if entry.rows_of:
            candidate, reference_value = _real_rows(entry, values, reference_value)
        else:
            candidate = entry.layout.to_caffe(values[name])
        comparisons.append(compare(name, entry.keras_layer, reference_value, candidate, tolerance))
    output_rows = [c for c in comparisons if c.caffe_tensor in outputs]
    layer_rows = sorted(comparisons, key=lambda c: order.get(c.caffe_tensor, 0)) if per_layer else []
    return VerifyReport(runtime, tolerance, output_rows, layer_rows, unjudged)


def _real_rows(entry, values, reference_value):
    """(Keras rows, reference rows) to compare for a blob with a row per region proposal.

    keraffe keeps only the real proposals' rows (keraffe.layout.PROPOSALS).
    Real Caffe's blobs hold those rows only; OpenCV's Proposal always writes
    post_nms_topn rows, zeros after the real ones, and computes on from them.
    So a reference with more rows than keraffe has real proposals must hold
    zeros there in the proposals themselves, and is cut to keraffe's rows in
    the blobs computed from them.
    """
    from keraffe.layout import proposal_rows

    real = proposal_rows(values[entry.rows_of])
    candidate = entry.layout.to_caffe(values[entry.caffe_tensor][real])
    extra = reference_value.shape[0] - candidate.shape[0] if reference_value.ndim else 0
    if extra <= 0:
        return candidate, reference_value
    if entry.caffe_tensor == entry.rows_of:
        padding = np.zeros((extra,) + candidate.shape[1:], candidate.dtype)
        return np.concatenate([candidate, padding]), reference_value
    return candidate, reference_value[:candidate.shape[0]]


def run_model(model, inputs: list) -> list[np.ndarray]:
    """A Keras model's outputs as numpy arrays, for one set of inputs.

    ``predict`` splits its inputs into batches, so it needs every input to have
    one number of items; Fast R-CNN's rois input has a row per roi instead.
    Such models are called in one piece.
    """
    import keras

    if len({np.shape(value)[0] for value in inputs}) > 1:
        values = model(inputs if len(inputs) > 1 else inputs[0], training=False)
        values = [keras.ops.convert_to_numpy(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    else:
        values = model.predict(inputs, verbose=0)
        values = values if isinstance(values, (list, tuple)) else [values]
    return [np.asarray(v) for v in values]


def recheck_on_reference_inputs(model, net, tensor_map, caffe_tensor: str, reference: Mapping[str, np.ndarray],
                                tolerance: float = 1e-4) -> TensorComparison | None:
    """Compare one Caffe layer with its Keras counterpart, both fed the reference runtime's inputs.

    A deep net with large activations can turn float32 round-off upstream into a
    visible difference at a sensitive layer (a Softmax over logits of 1e5, an
    unpooling whose max-pooling mask flipped between two near-equal values).
    Feeding the Keras layers the very values the reference fed its layer separates
    that from a conversion error: this comparison fails only if the layer itself
    computes something else. A runtime keeps only a blob's last value, so for a
    layer that works in place (Convolution, then BatchNorm, Scale and ReLU on the
    same blob) the whole in-place chain is fed and compared. ``reference`` maps
    blob names to the runtime's values. Returns None where a fed tensor has no
    Keras tensor or no reference value.
    """
    import keras

    producers = {str(t): node for node in net.layers for t in node.outputs}
    entries = tensor_map.entries
    if caffe_tensor not in producers or caffe_tensor not in entries or entries[caffe_tensor].keras_layer is None:
        return None
    final = {}
    for node in net.layers:
        for tensor in node.outputs:
            final[tensor.blob] = tensor
    sources, frontier, steps = [], list(producers[caffe_tensor].inputs), 0
    while frontier:
        tensor = frontier.pop(0)
        if final.get(tensor.blob, tensor) == tensor or str(tensor) not in producers:
            if tensor not in sources:
                sources.append(tensor)
            continue
        steps += 1
        if steps > 32:
            return None
        frontier.extend(producers[str(tensor)].inputs)
    operations = operations_by_name(model)
    feeds, values = [], []
    for tensor in sources:
        entry = entries.get(str(tensor))
        if entry is None or entry.keras_layer is None or tensor.blob not in reference:
            return None
        feeds.append(_keras_tensor(model, entry, operations))
        values.append(entry.layout.to_keras(reference[tensor.blob]))
    entry = entries[caffe_tensor]
    try:
        local = keras.Model(feeds, _keras_tensor(model, entry, operations))
    except (ValueError, TypeError):
        return None
    candidate = entry.layout.to_caffe(run_model(local, values)[0])
    return compare(caffe_tensor, entry.keras_layer, reference[entry.caffe_blob], candidate, tolerance)


__all__ = ["TensorComparison", "VerifyReport", "read_inputs", "recheck_on_reference_inputs", "run_reference",
           "seeded_inputs", "tensor_map_for", "verify"]
