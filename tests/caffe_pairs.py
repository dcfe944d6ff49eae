"""Judging a Caffe -> Caffe pass: the net before and after, both run in real Caffe, every output compared."""

from __future__ import annotations

import numpy as np

from keraffe.caffe.net import CaffeNet, load_net, net_from_parameter
from keraffe.caffe.seeded import attach_seeded_weights


def load(tmp_path, text: str, name: str = "net") -> CaffeNet:
    """A hand-written prototxt loaded with seeded weights."""
    path = tmp_path / f"{name}.prototxt"
    path.write_text(text)
    return attach_seeded_weights(load_net(path))


def seeded_inputs(net: CaffeNet, seed: int = 0) -> dict[str, np.ndarray]:
    """Normal inputs: negative values too, so no rewrite passes by relying on signs."""
    rng = np.random.default_rng(seed)
    return {t.blob: rng.normal(size=net.shapes[t]).astype(np.float32) for t in net.inputs}


def rewritten_net(net: CaffeNet, rewritten) -> CaffeNet:
    return net_from_parameter(rewritten.net, rewritten.weights, net.source)


def assert_same_in_real_caffe(net: CaffeNet, rewritten, rtol: float = 0.0, inputs=None) -> dict:
    """Both nets in real Caffe on the same inputs: the same outputs, by name, to ``rtol`` (0: bit for bit)."""
    from keraffe.verify import run_reference

    after = rewritten_net(net, rewritten)
    outputs = sorted(t.blob for t in net.outputs)
    assert sorted(t.blob for t in after.outputs) == outputs
    inputs = inputs if inputs is not None else seeded_inputs(net)
    before_values = run_reference(net, inputs, outputs, "caffe")
    after_values = run_reference(after, inputs, outputs, "caffe")
    for blob in outputs:
        assert before_values[blob].shape == after_values[blob].shape, blob
        if rtol == 0:
            np.testing.assert_array_equal(after_values[blob], before_values[blob], err_msg=blob)
        else:
            np.testing.assert_allclose(after_values[blob], before_values[blob], rtol=rtol,
                                       atol=rtol * float(np.abs(before_values[blob]).max()), err_msg=blob)
    return before_values
