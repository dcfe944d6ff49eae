"""keras_hub's CNN vision backbones, Keras -> Caffe (target caffe1), judged in real Caffe and OpenCV.

Each backbone family is built from constructor arguments (small configurations,
no presets: presets need downloads), at a non-square input size, with seeded
normal weights (variances positive). MobileNet's, EfficientNet's and HGNetV2's
blocks are composite layers (InvertedResidualBlock, MBConvBlock, HGNetV2Stage,
...) that keraffe converts by inlining their calls; others use keras.ops in
their graphs (CSPNet's split, ResNetV2's padding with -inf, HGNetV2's
Variable times a tensor). Every export is compared with Keras' predict on a
seeded input at every Caffe blob that holds a tensor of the model (the
backbone's own layers and its blocks' outputs), in real Caffe and in OpenCV
4.x DNN; the largest relative error (max abs error over max |reference|) is
recorded, with what the export is made of.

    python bench/hub_backbones.py [--backbones MobileNet ...] [--out bench/results/keras_hub.json]

tests/convert/keras_to_caffe/test_keras_hub.py builds the same backbones from
BACKBONES below.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench/fidelity.py: how an export is judged, shared with keras.applications

#: The input every backbone is built for: (height, width, channels), not square.
IMAGE = (64, 48, 3)

#: Family -> (keras_hub.models class, constructor arguments). Small, but every block type of the family.
BACKBONES = {
    "ResNet": ("ResNetBackbone", dict(
        input_conv_filters=[16], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 2], stackwise_num_strides=[1, 2], block_type="bottleneck_block")),
    "ResNetV2": ("ResNetBackbone", dict(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 2], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=True)),
    "MobileNet": ("MobileNetBackbone", dict(
        stackwise_expansion=[[40, 56], [64, 144]], stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[16, 16], [24, 24]], stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]], stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]], stackwise_padding=[[1, 1], [2, 2]],
        output_num_filters=64, input_activation="hard_swish", output_activation="hard_swish", input_num_filters=16,
        depthwise_filters=8, depthwise_stride=2, depthwise_residual=False, squeeze_and_excite=0.5,
        last_layer_filter=48)),
    "EfficientNet": ("EfficientNetBackbone", dict(
        stackwise_kernel_sizes=[3, 3, 3], stackwise_num_repeats=[1, 2, 1], stackwise_input_filters=[16, 16, 24],
        stackwise_output_filters=[16, 24, 32], stackwise_expansion_ratios=[1, 4, 4],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.25, 0.25], stackwise_strides=[1, 2, 2],
        stackwise_block_types=["fused", "unfused", "v1"], stackwise_force_input_filters=[0] * 3,
        stackwise_nores_option=[False] * 3, width_coefficient=1.0, depth_coefficient=1.0, num_features=64)),
    "DenseNet": ("DenseNetBackbone", dict(stackwise_num_repeats=[2, 2], growth_rate=8)),
    "VGG": ("VGGBackbone", dict(stackwise_num_repeats=[1, 2], stackwise_num_filters=[8, 16])),
    "Xception": ("XceptionBackbone", dict(stackwise_conv_filters=[[8, 16], [16, 32], [32, 32]],
                                          stackwise_pooling=[True, True, False])),
    "CSPNet": ("CSPNetBackbone", dict(
        stem_filters=16, stem_kernel_size=3, stem_strides=1, stackwise_strides=2, stackwise_depth=[1, 2],
        stackwise_num_filters=[16, 24], down_growth=True, bottle_ratio=(0.5, 1.0), block_ratio=(1.0, 0.5),
        expand_ratio=(2.0, 1.0), block_type="dark_block", stage_type="csp", stem_padding="same")),
    "HGNetV2": ("HGNetV2Backbone", dict(
        depths=[1, 1], embedding_size=16, hidden_sizes=[32, 48], stem_channels=[3, 8, 16], hidden_act="relu",
        use_learnable_affine_block=True, stackwise_stage_filters=[[16, 8, 32, 1, 1, 3], [32, 16, 48, 1, 1, 3]],
        apply_downsample=[False, True], use_lightweight_conv_block=[False, True])),
}


def build(family: str, seed: int = 0):
    """The family's backbone for IMAGE, its weights seeded normals (variances |normal| + 0.5)."""
    import keras
    import keras_hub.models
    import numpy as np

    class_name, kwargs = BACKBONES[family]
    keras.utils.set_random_seed(seed)
    shape_key = "input_shape" if class_name == "EfficientNetBackbone" else "image_shape"
    model = getattr(keras_hub.models, class_name)(**kwargs, **{shape_key: IMAGE})
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "variance" in variable.path.rsplit("/", 1)[-1]:
            variable.assign((np.abs(rng.standard_normal(shape)) + 0.5).astype(variable.dtype))
        else:
            variable.assign((0.5 * rng.standard_normal(shape)).astype(variable.dtype))
    return model


def measure(family: str) -> dict:
    from fidelity import judge

    model = build(family)
    return {"input": "x".join(str(d) for d in IMAGE[:2]), "parameters": int(model.count_params()), **judge(model)}


def main(argv=None) -> int:
    from fidelity import run

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "keras_hub.json")
    args = parser.parse_args(argv)
    run(args.backbones, measure, args.out, BACKBONES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
