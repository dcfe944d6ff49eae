"""keraffe.layout against plain NumPy: every move between Caffe's and Keras' orders, and the weights.

The references here are written out index by index (loops over positions,
convolutions computed by their definition), never with the function under
test, so a wrong permutation cannot agree with itself.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from keraffe import layout
from keraffe.layout import NHWC, NLC, Layout, flattened_nhwc, identity

RNG = np.random.default_rng(0)


def test_nhwc_reads_a_caffe_image_pixel_by_pixel():
    caffe = RNG.standard_normal((2, 3, 4, 5))
    keras = NHWC.to_keras(caffe)
    assert keras.shape == (2, 4, 5, 3)
    for n, c, h, w in itertools.product(range(2), range(3), range(4), range(5)):
        assert keras[n, h, w, c] == caffe[n, c, h, w]
    np.testing.assert_array_equal(NHWC.to_caffe(keras), caffe)


def test_sequences_are_channels_first_in_caffe():
    caffe = RNG.standard_normal((2, 3, 7))
    keras = NLC.to_keras(caffe)
    for n, c, t in itertools.product(range(2), range(3), range(7)):
        assert keras[n, t, c] == caffe[n, c, t]


def test_a_flattened_nhwc_tensor_maps_to_caffes_chw_flattening():
    c, h, w = 3, 2, 4
    image = RNG.standard_normal((2, c, h, w))
    caffe_flat = image.reshape(2, -1)  # Caffe's Flatten of NCHW
    keras_flat = np.stack([[image[n, ch, y, x] for y in range(h) for x in range(w) for ch in range(c)]
                           for n in range(2)])  # Keras' Flatten of NHWC
    lay = flattened_nhwc((c, h, w))
    np.testing.assert_array_equal(lay.to_keras(caffe_flat), keras_flat)
    np.testing.assert_array_equal(lay.to_caffe(keras_flat), caffe_flat)
    assert lay.caffe_shape((2, c * h * w)) == (2, c * h * w)


@pytest.mark.parametrize("perm", list(itertools.permutations(range(1, 4))))
def test_caffe_shape_and_axes_agree_for_every_permutation(perm):
    lay = Layout((0,) + perm)
    caffe = RNG.standard_normal((2, 3, 4, 5))
    keras = lay.axes_to_keras(caffe)
    assert lay.caffe_shape(keras.shape) == caffe.shape
    assert lay.keras_shape(caffe.shape) == keras.shape
    for index in itertools.product(*map(range, caffe.shape)):
        assert keras[tuple(index[a] for a in lay.perm)] == caffe[index]
    np.testing.assert_array_equal(lay.axes_to_caffe(keras), caffe)


@pytest.mark.parametrize("source, target", [(NHWC, identity(4)), (identity(4), NHWC), (NLC, identity(3)),
                                            (Layout((0, 3, 1, 2)), NHWC)])
def test_caffe_permute_order_moves_the_blob_into_the_target_layout(source, target):
    keras = RNG.standard_normal((2, 3, 4, 5)[: source.rank])
    blob = source.to_caffe(keras)
    order = layout.caffe_permute_order(source, target)
    moved = np.transpose(blob, order)  # Caffe's Permute: top axis j is bottom axis order[j]
    np.testing.assert_array_equal(moved, target.to_caffe(keras))


def _conv_nchw(x, weight, group=1):
    """Caffe's convolution by its definition: valid, stride 1; weight (O, I/g, kH, kW)."""
    n, c, h, w = x.shape
    o, per_group, kh, kw = weight.shape
    out = np.zeros((n, o, h - kh + 1, w - kw + 1))
    outputs_per_group = o // group
    for oc in range(o):
        first = (oc // outputs_per_group) * per_group
        for y in range(out.shape[2]):
            for z in range(out.shape[3]):
                out[:, oc, y, z] = np.einsum("nchw,chw->n", x[:, first:first + per_group, y:y + kh, z:z + kw],
                                             weight[oc])
    return out


def _conv_nhwc(x, kernel):
    """Keras' Conv2D by its definition: valid, stride 1; kernel (kH, kW, I, O)."""
    n, h, w, c = x.shape
    kh, kw, _, o = kernel.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, o))
    for y in range(out.shape[1]):
        for z in range(out.shape[2]):
            out[:, y, z, :] = np.einsum("nhwc,hwco->no", x[:, y:y + kh, z:z + kw, :], kernel)
    return out


def test_convolution_kernels_compute_the_same_convolution():
    x = RNG.standard_normal((1, 3, 6, 5))
    weight = RNG.standard_normal((4, 3, 3, 2))
    kernel = layout.conv_kernel_to_keras(weight)
    np.testing.assert_allclose(_conv_nhwc(NHWC.to_keras(x), kernel), NHWC.to_keras(_conv_nchw(x, weight)))
    np.testing.assert_array_equal(layout.conv_kernel_to_caffe(kernel), weight)


