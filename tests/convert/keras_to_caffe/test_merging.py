"""Merging against real Caffe: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, and broadcasting.

Every merge on images (NHWC, Caffe NCHW), flat vectors and sequences, with
two and three inputs. The squeeze-excite Multiply of an image by a
(N, 1, 1, C) gate becomes Caffe's Scale with two bottoms; an image plus a
(N, 1, 1, C) bias Caffe's Bias. Concatenate is tested on every Keras axis, so
the Keras axis -> Caffe axis mapping is exercised, and on inputs of
different layouts (a Flatten of an image with a Dense output).
"""

from __future__ import annotations

import keras
import pytest

from ._harness import Batch, Case, assert_case, assert_types, layer_named, params

pytestmark = pytest.mark.pycaffe

L = keras.layers
IMAGE = (5, 7, 3)


def merge(cls, n=2, **kwargs):
    def build(x, p):
        return getattr(L, cls)(name=p + "merge", **kwargs)(list(x[:n]))
    return build


CASES = []
for cls in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"):
    for kind, shape in (("image", IMAGE), ("flat", (6,)), ("sequence", (4, 5))):
        CASES.append(Case(f"{cls.lower()}_{kind}", (shape, shape), merge(cls), compared=("merge",)))
    if cls != "Subtract":
        CASES.append(Case(f"{cls.lower()}_three_images", (IMAGE,) * 3, merge(cls, 3), compared=("merge",)))

CASES += [
    Case("concat_axis1_image", (IMAGE, (2, 7, 3)), merge("Concatenate", axis=1), compared=("merge",)),
    Case("concat_axis2_image", (IMAGE, (5, 4, 3)), merge("Concatenate", axis=2), compared=("merge",)),
    Case("concat_channels_image", (IMAGE, (5, 7, 2)), merge("Concatenate", axis=-1), compared=("merge",),
         check=lambda e, p: assert_types(e, p + "merge", ["Concat"])),
    Case("concat_axis1_sequence", ((4, 5), (3, 5)), merge("Concatenate", axis=1), compared=("merge",)),
]

# A channels-last Flatten holds Caffe's (C, H, W) order; merged with a tensor in Keras' order, one side must be
# transposed, which takes a Permute (target opencv has it; caffe1 refuses, see test_refusals).
FLATTEN_CASES = [
    Case(f"{cls.lower()}_flatten_{order}", ((2, 3, 2), (6,)),
         (lambda cls, order: lambda x, p: getattr(L, cls)(name=p + "merge")(
             [L.Flatten(name=p + "flat")(x[0]), L.Dense(12, name=p + "dense")(x[1])][::1 if order == "first" else -1])
          )(cls, order),
         target="opencv", compared=("merge",))
    for cls in ("Add", "Concatenate", "Maximum")
    for order in ("first", "second")
]
CASES += FLATTEN_CASES


# ---------------------------------------------------------------- broadcasting: squeeze-excite and friends
def squeeze_excite(x, p):
    """keras.applications' squeeze-excite: pool, two 1x1 convolutions, hard gate, Multiply."""
    image = x[0]
    gate = L.GlobalAveragePooling2D(keepdims=True, name=p + "squeeze")(image)
    gate = L.Conv2D(2, 1, activation="relu", name=p + "reduce")(gate)
    gate = L.Conv2D(IMAGE[-1], 1, activation="sigmoid", name=p + "expand")(gate)
    return L.Multiply(name=p + "merge")([image, gate])


def dense_gate(x, p):
    """The Dense form: GlobalAveragePooling2D, Dense, Reshape((1, 1, C)), Multiply."""
    image = x[0]
    gate = L.GlobalAveragePooling2D(name=p + "squeeze")(image)
    gate = L.Dense(IMAGE[-1], activation="sigmoid", name=p + "excite")(gate)
    gate = L.Reshape((1, 1, IMAGE[-1]), name=p + "gate")(gate)
    return L.Multiply(name=p + "merge")([gate, image])


def scale_layer(export, p):
    layer = layer_named(export, p + "merge")
    assert layer.type == "Scale" and len(layer.bottom) == 2, layer


CASES += [
    Case("se_conv_gate", (IMAGE,), squeeze_excite, compared=("merge", "expand"), check=scale_layer),
    Case("se_dense_gate_first", (IMAGE,), dense_gate, compared=("merge", "excite"), check=scale_layer),
    Case("multiply_by_input_gate", (IMAGE, (1, 1, 3)), merge("Multiply"), compared=("merge",)),
    Case("add_channel_bias", (IMAGE, (1, 1, 3)), merge("Add"), compared=("merge",)),
    Case("add_bias_first", ((1, 1, 3), IMAGE), merge("Add"), compared=("merge",)),
    Case("multiply_sequence_gate", ((4, 5), (1, 5)), merge("Multiply"), compared=("merge",)),
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(CASES, tmp_path_factory, "merging")


@pytest.mark.parametrize("case", params(CASES))
def test_merging(batch, case):
    assert_case(batch, case)


def test_all_cases_convert_as_one_net(batch):
    batch.check_all_batches()


def test_squeeze_excite_gate_is_per_sample(tmp_path):
    """The gate keeps its batch axis (Reshape to (0, C), Scale at axis 0), so the net is right at any batch
    size, not just the one it is written with; at batch 3 each image gets its own gate in real Caffe."""
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.verify import verify

    from ._harness import assert_report_ok, build_model, randomize

    model = build_model([Case("se", (IMAGE,), squeeze_excite)], "se")
    randomize(model)
    export = keraffe.keras_to_caffe(model, tmp_path / "batch1.prototxt")
    reshape = layer_named(export, "se__merge/broadcast")
    assert list(reshape.reshape_param.shape.dim) == [0, IMAGE[-1]]
    assert layer_named(export, "se__merge").scale_param.axis == 0
    export3 = keraffe.keras_to_caffe(model, tmp_path / "batch3.prototxt", input_shape=(3, 3, 5, 7))
    report = verify(model, load_net(export3.prototxt, export3.caffemodel), per_layer=True,
                    tensor_map=export3.tensor_map)
    assert_report_ok(report, "squeeze-excite at batch 3")
    assert all(r.shape[0] == 3 for r in report.layers)
