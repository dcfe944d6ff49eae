"""A child process of test_across_backends.py, on the backend its KERAS_BACKEND names.

    python _backend_job.py convert NET.prototxt FOLDER   convert the net (seeded weights), check it against
                                                         real Caffe, save FOLDER/<backend>.keras and its outputs
    python _backend_job.py load FOLDER                   load every other backend's .keras, save their outputs here
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def _predict(model, image):
    outputs = model.predict(image, verbose=0)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def convert(prototxt: str, folder: Path, backend: str) -> dict:
    from keraffe.caffe.net import load_net
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.convert.caffe_to_keras import convert_net
    from keraffe.keras_io import save_keras_model
    from keraffe.verify import verify

    net = attach_seeded_weights(load_net(prototxt), seed=0)
    model, tmap = convert_net(net)
    report = verify(model, net, per_layer=True, runtime="caffe", tensor_map=tmap)
    save_keras_model(model, folder / f"{backend}.keras")
    np.savez(folder / f"{backend}__{backend}.npz", *_predict(model, np.load(folder / "image.npy")))
    return {"verified": report.ok and all(r.ok for r in report.layers), "compared": len(report.layers),
            "worst": max(r.rel for r in report.layers),
            "keraffe_layers": sorted({type(layer).__name__ for layer in model.layers
                                      if type(layer).__module__.startswith("keraffe.")})}


def load(folder: Path, backend: str) -> dict:
    import keras

    import keraffe  # noqa: F401  (registers keraffe's layers: plain keras.saving.load_model finds them)

    loaded = []
    for path in sorted(folder.glob("*.keras")):
        if path.stem == backend:
            continue
        model = keras.saving.load_model(path)  # safe_mode on
        np.savez(folder / f"{path.stem}__{backend}.npz", *_predict(model, np.load(folder / "image.npy")))
        loaded.append(path.stem)
    return {"loaded": loaded}


if __name__ == "__main__":
    import keras

    name = keras.backend.backend()
    if sys.argv[1] == "convert":
        result = convert(sys.argv[2], Path(sys.argv[3]), name)
    else:
        result = load(Path(sys.argv[2]), name)
    print(json.dumps({"backend": name, **result}))
