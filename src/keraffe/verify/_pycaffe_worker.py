"""The half of :mod:`keraffe.verify.caffe_runtime` that runs inside pycaffe's process.

It is started by path (``python _pycaffe_worker.py REQUEST.json``), not as
``-m keraffe.verify._pycaffe_worker``, so that the keraffe package is never
imported here: keraffe's own ``caffe_pb2`` and pycaffe's would both register
"caffe.proto" in protobuf's default pool, and the second one fails.  For the
same reason this file imports nothing from keraffe.

A request is a JSON file naming a command and file paths; arrays travel in
``.npz`` files beside it.  The answer is a JSON file in which arrays are
replaced by ``{"__ndarray__": key}`` references into an answer ``.npz``.
Python exceptions are reported in the answer; Caffe's own CHECK failures abort
the process, and the parent reads those from our stderr instead.
"""

from __future__ import annotations

import os
import sys

# Running by path puts this package directory first on sys.path, where a
# sibling module could shadow a top-level name (io, caffe, ...) that pycaffe
# imports.  Nothing here needs its siblings.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import json  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402


class _Encoder:
    """Collects the arrays of an answer so JSON can refer to them by key."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, value) -> dict:
        key = f"a{len(self.arrays)}"
        # Copy: pycaffe's .data views die with the net.
        self.arrays[key] = np.array(value, dtype=np.float32, copy=True)
        return {"__ndarray__": key}


def _load_net(caffe, req: dict):
    weights = req.get("caffemodel")
    if weights is None:
        net = caffe.Net(req["prototxt"], caffe.TEST)
    else:
        net = caffe.Net(req["prototxt"], caffe.TEST, weights=weights)
    if req.get("weights"):
        _copy_weights(net, req)
    return net


def _copy_weights(net, req: dict) -> None:
    """Arrays from keraffe into Caffe's parameter blobs, shape by shape (counts must agree)."""
    with np.load(req["weights"]) as npz:
        for i, (name, count) in enumerate(req["weight_layers"]):
            if name not in net.params:
                raise KeyError(f"weights given for layer '{name}', which has no parameters in the net")
            blobs = net.params[name]
            if count != len(blobs):
                raise ValueError(f"layer '{name}' has {len(blobs)} parameter blobs, {count} given")
            for j, blob in enumerate(blobs):
                array = npz[f"w{i}_{j}"]
                if array.size != blob.data.size:
                    raise ValueError(f"layer '{name}' blob {j}: Caffe's shape is {blob.data.shape}, "
                                     f"the given one {array.shape}")
                blob.data[...] = array.reshape(blob.data.shape)


def _cmd_run(caffe, req: dict, enc: _Encoder):
    net = _load_net(caffe, req)
    inputs: dict[str, np.ndarray] = {}
    if req.get("inputs"):
        with np.load(req["inputs"]) as npz:
            for i, name in enumerate(req["input_names"]):
                inputs[name] = npz[f"x{i}"]
    net_inputs = list(net.inputs)
    unknown = [n for n in inputs if n not in net_inputs]
    if unknown:
        # Setting a non-input blob would be silently overwritten by forward().
        raise KeyError(f"inputs {unknown} are not net inputs; the net's inputs are {net_inputs}")
    for name, arr in inputs.items():
        net.blobs[name].reshape(*arr.shape)
        net.blobs[name].data[...] = arr
    _forward_by_layer(net)
    names = list(net.outputs) if req.get("blobs") is None else req["blobs"]
    missing = [n for n in names if n not in net.blobs]
    if missing:
        raise KeyError(f"blobs {missing} are not in the net; it has {list(net.blobs)}")
    return {n: enc.array(net.blobs[n].data) for n in names}


def _forward_by_layer(net) -> None:
    """net.forward(), one layer at a time, saying on stderr which layer runs.

    Caffe's Layer::Forward reshapes its layer before computing it, as
    Net::Reshape would for all layers at once, so this is the same pass; when a
    CHECK aborts the process, the last line before it names the layer.
    """
    for index, name in enumerate(net._layer_names):
        sys.stderr.write(f"keraffe-worker: layer {name}\n")
        sys.stderr.flush()
        net._forward(index, index)


def _cmd_shapes(caffe, req: dict, enc: _Encoder):
    net = _load_net(caffe, req)
    return {n: list(b.data.shape) for n, b in net.blobs.items()}


def _cmd_params(caffe, req: dict, enc: _Encoder):
    net = _load_net(caffe, req)
    return {n: [enc.array(b.data) for b in blobs] for n, blobs in net.params.items()}


def _cmd_save(caffe, req: dict, enc: _Encoder):
    net = _load_net(caffe, req)
    net.save(req["output"])
    return req["output"]


def _cmd_layer_types(caffe, req: dict, enc: _Encoder):
    return sorted(caffe.layer_type_list())


_COMMANDS = {
    "run": _cmd_run,
    "shapes": _cmd_shapes,
    "params": _cmd_params,
    "save": _cmd_save,
    "layer_types": _cmd_layer_types,
}


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        req = json.load(f)
    enc = _Encoder()
    try:
        # caffe/__init__.py imports caffe.io, which imports scikit-image and SciPy
        # (about 0.35 s per call) for preprocessing helpers this worker never uses.
        import types

        sys.modules.setdefault("caffe.io", types.ModuleType("caffe.io"))
        import caffe

        caffe.set_mode_cpu()
        value = _COMMANDS[req["command"]](caffe, req, enc)
        answer = {"ok": True, "value": value}
    except BaseException as exc:  # reported to the parent, which raises
        answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        # pycaffe reports bad files and blob names as RuntimeError/OSError, and
        # we raise KeyError; anything else is a bug here, worth a traceback.
        if not isinstance(exc, (RuntimeError, OSError, KeyError)):
            answer["traceback"] = traceback.format_exc()
    np.savez(req["arrays_out"], **enc.arrays)
    with open(req["answer"], "w") as f:
        json.dump(answer, f)
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
