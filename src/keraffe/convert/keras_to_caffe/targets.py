"""What each deployment target of Keras -> Caffe accepts.

``caffe1`` is the Caffe 1.0 release (April 2017): the layer types every Caffe
build, vendor NPU toolchain and converter knows. Pooling there always rounds
up. ``caffe`` is BVLC master, which adds Clip, Swish and pooling's round_mode.
``opencv`` is what OpenCV 4.x's Caffe importer runs: the forks' ReLU6, Interp,
Permute and Normalize, pooling's ``ceil_mode``, but not Caffe's Bias,
Threshold, Tile, Reduction, DummyData or Parameter layers. ``nnie``, ``ascend``
and ``rknn`` are NPU toolchains (:mod:`keraffe.targets`): the Caffe 1.0 types
each one lists, then its exact rewrites and its check.
"""

from __future__ import annotations

import dataclasses

from keraffe.caffe.prototxt import Dialect
from keraffe.caffe.releases import CAFFE_1_0_TYPES

OPENCV_TYPES = frozenset({
    "AbsVal", "BNLL", "BatchNorm", "Concat", "Convolution", "Crop", "Deconvolution", "Dropout", "ELU", "Eltwise",
    "Exp", "Flatten", "InnerProduct", "Input", "LRN", "Log", "MVN", "Pooling", "Power", "PReLU", "ReLU", "Reshape",
    "Scale", "Sigmoid", "Silence", "Slice", "Softmax", "Split", "TanH", "ReLU6", "Swish", "Interp", "Permute",
    "Normalize", "PriorBox", "DetectionOutput", "ShuffleChannel",
})


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    layer_types: frozenset[str]
    dialect: Dialect
    #: Pooling can round down (round_mode FLOOR / ceil_mode false).
    floor_pooling: bool
    description: str
    #: The NPU toolchain profile (keraffe.targets) whose rewrites and check run on the result, if any.
    profile: str | None = None

    def allows(self, *types: str) -> bool:
        return all(t in self.layer_types for t in types)


TARGETS = {
    "caffe1": Target("caffe1", CAFFE_1_0_TYPES, Dialect.BVLC, False,
                     "Caffe 1.0 layer types only: loads in any Caffe and vendor toolchains"),
    "caffe": Target("caffe", CAFFE_1_0_TYPES | {"Clip", "Swish"}, Dialect.BVLC, True,
                    "BVLC master: Caffe 1.0 plus Clip, Swish and pooling round_mode"),
    "opencv": Target("opencv", OPENCV_TYPES, Dialect.FORK, True,
                     "what OpenCV 4.x DNN imports, fork layers (ReLU6, Interp, Permute) included"),
}



def _npu_targets() -> dict[str, Target]:
    """nnie, ascend and rknn: the Caffe 1.0 subset each toolchain lists, pooling rounding up as in Caffe 1.0.

    Which rounding flag a vendor's parser reads is undocumented, so none is
    written; :mod:`keraffe.targets.fit` then makes the result fit the
    toolchain and :mod:`keraffe.targets.check` reports what does not.
    """
    from keraffe.targets import profiles

    return {name: Target(name, profile.keras_export_types, Dialect.BVLC, False, profile.description, name)
            for name, profile in profiles().items()}


TARGETS.update(_npu_targets())


def get_target(name: str) -> Target:
    from keraffe.errors import KeraffeError

    if name not in TARGETS:
        raise KeraffeError(f"target must be one of {', '.join(TARGETS)}, received {name!r}")
    return TARGETS[name]
