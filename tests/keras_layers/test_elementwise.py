"""Power, Exp, Log, Threshold, AbsVal, Clip, Swish and WeightedSum against Caffe's formulas.

References from BVLC's power_layer.cpp (shift + scale * x) ^ power,
exp_layer.cpp base ^ (shift + scale * x) (base -1 meaning e), log_layer.cpp
log(shift + scale * x) / log(base), threshold_layer.cpp (x > t), clip_layer.cpp
max(min, min(x, max)), swish_layer.cpp x * sigmoid(beta * x), and Eltwise SUM
with coefficients.
"""

from __future__ import annotations

import numpy as np
import pytest

from keraffe.keras_layers import AbsVal, Clip, Exp, Log, Power, Swish, Threshold, WeightedSum

from ._common import check_layer, rng

pytestmark = pytest.mark.backends

X = rng(1).standard_normal((2, 5, 4, 3)).astype(np.float32)
POSITIVE = np.abs(X) + np.float32(0.25)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


CASES = [
    ("power_square", Power(power=2.0, scale=0.5, shift=1.0), X, lambda x: (1 + 0.5 * x) ** 2),
    ("power_cube", Power(power=3.0), X, lambda x: x ** 3),
    ("power_linear", Power(scale=-2.0, shift=0.3), X, lambda x: 0.3 - 2 * x),
    ("power_sqrt", Power(power=0.5, scale=2.0), POSITIVE, lambda x: np.sqrt(2 * x)),
    ("power_reciprocal", Power(power=-1.0, shift=0.1), POSITIVE, lambda x: 1 / (x + 0.1)),
    ("power_zero", Power(power=0.0), X, lambda x: np.ones_like(x)),
    ("exp_e", Exp(), X, np.exp),
    ("exp_base2", Exp(base=2.0, scale=0.5, shift=0.3), X, lambda x: 2.0 ** (0.3 + 0.5 * x)),
    ("log_e", Log(), POSITIVE, np.log),
    ("log_base10", Log(base=10.0, scale=2.0, shift=0.5), POSITIVE, lambda x: np.log10(0.5 + 2 * x)),
    ("threshold", Threshold(threshold=0.3), X, lambda x: (x > 0.3).astype(np.float64)),
    ("threshold_at_values", Threshold(threshold=0.0), np.array([[-1.0, 0.0, 1e-7, 2.0]], np.float32),
     lambda x: (x > 0).astype(np.float64)),
    ("absval", AbsVal(), X, np.abs),
    ("clip", Clip(min=-0.5, max=0.7), X, lambda x: np.maximum(-0.5, np.minimum(x, 0.7))),
    ("clip_inverted_bounds", Clip(min=0.5, max=-0.5), X, lambda x: np.maximum(0.5, np.minimum(x, -0.5))),
    ("swish_beta1", Swish(beta=1.0), X, lambda x: x * sigmoid(x)),
    ("swish_beta2", Swish(beta=2.0), X, lambda x: x * sigmoid(2 * x)),
]


@pytest.mark.parametrize("name, layer, x, reference", CASES, ids=[c[0] for c in CASES])
def test_elementwise_layer(name, layer, x, reference, tmp_path):
    check_layer(layer, x, reference(x.astype(np.float64)), tmp_path)


@pytest.mark.parametrize("coefficients", [(0.5, -2.0, 1.0), (1.0, 1.0), (3.0, -1.0)], ids=str)
def test_weighted_sum(coefficients, tmp_path):
    arrays = [rng(i).standard_normal((2, 3, 4, 5)).astype(np.float32) for i in range(len(coefficients))]
    expected = sum(c * a.astype(np.float64) for c, a in zip(coefficients, arrays))
    check_layer(WeightedSum(coefficients), arrays, expected, tmp_path)
