"""Seeded random weights for nets published without their trained weights.

Most zoo prototxts come without a caffemodel. To check a conversion anyway,
keraffe fills every learned blob from a seeded generator, scaled so that
activations stay in a sane range through deep nets (He-style for weights,
positive variances and near-one scales for normalisation layers).
"""

from __future__ import annotations

import numpy as np

from keraffe.caffe.net import CaffeNet


def _layer_blobs(type_name: str, shapes, rng: np.random.Generator) -> list[np.ndarray]:
    blobs = []
    for index, shape in enumerate(shapes):
        shape = tuple(shape)
        size = int(np.prod(shape)) if shape else 1
        if type_name in ("BatchNorm", "keraffe.BatchNormScale") and index < 3:
            value = [rng.normal(0.0, 0.1, shape), rng.uniform(0.5, 1.5, shape), np.ones(shape)][index]
        elif type_name == "BN":
            value = [rng.uniform(0.5, 1.5, shape), rng.uniform(-0.1, 0.1, shape),
                     rng.normal(0.0, 0.1, shape), rng.uniform(0.5, 1.5, shape)][index]
        elif type_name in ("Scale",) and index == 0:
            value = rng.uniform(0.5, 1.5, shape)
        elif type_name == "PReLU":
            value = rng.uniform(0.05, 0.3, shape)
        elif type_name == "Normalize":
            value = rng.uniform(0.5, 2.0, shape)
        elif index == 0 and len(shape) >= 2:
            fan_in = size // shape[0] if type_name != "Deconvolution" else size // shape[1]
            value = rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), shape)
        else:
            value = rng.uniform(-0.1, 0.1, shape)
        blobs.append(np.asarray(value, dtype=np.float32).reshape(shape))
    return blobs


def seeded_weights(net: CaffeNet, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Weights for every layer of ``net`` that has learned blobs, keyed by layer name."""
    rng = np.random.default_rng(seed)
    weights: dict[str, list[np.ndarray]] = {}
    for node in net.layers:
        if node.shapes is None or not node.shapes.params or node.name in weights:
            continue
        if node.type == "Parameter" and node.outputs[0] in net.inputs:
            continue  # an input of the net (a Parameter with no blob), fed like the others
        if any((node.name, i) in net.shared_params for i in range(len(node.shapes.params))):
            owner, _ = net.shared_params[(node.name, 0)]
            weights[node.name] = weights.get(owner) or _layer_blobs(node.type, node.shapes.params, rng)
            continue
        shapes = node.shapes.params[: node.shapes.required_params or len(node.shapes.params)]
        if node.type == "BN":
            shapes = node.shapes.params
        weights[node.name] = _layer_blobs(node.type, shapes, rng)
    return weights


def attach_seeded_weights(net: CaffeNet, seed: int = 0) -> CaffeNet:
    """Give every layer of ``net`` seeded weights (in place) and return it."""
    weights = seeded_weights(net, seed)
    for node in net.layers:
        if node.name in weights:
            node.weights = weights[node.name]
    return net
