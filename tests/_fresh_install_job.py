"""What tests/test_fresh_install.py runs inside a virtual environment holding only ``pip install keraffe[jax]``.

Run by path with that environment's Python: ``python _fresh_install_job.py REQUEST.json``.
It uses keraffe the way a user does (the ``keraffe`` command's ``main``, then
``import keraffe`` and plain ``keras.saving.load_model``), writes the files and
the Keras outputs the outer test compares with real Caffe, and reports which
modules were imported. It imports nothing from the repository.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import json
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")


def loaded(*packages: str) -> list[str]:
    return sorted({name.split(".")[0] for name in sys.modules} & set(packages))


def cli(*argv) -> tuple[int, str, str]:
    from keraffe.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def without_backends() -> dict:
    """The Keras commands with every backend hidden: one line naming the extra to install."""
    hidden = {name: sys.modules.get(name) for name in BACKENDS}
    sys.modules.update(dict.fromkeys(BACKENDS))  # a None entry makes find_spec and import fail, as if absent
    saved = os.environ.pop("KERAS_BACKEND", None)
    try:
        code, _, err = cli("caffe2keras", "net.prototxt", "-o", "never.keras")
    finally:
        for name, module in hidden.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
        if saved is not None:
            os.environ["KERAS_BACKEND"] = saved
    return {"code": code, "stderr": err}


def main(request_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    out = Path(request["out"])
    report: dict = {
        "KERAS_BACKEND": os.environ.get("KERAS_BACKEND"),
        "installed": sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions()),
        "findable": {name: importlib.util.find_spec(name) is not None for name in (*BACKENDS, "cv2")},
    }
    report["keraffe_requires"] = importlib.metadata.requires("keraffe")

    # The Caffe-only commands and a no-backend machine: Keras stays out of the process.
    code, text, _ = cli("inspect", request["caffe_prototxt"], "--json")
    report["inspect"] = {"code": code, "layers": len(json.loads(text)["layers"]) if code == 0 else 0}
    code, _, err = cli("upgrade", request["caffe_prototxt"], "-o", out / "upgraded.prototxt")
    report["upgrade"] = {"code": code, "stderr": err}
    report["after_caffe_commands"] = loaded("keras", *BACKENDS)
    report["no_backend"] = without_backends()

    # Caffe -> Keras with the command, on the first installed backend (KERAS_BACKEND is not set).
    code, _, err = cli("caffe2keras", request["caffe_prototxt"], "--weights", request["caffe_weights"],
                       "-o", out / "from_caffe.keras")
    report["caffe2keras"] = {"code": code, "stderr": err}
    code, _, err = cli("verify", out / "from_caffe.keras", request["caffe_prototxt"], "--weights",
                       request["caffe_weights"], "--runtime", "opencv")
    report["verify_opencv"] = {"code": code, "stderr": err}

    import numpy as np

    import keraffe  # noqa: F401  (registers keraffe's layers, so keras' own loader finds them)
    import keras

    report["backend"] = keras.backend.backend()
    model = keras.saving.load_model(out / "from_caffe.keras")
    image = np.load(request["caffe_input"])  # Caffe's NCHW
    outputs = model.predict(np.transpose(image, (0, 2, 3, 1)), verbose=0)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    np.savez(out / "from_caffe_outputs.npz", *[np.asarray(o) for o in outputs])
    report["keraffe_layers"] = sorted({type(layer).__name__ for layer in model.layers
                                       if type(layer).__module__.startswith("keraffe.")})

    # Keras -> Caffe: a model written here, converted by the command.
    keras.utils.set_random_seed(0)
    x = keras.Input((33, 31, 3), name="image")
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv")(x)  # uneven 'same' padding
    y = keras.layers.BatchNormalization(name="bn")(y)
    y = keras.layers.ReLU(6.0, name="relu6")(y)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(y)
    y = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool")(y)
    y = keras.layers.Conv2D(16, 1, activation="relu", name="expand")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    y = keras.layers.Dense(10, activation="softmax", name="classes")(y)
    built = keras.Model(x, y, name="written_here")
    rng = np.random.default_rng(0)
    for layer in built.layers:
        layer.set_weights([(np.abs(rng.normal(size=w.shape)) + 0.5 if "variance" in w.path else
                            0.5 * rng.normal(size=w.shape)).astype("float32") for w in layer.weights])
    built.save(out / "written_here.keras")
    code, _, err = cli("keras2caffe", out / "written_here.keras", "-o", out / "to_caffe.prototxt")
    report["keras2caffe"] = {"code": code, "stderr": err}
    image = np.load(request["keras_input"])  # Keras' NHWC
    np.save(out / "to_caffe_output.npy", np.asarray(built.predict(image, verbose=0)))

    report["modules"] = loaded("keras", *BACKENDS, "cv2")
    (out / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
