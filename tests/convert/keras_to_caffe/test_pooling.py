"""Pooling against real Caffe: MaxPooling2D/3D, AveragePooling2D/3D, the global poolings, pooling over padding.

Caffe 1.0 pooling always rounds up and pads symmetrically; Keras 'valid'
rounds down and 'same' pads the odd pixel at the end. keraffe places Keras'
windows inside Caffe's and slices off the extra outputs. Keras' AVE 'same'
divides by the real pixels of a window (padding does not count), Caffe by the
window clipped to its pad: the ones-coverage division fixes that, and these
cases put windows across the border on odd and even sizes to prove it. MAX
over ZeroPadding2D counts the zeros (they win over negative values).

Targets: ``caffe1`` (always ceil) and ``opencv`` (``ceil_mode: false``, which
brocolli-caffe reads) are judged by real Caffe; ``caffe`` writes BVLC master's
``round_mode``, which brocolli-caffe does not read, so it is judged by OpenCV.
"""

from __future__ import annotations

import dataclasses

import keras
import pytest

from ._harness import Batch, Case, assert_case, caffe_types, expect_only, layer_named, params

pytestmark = pytest.mark.pycaffe

L = keras.layers
SIZES = {"odd": (9, 11), "even": (12, 12), "mixed": (13, 7)}


def image(hw, channels=3):
    return (hw + (channels,),)


def pool(cls, **kwargs):
    def build(x, p):
        return getattr(L, cls)(name=p + "pool", **kwargs)(x[0])
    build.pooling = (cls, kwargs)
    return build


def refused_on_torch(case):
    """On PyTorch, uneven 'same' AVE padding averages replicated edge pixels in Keras: refused where that differs.

    Keras' torch pooling then pads every axis with copies of the edge pixels;
    a window that reaches into that padding averages like TensorFlow only if
    it holds a single real pixel.
    """
    cls, kwargs = getattr(case.build, "pooling", (None, {}))
    if keras.backend.backend() != "torch" or cls != "AveragePooling2D" or kwargs.get("padding") != "same":
        return case
    kernel = (kwargs["pool_size"],) * 2 if isinstance(kwargs["pool_size"], int) else kwargs["pool_size"]
    strides = kwargs.get("strides") or kernel
    strides = (strides,) * 2 if isinstance(strides, int) else strides
    uneven, differs = False, False
    for size, k, s in zip(case.shapes[0][:2], kernel, strides):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        uneven |= total % 2 == 1
        for i in range(out):
            first, last = i * s - total // 2, i * s - total // 2 + k - 1
            inside = min(last, size - 1) - max(first, 0) + 1
            differs |= (first < 0 or last >= size) and inside > 1
    if not (uneven and differs):
        return case
    reason = "Keras' torch backend averages replicated edge pixels in uneven 'same' padding; keraffe refuses it"
    return dataclasses.replace(case, alone=True, marks=(pytest.mark.xfail(strict=True, reason=reason),))


def single_pooling(export, p):
    assert caffe_types(export, p) == ["Pooling"], caffe_types(export, p)


CASES = []
for cls, short in (("MaxPooling2D", "max"), ("AveragePooling2D", "ave")):
    for size, hw in SIZES.items():
        for padding in ("valid", "same"):
            for pool_size, strides in ((2, None), (3, 2), (3, 1), (2, 3), (3, 3)):
                CASES.append(Case(f"{short}_k{pool_size}_s{strides or pool_size}_{padding}_{size}", image(hw),
                                  pool(cls, pool_size=pool_size, strides=strides, padding=padding),
                                  compared=("pool",)))
    CASES += [
        Case(f"{short}_k3x2_s2x1_same_odd", image((9, 11)),
             pool(cls, pool_size=(3, 2), strides=(2, 1), padding="same"), compared=("pool",)),
        Case(f"{short}_k2x3_s1x2_valid_even", image((12, 10)),
             pool(cls, pool_size=(2, 3), strides=(1, 2), padding="valid"), compared=("pool",)),
    ]

CASES += [
    # Caffe's windows are Keras' exactly: one Pooling layer, nothing else.
    Case("max_k2_exact_even", image((12, 12)), pool("MaxPooling2D", pool_size=2), check=single_pooling),
    Case("ave_k3_s2_valid_exact_odd", image((9, 11)), pool("AveragePooling2D", pool_size=3, strides=2),
         check=single_pooling),
]


# ---------------------------------------------------------------- global pooling
def global_pool(cls, keepdims):
    def build(x, p):
        return getattr(L, cls)(keepdims=keepdims, name=p + "pool")(x[0])
    return build


