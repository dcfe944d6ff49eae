"""keraffe's own Keras layers back to Caffe: Caffe -> Keras -> Caffe gives the same layers, settings and weights.

Each case is a Caffe layer that caffe_to_keras turns into one of keraffe's
Keras layers (AbsVal, Power, Exp, Log, Threshold, Clip, Swish, WeightedSum,
LRN, CaffePooling2D, AxisScale, AxisSlice, GroupedConv2DTranspose,
L2Normalize, Interp, MVN, Tile, Reduction, ArgMax, MaxPoolingWithMask, PriorBox). The
net gets seeded weights, goes to Keras with ``convert_net`` and back with
``keras_to_caffe``; the new net must have the original layer's type, its
parameter message and its blobs (bit for bit), and must match the Keras model
in a runtime that has the layer: real Caffe, or OpenCV for the fork layers
(Normalize, Interp, Swish). Clip runs in neither (real Caffe and OpenCV both
lack it), so its round trip is checked on the files alone.

keras.applications' own CustomScaleLayer (InceptionResNetV2's residual) is
tested too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

from ._harness import TOLERANCE, describe

pytestmark = pytest.mark.pycaffe


@dataclasses.dataclass(frozen=True)
class RoundTrip:
    id: str
    #: Caffe layer text; {p} is the case's prefix, the input is {p}x (1, 4, 6, 5) (and {p}x2 when two_inputs).
    layers: str
    #: The keraffe Keras class the Caffe layer becomes.
    keras_class: str
    #: The Caffe types the Keras model converts back to (for the case's layers, in order).
    types: tuple
    target: str = "caffe1"
    #: "caffe", "opencv", or None (no runtime has the layer: files only).
    runtime: str | None = "caffe"
    two_inputs: bool = False
    positive: bool = False
    marks: tuple = ()


def layer(type_name, param="", bottoms=("x",), tops=("y",), name="l"):
    b = " ".join(f'bottom: "{{p}}{x}"' for x in bottoms)
    t = " ".join(f'top: "{{p}}{x}"' for x in tops)
    return f'layer {{ name: "{{p}}{name}" type: "{type_name}" {b} {t} {param} }}\n'


CASES = [
    RoundTrip("absval", layer("AbsVal"), "AbsVal", ("AbsVal",)),
    RoundTrip("power", layer("Power", "power_param { power: 2 scale: 0.5 shift: 1 }"), "Power", ("Power",)),
    RoundTrip("power_sqrt", layer("Power", "power_param { power: 0.5 scale: 2 shift: 0.1 }"), "Power", ("Power",),
              positive=True),
    RoundTrip("exp", layer("Exp", "exp_param { base: 2 scale: 0.5 shift: 0.3 }"), "Exp", ("Exp",)),
    RoundTrip("log", layer("Log", "log_param { base: 10 scale: 2 shift: 0.5 }"), "Log", ("Log",), positive=True),
    RoundTrip("threshold", layer("Threshold", "threshold_param { threshold: 0.3 }"), "Threshold", ("Threshold",)),
    RoundTrip("weighted_sum", layer("Eltwise", "eltwise_param { coeff: 0.5 coeff: -2 }", bottoms=("x", "x2")),
              "WeightedSum", ("Eltwise",), two_inputs=True),
    RoundTrip("lrn", layer("LRN", "lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 k: 2 }"), "LRN", ("LRN",)),
    RoundTrip("lrn_within", layer("LRN", "lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 "
                                         "norm_region: WITHIN_CHANNEL }"), "LRN", ("LRN",)),
    RoundTrip("pool_max_ceil", layer("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 }"),
              "CaffePooling2D", ("Pooling",)),
    RoundTrip("pool_ave_pad", layer("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }"),
              "CaffePooling2D", ("Pooling",)),
    # Rounding down with windows Keras can place itself: a plain MaxPooling2D, back as one Pooling.
    RoundTrip("pool_floor", layer("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 round_mode: FLOOR }"),
              "MaxPooling2D", ("Pooling",), target="opencv"),
    RoundTrip("scale_axis2", layer("Scale", "scale_param { axis: 2 num_axes: 1 bias_term: true }"), "AxisScale",
              ("Scale",)),
    RoundTrip("scale_two_axes", layer("Scale", "scale_param { axis: 1 num_axes: 2 }"), "AxisScale", ("Scale",)),
    RoundTrip("bias", layer("Bias", "bias_param { axis: 1 num_axes: 2 }"), "AxisScale", ("Bias",)),
    RoundTrip("grouped_deconv", layer("Deconvolution", "convolution_param { num_output: 4 group: 2 kernel_size: 3 "
                                                       "stride: 2 pad: 1 }"),
              "GroupedConv2DTranspose", ("Deconvolution",)),
    # beta 1 is Keras' own silu: an Activation, which target opencv writes as Swish again.
    RoundTrip("swish", layer("Swish"), "Activation", ("Swish",), target="opencv", runtime="opencv"),
    RoundTrip("normalize", layer("Normalize", "norm_param { across_spatial: false channel_shared: false }"),
              "L2Normalize", ("Normalize",), target="opencv", runtime="opencv"),
    RoundTrip("interp", layer("Interp", "interp_param { zoom_factor: 2 }"), "Interp", ("Interp",), target="opencv",
              runtime="opencv"),
    RoundTrip("clip", layer("Clip", "clip_param { min: -0.5 max: 0.7 }"), "Clip", ("Clip",), target="caffe",
              runtime=None),
    RoundTrip("swish_beta", layer("Swish", "swish_param { beta: 1.5 }"), "Swish", ("Swish",), target="caffe",
              runtime=None),
    RoundTrip("mvn", layer("MVN"), "MVN", ("MVN",)),
    RoundTrip("mvn_across_no_variance", layer("MVN", "mvn_param { across_channels: true normalize_variance: false }"),
              "MVN", ("MVN",)),
    RoundTrip("tile", layer("Tile", "tile_param { axis: 2 tiles: 2 }"), "Tile", ("Tile",)),
    RoundTrip("tile_channels", layer("Tile", "tile_param { axis: 1 tiles: 3 }"), "Tile", ("Tile",)),
    RoundTrip("reduction", layer("Reduction", "reduction_param { axis: 1 operation: SUMSQ }"), "Reduction",
              ("Reduction",)),
    RoundTrip("reduction_mean_coeff", layer("Reduction", "reduction_param { axis: 2 operation: MEAN coeff: 0.5 }"),
              "Reduction", ("Reduction",)),
    RoundTrip("argmax", layer("ArgMax", "argmax_param { axis: 1 }"), "ArgMax", ("ArgMax",)),
    RoundTrip("argmax_top2_values", layer("ArgMax", "argmax_param { axis: 3 top_k: 2 out_max_val: true }"), "ArgMax",
              ("ArgMax",)),
    RoundTrip("argmax_flat", layer("ArgMax", "argmax_param { top_k: 3 out_max_val: true }"), "ArgMax", ("ArgMax",)),
    RoundTrip("priorbox_flip", layer("PriorBox", "prior_box_param { min_size: 2 max_size: 4 aspect_ratio: 2 "
                                                 "aspect_ratio: 3 flip: true clip: false variance: 0.1 variance: 0.2 "
                                                 "variance: 0.1 variance: 0.2 }", bottoms=("x", "x2")),
              "PriorBox", ("PriorBox",), target="opencv", two_inputs=True),
    RoundTrip("priorbox_no_flip", layer("PriorBox", "prior_box_param { min_size: 3 aspect_ratio: 2 flip: false "
                                                    "clip: true step: 2 offset: 0.25 img_h: 12 img_w: 10 }",
                                        bottoms=("x", "x2")),
              "PriorBox", ("PriorBox",), target="opencv", two_inputs=True),
    RoundTrip("max_with_mask", layer("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }",
                                     tops=("y", "mask")), "MaxPoolingWithMask", ("Pooling",)),
    RoundTrip("max_with_mask_ceil_pad", layer("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }",
                                              tops=("y", "mask")), "MaxPoolingWithMask", ("Pooling",)),
]

#: The parameter message of each Caffe type, compared between the original and the round trip (Interp's
#: zoom_factor comes back as the height and width it gives, so it is judged by its output only).
PARAM = {"AbsVal": None, "Power": "power_param", "Exp": "exp_param", "Log": "log_param",
         "Threshold": "threshold_param", "Eltwise": "eltwise_param", "LRN": "lrn_param", "Pooling": "pooling_param",
         "Scale": "scale_param", "Bias": "bias_param", "Deconvolution": "convolution_param", "Swish": "swish_param",
         "Normalize": "norm_param", "Clip": "clip_param", "MVN": "mvn_param",
         "Tile": "tile_param", "Reduction": "reduction_param", "ArgMax": "argmax_param",
         "PriorBox": "prior_box_param"}


def meaning(message) -> dict:
    """A parameter message as what it means: every scalar field with its default filled in, and the
    kernel/stride/pad spellings (kernel_size or kernel_h/kernel_w, repeated or not) as (h, w) pairs."""
    result = {}
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None:
            continue
        value = getattr(message, field.name)
        result[field.name] = list(value) if hasattr(value, "__len__") and not isinstance(value, str) else value
    for what, default in (("kernel", None), ("stride", 1), ("pad", 0)):
        names = {"kernel": ("kernel_size", "kernel_h", "kernel_w")}.get(what, (what, f"{what}_h", f"{what}_w"))
        if names[0] not in result:
            continue
        single, h, w = (result.pop(n) for n in names)
        if message.HasField(names[1]) if names[1] in [f.name for f in message.DESCRIPTOR.fields] else False:
            pair = (h, w)
        elif isinstance(single, list):
            pair = (single[0], single[-1]) if single else (default, default)
        else:
            pair = (single, single)
        result[what] = pair
    return result


def net_text(case: RoundTrip) -> str:
    p = f"{case.id}__"
    dims = "dim: 1 dim: 4 dim: 6 dim: 5"
    text = f'name: "{case.id}"\n'
    for name in ("x", "x2") if case.two_inputs else ("x",):
        text += f'layer {{ name: "{p}{name}" type: "Input" top: "{p}{name}" input_param {{ shape {{ {dims} }} }} }}\n'
    return text + case.layers.replace("{p}", p)


@dataclasses.dataclass
class Trip:
    original: object
    model: object
    export: object
    net: object


def round_trip(case: RoundTrip, directory: Path) -> Trip:
    import keraffe
    from keraffe.caffe.net import load_net
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.convert.caffe_to_keras import convert_net

    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "original.prototxt"
    source.write_text(net_text(case))
    original = attach_seeded_weights(load_net(source), 0)
    model, _ = convert_net(original)
    export = keraffe.keras_to_caffe(model, directory / "round_trip.prototxt", target=case.target)
    return Trip(original, model, export, load_net(export.prototxt, export.caffemodel))


def inputs_for(case: RoundTrip, net) -> dict:
    rng = np.random.default_rng(0)
    values = {}
    for tensor in net.inputs:
        value = rng.standard_normal(net.shapes[tensor]).astype(np.float32)
        values[str(tensor)] = np.abs(value) + np.float32(0.25) if case.positive else value
    return values


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_round_trip(case, tmp_path):
    from keraffe.verify import verify

    trip = round_trip(case, tmp_path)
    p = f"{case.id}__"
    assert [type(layer).__name__ for layer in trip.model.layers if layer.name.startswith(p + "y")
            or layer.name.startswith(p + "l")][:1] == [case.keras_class]
    made = [layer for layer in trip.export.net.layer if layer.type not in ("Input", "Silence")]
    assert tuple(layer.type for layer in made) == case.types, [layer.type for layer in made]
    source = {layer.name: layer for layer in trip.original.to_net_parameter().layer}
    original = next(layer for layer in source.values() if layer.type not in ("Input",))
    again = made[0]
    field = PARAM.get(original.type)
    if field is not None:
        assert meaning(getattr(again, field)) == meaning(getattr(original, field)), (
            getattr(original, field), getattr(again, field))
    old_blobs = trip.original.weight_arrays().get(original.name, [])
    new_blobs = trip.export.weights.get(again.name, [])
    assert len(new_blobs) == len(old_blobs)
    for old, new in zip(old_blobs, new_blobs):
        assert np.asarray(new).shape == np.asarray(old).shape
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
    if case.runtime is None:
        return
    report = verify(trip.model, trip.net, inputs_for(case, trip.net), per_layer=True, runtime=case.runtime,
                    tolerance=TOLERANCE, tensor_map=trip.export.tensor_map)
    assert report.layers and all(r.ok for r in report.layers + report.outputs), describe(report.layers)


def test_slice_round_trip_computes_the_same(tmp_path):
    """Slice becomes one AxisSlice per top and comes back as one Slice (+ Silence) per top: the same values."""
    from keraffe.verify import verify

    case = RoundTrip("slice", layer("Slice", "slice_param { axis: 1 slice_point: 1 slice_point: 3 }",
                                    tops=("a", "b", "c")), "AxisSlice", ())
    trip = round_trip(case, tmp_path)
    assert [type(layer).__name__ for layer in trip.model.layers[1:]] == ["AxisSlice"] * 3
    assert {layer.type for layer in trip.export.net.layer} == {"Input", "Slice", "Silence"}
    report = verify(trip.model, trip.net, per_layer=True, tensor_map=trip.export.tensor_map)
    assert len(report.outputs) == 3 and all(r.ok for r in report.outputs), describe(report.outputs)


def test_keras_applications_custom_scale_layer(tmp_path):
    """InceptionResNetV2's residual, keras.applications' CustomScaleLayer: x + r * scale as one weighted Eltwise."""
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    from ._harness import assert_verified, layer_named, randomize

    x = keras.Input((6, 5, 4), name="x")
    branch = keras.layers.Conv2D(4, 1, name="branch")(x)
    out = CustomScaleLayer(0.17, name="residual")([x, branch])
    model = keras.Model(x, keras.layers.ReLU(name="relu")(out), name="inception_resnet_block")
    randomize(model)
    export, _ = assert_verified(model, tmp_path)
    residual = layer_named(export, "residual")
    assert residual.type == "Eltwise"
    assert list(residual.eltwise_param.coeff) == pytest.approx([1.0, 0.17])


def test_mvn_of_a_sequence_comes_back_to_its_own_shape(tmp_path):
    """Caffe's MVN makes every top 4-axis; a (N, C, L) blob gets a Reshape back, and real Caffe agrees."""
    from keraffe.keras_layers import MVN

    from ._harness import assert_verified, caffe_types

    x = keras.Input((3, 7), name="x")  # a rank-3 tensor keeps Caffe's axis order: the blob is (N, 3, 7)
    model = keras.Model(x, MVN((2,), name="mvn")(x), name="mvn_sequence")
    export, _ = assert_verified(model, tmp_path)
    assert caffe_types(export) == ["MVN", "Reshape"]


def test_mvn_over_axes_caffe_does_not_normalise_is_refused_by_name(tmp_path):
    from keraffe.errors import ConversionError
    from keraffe.keras_layers import MVN

    from ._harness import convert_files

    x = keras.Input((6, 5, 4), name="x")  # NHWC: Keras axis 3 is Caffe's channel axis
    model = keras.Model(x, MVN((3,), name="over_channels_only")(x), name="mvn_channels")
    with pytest.raises(ConversionError, match=r"'over_channels_only' \(MVN\) normalises over Keras axes \[3\]"):
        convert_files(model, tmp_path)
