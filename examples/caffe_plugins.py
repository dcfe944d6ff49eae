"""Caffe -> Keras plug-ins: convert layers keraffe does not know, without editing keraffe.

Two plug-ins, as docs/caffe_plugins.md explains them:

* brocolli-caffe's ``Pad`` layer (a C++ layer type), judged by real Caffe,
  which has it;
* a Python layer of the user's own, ``my_layers.ScaleShift`` (``top = bottom *
  scale + shift``, parameters in ``param_str``), judged by the layer's own
  forward pass, which this file holds as the user would (pycaffe-style).

    python examples/caffe_plugins.py [--out DIR] [--runtime caffe|opencv|none]

Writes the example nets and the converted models to DIR, and prints how each
converted model compares with its judge. Exits 1 when one differs.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

import keraffe
from keraffe.errors import ConversionError

# ------------------------------------------------------------------ plug-in 1: a C++ layer type


def padded_shape(layer, bottoms):
    """Pad's top shape, in Caffe's axis order, from its bottom's."""
    p = layer.pad_param
    n, c, h, w = bottoms[0]
    return [(n, c, h + p.pad_u + p.pad_d, w + p.pad_l + p.pad_r)]


@keraffe.register_caffe_layer("Pad", output_shapes=padded_shape)
def pad(layer, inputs, weights, name):
    """brocolli's Pad with zeros: Keras' ZeroPadding2D on the NHWC image keraffe hands over."""
    p = layer.pad_param
    sides = (p.pad_u, p.pad_d, p.pad_l, p.pad_r)
    if p.pad_type != p.CONSTANT or p.pad_value != 0 or min(sides) < 0:
        # Refuse what this plug-in does not compute exactly, rather than approximate it.
        raise ConversionError(f"layer '{layer.name}' (Pad): only zero padding by non-negative amounts converts")
    return keras.layers.ZeroPadding2D(((p.pad_u, p.pad_d), (p.pad_l, p.pad_r)), name=name)(inputs[0])


# ------------------------------------------------------------------ plug-in 2: a Python layer


@keraffe.register_caffe_layer(python_layer="my_layers.ScaleShift")
def scale_shift(layer, inputs, weights, name):
    """``my_layers.ScaleShift``: param_str is a Python dict literal, as the layer's setup() reads it."""
    params = ast.literal_eval(layer.python_param.param_str or "{}")
    return keras.layers.Rescaling(float(params["scale"]), float(params.get("shift", 0.0)), name=name)(inputs[0])


class ScaleShift:
    """The user's Python layer as pycaffe runs it (``caffe.Layer`` subclass), here without pycaffe."""

    def setup(self, bottom, top):
        params = ast.literal_eval(self.param_str)
        self.scale = np.float32(params["scale"])
        self.shift = np.float32(params.get("shift", 0.0))

    def forward(self, bottom, top):
        top[0][...] = bottom[0] * self.scale + self.shift


# ------------------------------------------------------------------ the example nets

PAD_NET = """
name: "pad_example"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 6 dim: 5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 }
                            bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "pad" type: "Pad" bottom: "conv" top: "pad" pad_param { pad_u: 1 pad_d: 2 pad_l: 0 pad_r: 3 } }
layer { name: "pool" type: "Pooling" bottom: "pad" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
"""

PYTHON_NET = """
name: "python_layer_example"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 5 } } }
layer { name: "scaled" type: "Python" bottom: "data" top: "scaled"
        python_param { module: "my_layers" layer: "ScaleShift" param_str: "{'scale': 2.5, 'shift': -1.0}" } }
"""


def _run_python_layer(cls, param_str: str, x: np.ndarray) -> np.ndarray:
    layer = cls()
    layer.param_str = param_str
    top = [np.empty_like(x)]
    layer.setup([x], top)
    layer.forward([x], top)
    return top[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--runtime", choices=("caffe", "opencv", "none"), default="caffe",
                        help="the runtime that judges the Pad net (none: convert only)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="keraffe-plugins-"))
    out.mkdir(parents=True, exist_ok=True)
    failed = False

    # Pad: convert with Caffe's own initial weights (fillers), then compare with the runtime.
    from keraffe.caffe.net import load_net
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.convert.caffe_to_keras import check_supported, convert_net
    from keraffe.verify import verify

    (out / "pad.prototxt").write_text(PAD_NET)
    net = attach_seeded_weights(load_net(out / "pad.prototxt", check_types=check_supported), seed=0)
    model, tensor_map = convert_net(net)
    model.save(out / "pad.keras")
    if args.runtime != "none":
        report = verify(model, net, per_layer=True, runtime=args.runtime, tensor_map=tensor_map)
        print(f"Pad plug-in against {args.runtime}: {'ok' if report.ok else 'MISMATCH'} "
              f"(largest output error {report.max_rel:.2g} relative)")
        failed |= not report.ok

    # ScaleShift: the Python layer's own forward pass is the judge.
    (out / "python.prototxt").write_text(PYTHON_NET)
    model = keraffe.caffe_to_keras(out / "python.prototxt")
    model.save(out / "python.keras")
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    param_str = "{'scale': 2.5, 'shift': -1.0}"
    expected = _run_python_layer(ScaleShift, param_str, x)
    got = np.asarray(model.predict(x, verbose=0))
    error = float(np.max(np.abs(got - expected)))
    print(f"ScaleShift plug-in against the Python layer: {'ok' if error <= 1e-6 else 'MISMATCH'} "
          f"(max abs error {error:.2g})")
    failed |= error > 1e-6
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