def test_depthwise_kernels_keep_caffes_channel_order():
    channels, multiplier = 3, 2
    weight = RNG.standard_normal((channels * multiplier, 1, 3, 3))
    kernel = layout.depthwise_kernel_to_keras(weight, channels)
    assert kernel.shape == (3, 3, channels, multiplier)
    for c, m in itertools.product(range(channels), range(multiplier)):
        np.testing.assert_array_equal(kernel[:, :, c, m], weight[c * multiplier + m, 0])
    np.testing.assert_array_equal(layout.depthwise_kernel_to_caffe(kernel), weight)
    x = RNG.standard_normal((1, channels, 5, 5))
    y = _conv_nchw(x, weight, group=channels)
    for c, m in itertools.product(range(channels), range(multiplier)):
        expected = _conv_nchw(x[:, c:c + 1], kernel[:, :, c, m].reshape(1, 1, 3, 3))
        np.testing.assert_allclose(y[:, c * multiplier + m], expected[:, 0])


def test_deconvolution_kernels_swap_input_and_output_axes():
    weight = RNG.standard_normal((5, 2, 3, 4))  # Caffe: (I, O, kH, kW)
    kernel = layout.deconv_kernel_to_keras(weight)  # Keras: (kH, kW, O, I)
    for i, o, y, z in itertools.product(range(5), range(2), range(3), range(4)):
        assert kernel[y, z, o, i] == weight[i, o, y, z]
    np.testing.assert_array_equal(layout.deconv_kernel_to_caffe(kernel), weight)


def test_conv1d_kernel_is_a_k_by_1_caffe_kernel():
    kernel = RNG.standard_normal((3, 4, 5))  # (k, C, O)
    weight = layout.conv1d_kernel_to_caffe(kernel)
    assert weight.shape == (5, 4, 3, 1)
    for t, c, o in itertools.product(range(3), range(4), range(5)):
        assert weight[o, c, t, 0] == kernel[t, c, o]


@pytest.mark.parametrize("lay, caffe_shape", [(flattened_nhwc((3, 2, 4)), (3, 2, 4)), (NHWC, (3, 2, 4)),
                                              (identity(4), (3, 2, 4)), (NLC, (3, 5))])
def test_dense_rows_follow_the_keras_flatten_order(lay, caffe_shape):
    """A Dense on Keras' flattened tensor with reordered rows equals Caffe's InnerProduct on its blob."""
    outputs = 6
    blob = RNG.standard_normal((2,) + caffe_shape)
    caffe_weight = RNG.standard_normal((outputs, int(np.prod(caffe_shape))))  # InnerProduct (N, K)
    expected = blob.reshape(2, -1) @ caffe_weight.T
    if lay.flattened_from is not None:
        keras_input = lay.to_keras(blob.reshape(2, -1))
    else:
        keras_input = lay.axes_to_keras(blob).reshape(2, -1)
    kernel = layout.dense_rows_caffe_to_keras(caffe_weight.T, lay, caffe_shape)
    np.testing.assert_allclose(keras_input @ kernel, expected)


def test_dense_rows_back_to_caffe_order_undo_the_reorder():
    chw = (3, 2, 4)
    kernel = RNG.standard_normal((24, 5))
    caffe_rows = layout.dense_rows_nhwc_to_nchw(kernel, chw)
    np.testing.assert_array_equal(layout.dense_rows_caffe_to_keras(caffe_rows, flattened_nhwc(chw), chw), kernel)


def test_volumes_are_channels_first_in_caffe():
    caffe = RNG.standard_normal((1, 2, 3, 4, 5))
    keras = layout.NDHWC.to_keras(caffe)
    for c, d, h, w in itertools.product(range(2), range(3), range(4), range(5)):
        assert keras[0, d, h, w, c] == caffe[0, c, d, h, w]


def test_conv3d_kernel_to_caffe_keeps_each_tap():
    kernel = RNG.standard_normal((2, 3, 4, 5, 6))  # (kD, kH, kW, I, O)
    weight = layout.conv3d_kernel_to_caffe(kernel)
    for d, h, w, i, o in itertools.product(range(2), range(3), range(4), range(5), range(6)):
        assert weight[o, i, d, h, w] == kernel[d, h, w, i, o]


@pytest.mark.parametrize("start", [identity(4), NHWC, Layout((0, 3, 1, 2))])
def test_dropping_transposing_and_adding_axes_only_relabel_the_blob(start):
    """Each helper describes the same blob after a Keras op that moves no data: checked value by value."""
    caffe = RNG.standard_normal((2, 3, 1, 5))
    keras = start.to_keras(caffe)
    # transpose: the Keras tensor's axes permuted, the blob unchanged
    axes = (0, 3, 1, 2)
    np.testing.assert_array_equal(layout.transposed(start, axes).to_keras(caffe), keras.transpose(axes))
    # a size-1 axis dropped from the Keras tensor and from the blob
    unit = [a for a in range(1, 4) if keras.shape[a] == 1][0]
    dropped = layout.without_axes(start, [unit])
    np.testing.assert_array_equal(dropped.to_keras(caffe.squeeze(start.perm[unit])), keras.squeeze(unit))
    # a new size-1 Keras axis held as a new last blob axis
    added = layout.with_unit_axis(start, 2)
    np.testing.assert_array_equal(added.to_keras(caffe[..., None]), np.expand_dims(keras, 2))