for cls, short in (("GlobalAveragePooling2D", "gap"), ("GlobalMaxPooling2D", "gmp")):
    for keepdims in (False, True):
        for size, hw in (("odd", (9, 11)), ("even", (12, 12))):
            CASES.append(Case(f"{short}_keepdims{int(keepdims)}_{size}", image(hw, 4),
                              global_pool(cls, keepdims), compared=("pool",)))


# ---------------------------------------------------------------- pooling over ZeroPadding2D (the zeros count)
def padded_pool(zeros, cls, relu=False, **kwargs):
    def build(x, p):
        y = L.ReLU(name=p + "relu")(x[0]) if relu else x[0]
        y = L.ZeroPadding2D(zeros, name=p + "pad")(y)
        return getattr(L, cls)(name=p + "pool", **kwargs)(y)
    return build


CASES += [
    Case("pad_asym_max_k3_s2_odd", image((9, 11)),
         padded_pool(((1, 0), (0, 1)), "MaxPooling2D", pool_size=3, strides=2), compared=("pool",)),
    Case("pad_asym_max_k2_even", image((12, 12)),
         padded_pool(((0, 1), (1, 1)), "MaxPooling2D", pool_size=2), compared=("pool",)),
    Case("pad_sym_max_k3_s2_mixed", image((13, 7)),
         padded_pool(1, "MaxPooling2D", pool_size=3, strides=2), compared=("pool",)),
    Case("pad_asym_max_after_relu", image((9, 11)),
         padded_pool(((1, 2), (2, 0)), "MaxPooling2D", relu=True, pool_size=3, strides=2), compared=("pool",)),
    Case("pad_asym_ave_k3_s2_odd", image((9, 11)),
         padded_pool(((1, 0), (0, 1)), "AveragePooling2D", pool_size=3, strides=2), compared=("pool",)),
    Case("pad_sym_ave_k2_even", image((12, 12)),
         padded_pool(1, "AveragePooling2D", pool_size=2), compared=("pool",)),
    # Padding as wide as the window: Caffe's pooling pad must stay below the kernel size.
    Case("pad_wide_ave_k2", image((9, 11)),
         padded_pool(((2, 2), (0, 3)), "AveragePooling2D", pool_size=2), compared=("pool",)),
    # Windows wholly inside the padding give 0; Caffe's pooling pad must stay below the kernel, so the
    # padding is written out (a depthwise convolution with a one-hot kernel) and pooled as it is.
    Case("pad_wide_max_k2", image((9, 11)),
         padded_pool(((2, 0), (3, 1)), "MaxPooling2D", pool_size=2), compared=("pool",),
         check=expect_only("Convolution", "Pooling", "Slice", "Silence")),
    # ZeroPadding2D, then 'same' pooling: both paddings, the zeros counted and the pooling's own not.
    Case("pad_then_same_max", image((9, 11)),
         padded_pool(((1, 0), (0, 2)), "MaxPooling2D", pool_size=3, strides=2, padding="same"), compared=("pool",)),
    Case("pad_then_same_ave", image((12, 10)),
         padded_pool(((0, 1), (1, 1)), "AveragePooling2D", pool_size=2, strides=2, padding="same"),
         compared=("pool",)),
    Case("pad_crop_max", image((9, 11)),
         lambda x, p: L.MaxPooling2D(3, 2, name=p + "pool")(
             L.Cropping2D(((0, 2), (1, 0)), name=p + "crop")(L.ZeroPadding2D(((1, 0), (0, 1)), name=p + "pad")(x[0]))),
         compared=("pool",)),
]

# ---------------------------------------------------------------- other targets
TARGET_CASES = []
for target, runtime in (("opencv", "caffe"), ("caffe", "opencv")):
    for cls, short in (("MaxPooling2D", "max"), ("AveragePooling2D", "ave")):
        for size, hw in (("odd", (9, 11)), ("even", (12, 10))):
            for padding in ("valid", "same"):
                TARGET_CASES.append(Case(f"{target}_{short}_k3_s2_{padding}_{size}", image(hw),
                                         pool(cls, pool_size=3, strides=2, padding=padding), target=target,
                                         runtime=runtime, compared=("pool",)))
        TARGET_CASES.append(Case(f"{target}_{short}_k2_valid_odd", image((9, 11)), pool(cls, pool_size=2),
                                 target=target, runtime=runtime, compared=("pool",)))


def rounds_down(export, p):
    """Keras' 'valid' windows on an odd size: one Caffe Pooling that rounds down, no slicing."""
    assert caffe_types(export, p) == ["Pooling"], caffe_types(export, p)
    param = layer_named(export, p + "pool").pooling_param
    assert param.round_mode == param.FLOOR


