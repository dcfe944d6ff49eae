"""The real files the fuzzer mutates, read in place from ../shared/zoo (never copied into the repository).

``bounded``: small files, so that ``make test``'s fixed-seed slice stays under
two minutes; ``long`` (``make fuzz``): every zoo file of each format. Weight
files come with the prototxt of their net.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ZOO = REPO.parent / "shared" / "zoo"

#: Which run: "bounded" (the default, make test) or "long" (make fuzz, bench/fuzz.py).
PROFILE = os.environ.get("KERAFFE_FUZZ_PROFILE", "bounded")
#: The seed of every hypothesis search in the run.
SEED = int(os.environ.get("KERAFFE_FUZZ_SEED", "20240612"))
#: Examples per test: the bounded counts, times this factor in a long run.
SCALE = int(os.environ.get("KERAFFE_FUZZ_SCALE", "1" if PROFILE == "bounded" else "10"))

BOUNDED = {
    "prototxt": ["lenet_mnist_trained/lenet.prototxt", "bvlc_cifar10_quick/cifar10_quick.prototxt",
                 "mtcnn/det1.prototxt", "legacy_v1_lenet/lenet_v1.prototxt", "legacy_v0_lenet/lenet_v0.prototxt",
                 "hyperlpr_finemapping/HorizonalFinemapping.prototxt", "bvlc_lenet/lenet_train_test.prototxt"],
    "caffemodel": [("mtcnn/det1.caffemodel", "mtcnn/det1.prototxt"),
                   ("hyperlpr_finemapping/HorizonalFinemapping_fp32_git.caffemodel",
                    "hyperlpr_finemapping/HorizonalFinemapping.prototxt")],
    "binaryproto": ["cifar10_quick_hdf5_caffemodel/mean.binaryproto"],
    "caffemodel_h5": [("cifar10_quick_hdf5_caffemodel/cifar10_quick_iter_5000.caffemodel.h5",
                       "cifar10_quick_hdf5_caffemodel/cifar10_quick.prototxt")],
    "keras": ["keras3_mnist_bn_keras/mnist_model.keras"],
    "keras_h5": ["keras_hyperlpr_char_judgement/char_judgement1.h5", "keras_mnist_cnn_h5/mnist_cnn.h5"],
}

#: Weight files whose net is not the folder's only prototxt.
_NET_OF = {
    "vanilla_cnn_landmarks/vanillaCNN.caffemodel": "vanilla_cnn_landmarks/vanilla_deploy.prototxt",
}


def _long() -> dict:
    def rel(path: Path) -> str:
        return str(path.relative_to(ZOO))

    def net_of(weights: Path) -> str | None:
        if rel(weights) in _NET_OF:
            return _NET_OF[rel(weights)]
        stem = weights.name.split(".caffemodel")[0]
        candidates = sorted(weights.parent.glob("*.prototxt"))
        same = [p for p in candidates if p.stem == stem]
        chosen = same or (candidates if len(candidates) == 1 else [p for p in candidates if "deploy" in p.name])
        return rel(chosen[0]) if chosen else None

    weights = [(rel(p), net_of(p)) for p in sorted(ZOO.rglob("*.caffemodel"))]
    h5 = [(rel(p), net_of(p)) for p in sorted(ZOO.rglob("*.caffemodel.h5"))]
    keras_h5 = [rel(p) for p in sorted(list(ZOO.rglob("*.h5")) + list(ZOO.rglob("*.hdf5")))
                if ".caffemodel" not in p.name]
    return {
        "prototxt": [rel(p) for p in sorted(ZOO.rglob("*.prototxt"))],
        "caffemodel": [pair for pair in weights if pair[1]],
        "binaryproto": [rel(p) for p in sorted(ZOO.rglob("*.binaryproto"))],
        "caffemodel_h5": [pair for pair in h5 if pair[1]],
        "keras": [rel(p) for p in sorted(ZOO.rglob("*.keras"))],
        "keras_h5": keras_h5,
    }


def seeds(fmt: str) -> list:
    """The zoo files (or (weights, prototxt) pairs) that ``fmt`` cases start from, in this run's profile."""
    return _long()[fmt] if PROFILE == "long" else BOUNDED[fmt]


def zoo_path(rel: str) -> Path:
    return ZOO / rel