# One axis exact, the other rounding down: Caffe's one round_mode must suit both axes.
for target, runtime in (("opencv", "caffe"), ("caffe", "opencv")):
    for cls, short in (("MaxPooling2D", "max"), ("AveragePooling2D", "ave")):
        TARGET_CASES += [
            Case(f"{target}_{short}_k2_valid_even_rows_odd_cols", image((12, 11)), pool(cls, pool_size=2),
                 target=target, runtime=runtime, compared=("pool",)),
            Case(f"{target}_{short}_k2_valid_odd_rows_even_cols", image((9, 10)), pool(cls, pool_size=2),
                 target=target, runtime=runtime, compared=("pool",)),
            Case(f"{target}_{short}_k3_s2_valid_mixed", image((13, 8)), pool(cls, pool_size=3, strides=2),
                 target=target, runtime=runtime, compared=("pool",)),
        ]
TARGET_CASES.append(Case("caffe_floor_max_k2_odd", image((9, 11)), pool("MaxPooling2D", pool_size=2),
                         target="caffe", runtime="opencv", check=rounds_down))
TARGET_CASES.append(Case("opencv_floor_max_k2_odd", image((9, 11)), pool("MaxPooling2D", pool_size=2),
                         target="opencv", runtime="caffe", check=rounds_down))

# ---------------------------------------------------------------- 3-D: a pooling of every depth plane, then along depth
VOLUME_CASES = []
for cls, short in (("MaxPooling3D", "max"), ("AveragePooling3D", "ave")):
    VOLUME_CASES += [
        Case(f"{short}3d_k2_valid_odd", ((5, 7, 9, 2),), pool(cls, pool_size=2), compared=("pool",)),
        Case(f"{short}3d_k3_s2_same_odd", ((5, 7, 9, 2),), pool(cls, pool_size=3, strides=2, padding="same"),
             compared=("pool",)),
        Case(f"{short}3d_k322_s212_same_even", ((6, 8, 4, 3),),
             pool(cls, pool_size=(3, 2, 2), strides=(2, 1, 2), padding="same"), compared=("pool",)),
        Case(f"{short}3d_k2_s1_valid", ((4, 5, 6, 2),), pool(cls, pool_size=2, strides=1), compared=("pool",)),
    ]
VOLUME_CASES.append(Case("max3d_after_relu", ((5, 6, 7, 2),),
                         lambda x, p: L.MaxPooling3D(3, 2, padding="same", name=p + "pool")(
                             L.ReLU(name=p + "relu")(x[0])), compared=("pool",)))

ALL = [refused_on_torch(case) for case in CASES + TARGET_CASES] + VOLUME_CASES


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return Batch(ALL, tmp_path_factory, "pooling")


@pytest.mark.parametrize("case", params(ALL))
def test_pooling(batch, case):
    assert_case(batch, case)


def test_all_cases_convert_as_one_net(batch):
    batch.check_all_batches()


def test_caffe1_never_rounds_down(tmp_path):
    """Caffe 1.0 has no round_mode: a 'valid' window that needs rounding down is sliced, never FLOOR."""
    from ._harness import build_model, convert_files, randomize

    case = Case("c1", image((9, 11)), pool("MaxPooling2D", pool_size=2))
    model = build_model([case])
    randomize(model)
    export, _ = convert_files(model, tmp_path, "caffe1")
    for layer in export.net.layer:
        if layer.type == "Pooling":
            assert not layer.pooling_param.HasField("round_mode")
    assert "Slice" in caffe_types(export)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="a refusal of Keras' PyTorch backend only")
@pytest.mark.parametrize("layer, shape", [(L.AveragePooling2D(3, padding="same", name="ave"), (11, 9, 3)),
                                          (L.AveragePooling1D(3, padding="same", name="ave"), (11, 3))],
                         ids=["2d", "1d"])
def test_uneven_same_average_is_refused_on_torch(layer, shape, tmp_path):
    """Keras' torch pooling averages replicated edge pixels in uneven 'same' padding; the export could not match.

    11 rows, windows of 3 every 3: the last window holds rows 9 and 10 and one of padding.
    """
    import keraffe
    from keraffe.errors import KeraffeError

    x = keras.Input(shape)
    with pytest.raises(KeraffeError, match=r"on the PyTorch backend Keras fills that padding with copies of the "
                                           r"edge pixels.*KERAS_BACKEND=tensorflow or jax"):
        keraffe.keras_to_caffe(keras.Model(x, layer(x)), tmp_path / "net.prototxt")
