"""Small seeded models with every coupling the channel planner knows, for the structured pruning tests."""

from __future__ import annotations

import keras
import numpy as np


def randomise_batchnorm(model, seed: int = 0, beta_std: float = 0.5) -> None:
    """Non-trivial BN statistics, so removed channels leave non-zero constants behind.

    Deep nets (keras.applications) take a smaller ``beta_std`` so their activations stay moderate.
    """
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            values = [rng.uniform(0.5, 1.5, shapes[0]), rng.normal(0, beta_std, shapes[1]),
                      rng.normal(0, 0.1, shapes[2]), rng.uniform(0.5, 1.5, shapes[3])]
            layer.set_weights([v.astype(np.float32) for v in values])


def residual_concat_model():
    """Conv-BN-ReLU, a residual Add, a 'valid' 3x3 conv, Concatenate, Flatten -> Dense."""
    inputs = keras.Input((10, 10, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.Conv2D(8, 1, name="branch")(x)
    y = keras.layers.BatchNormalization(name="branch_bn")(y)
    x = keras.layers.Add(name="add")([x, y])
    z = keras.layers.Conv2D(6, 3, padding="valid", name="valid3x3")(x)
    z = keras.layers.BatchNormalization(name="valid_bn")(z)
    cropped = keras.layers.Cropping2D(1, name="crop")(x)
    x = keras.layers.Concatenate(name="concat")([z, cropped])
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(4, name="logits")(x)
    model = keras.Model(inputs, outputs, name="residual_concat")
    randomise_batchnorm(model)
    return model


def zero_filters(model, layer_name: str, filters) -> None:
    """Zero the given output filters (kernel slices and bias) of a Conv, Dense or SeparableConv layer."""
    layer = model.get_layer(layer_name)
    filters = list(filters)
    values = []
    for variable, value in zip(layer.weights, layer.get_weights()):
        if variable.name in ("kernel", "pointwise_kernel"):
            axis = value.ndim - 2 if "Transpose" in type(layer).__name__ else value.ndim - 1
            index = [slice(None)] * value.ndim
            index[axis] = filters
            value[tuple(index)] = 0.0
        elif variable.name == "bias":
            value[filters] = 0.0
        values.append(value)
    layer.set_weights(values)


def squeeze_excite_model():
    """MobileNetV2/EfficientNet style: expand, depthwise, squeeze-excite gate (broadcast Multiply), project."""
    inputs = keras.Input((8, 8, 4), name="image")
    x = keras.layers.Conv2D(12, 1, use_bias=False, name="expand")(inputs)
    x = keras.layers.BatchNormalization(name="expand_bn")(x)
    x = keras.layers.Activation("swish", name="expand_act")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    se = keras.layers.GlobalAveragePooling2D(name="se_squeeze")(x)
    se = keras.layers.Reshape((1, 1, 12), name="se_reshape")(se)
    se = keras.layers.Conv2D(3, 1, activation="swish", name="se_reduce")(se)
    se = keras.layers.Conv2D(12, 1, activation="sigmoid", name="se_expand")(se)
    x = keras.layers.Multiply(name="se_excite")([x, se])
    x = keras.layers.SeparableConv2D(6, 3, padding="same", name="sep")(x)
    x = keras.layers.Conv2DTranspose(5, 2, strides=2, name="up")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="squeeze_excite")
    randomise_batchnorm(model)
    return model


def nested_model():
    """A functional block used inside an outer model, with a residual Add across the boundary."""
    block_in = keras.Input((6, 6, 8), name="block_in")
    b = keras.layers.Conv2D(8, 3, padding="same", name="inner_conv")(block_in)
    b = keras.layers.BatchNormalization(name="inner_bn")(b)
    block = keras.Model(block_in, b, name="block")
    inputs = keras.Input((6, 6, 3), name="image")
    x = keras.layers.Conv2D(8, 1, name="outer_conv")(inputs)
    x = keras.layers.Add(name="outer_add")([x, block(x)])
    x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="logits")(x)
    model = keras.Model(inputs, outputs, name="nested")
    randomise_batchnorm(model)
    return model


@keras.saving.register_keras_serializable(package="keraffe_tests")
class ChannelShuffle(keras.layers.Layer):
    """A layer the planner has never heard of: it reverses the channels."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=-1)


def barrier_model():
    inputs = keras.Input((6, 6, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="before_barrier")(inputs)
    x = ChannelShuffle(name="shuffle")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="after_barrier")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="logits")(x)
    return keras.Model(inputs, outputs, name="barrier")


def images(shape, count: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, *shape)).astype(np.float32)


#: Small keras_hub CNN backbones, built from constructor arguments (presets would need downloads).
KERAS_HUB_IMAGE = (32, 40, 3)


def keras_hub_backbone(family: str):
    """A small seeded keras_hub backbone of one family; its blocks are composite layers (MobileNet, EfficientNet,
    HGNetV2) or functional stages with keras.ops calls (CSPNet's channel split, ResNetV2's pad)."""
    import keras_hub

    models = keras_hub.models
    keras.utils.set_random_seed(0)
    image = KERAS_HUB_IMAGE
    builders = {
        "ResNet": lambda: models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32],
            stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="bottleneck_block",
            use_pre_activation=False, image_shape=image),
        "MobileNet": lambda: models.MobileNetBackbone(
            stackwise_expansion=[[40, 56], [64, 72]], stackwise_num_blocks=[2, 2],
            stackwise_num_filters=[[16, 16], [24, 24]], stackwise_kernel_size=[[3, 3], [5, 5]],
            stackwise_num_strides=[[2, 1], [2, 1]], stackwise_se_ratio=[[None, None], [0.25, 0.25]],
            stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
            stackwise_padding=[[1, 1], [2, 2]], output_num_filters=64, depthwise_filters=8, depthwise_stride=1,
            depthwise_residual=False, last_layer_filter=64, squeeze_and_excite=0.5, image_shape=image),
        "EfficientNet": lambda: models.EfficientNetBackbone(
            stackwise_kernel_sizes=[3, 3, 3], stackwise_num_repeats=[1, 1, 1], stackwise_input_filters=[16, 16, 24],
            stackwise_output_filters=[16, 24, 32], stackwise_expansion_ratios=[1, 4, 4],
            stackwise_squeeze_and_excite_ratios=[0.0, 0.0, 0.25], stackwise_strides=[1, 2, 2],
            stackwise_block_types=["fused", "fused", "unfused"], width_coefficient=1.0, depth_coefficient=1.0,
            input_shape=image, num_features=64),
        "DenseNet": lambda: models.DenseNetBackbone(stackwise_num_repeats=[2, 2], image_shape=image, growth_rate=8),
        "CSPNet": lambda: models.CSPNetBackbone(
            stem_filters=16, stem_kernel_size=3, stem_strides=1, stackwise_depth=[1, 1], stackwise_strides=[2, 2],
            stackwise_num_filters=[16, 32], block_type="dark_block", stage_type="csp", expand_ratio=[2.0, 2.0],
            block_ratio=[1.0, 1.0], bottle_ratio=[0.5, 0.5], down_growth=True, stem_padding="same",
            image_shape=image),
        "HGNetV2": lambda: models.HGNetV2Backbone(
            depths=[1, 1], embedding_size=16, hidden_sizes=[32, 64], stem_channels=[3, 8, 16], hidden_act="relu",
            use_learnable_affine_block=False, stackwise_stage_filters=[(16, 8, 32, 1, 2, 3), (32, 16, 64, 1, 2, 3)],
            apply_downsample=[False, True], use_lightweight_conv_block=[False, True], image_shape=image),
    }
    model = builders[family]()
    randomise_batchnorm(model, beta_std=0.2)
    return model


def _conv_bn_silu(x, filters, kernel, name, strides=1):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.Activation("silu", name=f"{name}_silu")(x)


def _bottleneck(x, filters, name):
    y = _conv_bn_silu(x, filters, 3, f"{name}_a")
    y = _conv_bn_silu(y, filters, 3, f"{name}_b")
    return keras.layers.Add(name=f"{name}_add")([x, y])


def _csp_block(x, filters, name, split: bool):
    """YOLOv8's C2f (split=True: one 1x1 conv, its output split in two halves along the channels) or
    YOLOv5's C3 (split=False: two parallel 1x1 convs); a bottleneck on one half, then concat and a 1x1."""
    half = filters // 2
    if split:
        both = _conv_bn_silu(x, 2 * half, 1, f"{name}_cv1")
        keep, work = keras.ops.split(both, 2, axis=-1)
    else:
        keep = _conv_bn_silu(x, half, 1, f"{name}_cv1")
        work = _conv_bn_silu(x, half, 1, f"{name}_cv2")
    worked = _bottleneck(work, half, f"{name}_m")
    joined = keras.layers.Concatenate(name=f"{name}_cat")([keep, work, worked] if split else [keep, worked])
    return _conv_bn_silu(joined, filters, 1, f"{name}_out")


def yolo_detector(split: bool = True, image=(64, 64, 3), classes: int = 3, anchors: int = 3):
    """A small YOLO-style detector: CSP blocks (C2f with a channel split, or C3 without), an SPPF (max pools
    concatenated), a neck that upsamples and concatenates across two scales, and a head per scale whose
    channels are anchors x (5 + classes)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(image, name="image")
    x = _conv_bn_silu(inputs, 16, 3, "stem", strides=2)
    x = _conv_bn_silu(x, 32, 3, "down1", strides=2)
    p3 = _csp_block(x, 32, "c3", split)
    x = _conv_bn_silu(p3, 64, 3, "down2", strides=2)
    x = _csp_block(x, 64, "c4", split)
    s = _conv_bn_silu(x, 32, 1, "sppf_cv1")
    pools = [s]
    for index in range(2):
        pools.append(keras.layers.MaxPooling2D(5, strides=1, padding="same", name=f"sppf_pool{index}")(pools[-1]))
    p4 = _conv_bn_silu(keras.layers.Concatenate(name="sppf_cat")(pools), 64, 1, "sppf_cv2")
    up = keras.layers.UpSampling2D(2, name="neck_up")(p4)
    n3 = _csp_block(keras.layers.Concatenate(name="neck_cat")([up, p3]), 32, "n3", split)
    heads = []
    for name, feature in (("head_p3", n3), ("head_p4", p4)):
        y = _conv_bn_silu(feature, 32, 3, f"{name}_conv")
        heads.append(keras.layers.Conv2D(anchors * (5 + classes), 1, name=name)(y))
    model = keras.Model(inputs, heads, name="yolo_c2f" if split else "yolo_c3")
    randomise_batchnorm(model, beta_std=0.2)
    return model


def silence_planned_channels(plan) -> None:
    """Make every channel a plan removes carry exact zeros in the original model.

    The removed units' own weights are zeroed (as GradualChannelPruning masks
    them) and every BatchNormalization they pass gets beta and moving mean 0
    there, so nothing is left to fold: the pruned model must then compute
    exactly what the original does.
    """
    from keraffe.pruning.structured import sources

    graph, removed = plan.graph, plan.removed
    for group in graph.groups:
        gone = np.isin(group.channels, removed)
        for name in group.sources if gone.any() else ():
            layer = graph.layers[name]
            units = group.filters[name][gone]
            masked = np.zeros(sources.unit_count(layer), dtype=bool)
            masked[units[units >= 0]] = True
            for position, mask in sources.unit_masks(layer, masked):
                variable = layer.weights[position]
                variable.assign(keras.ops.convert_to_numpy(variable) * mask)
    for record in graph.records:
        if type(record.operation).__name__ == "BatchNormalization":
            gone = ~graph.alive(record.in_layouts[0], removed)
            gamma, beta, mean, variance = record.operation.get_weights()
            beta[gone], mean[gone] = 0.0, 0.0
            record.operation.set_weights([gamma, beta, mean, variance])


def recurrent_model(kind: str):
    """Small seeded sequence models: the recurrent families channel pruning cuts as gate groups.

    * "text": Embedding -> LSTM -> GRU (reset_after) -> Dense;
    * "gru_v1": Conv1D -> BN -> GRU(reset_after=False) -> Dense, so constants reach the GRU's kernel;
    * "bidirectional": Bidirectional(LSTM, concat) -> Bidirectional(GRU, sum) -> SimpleRNN -> Dense;
    * "time_distributed": TimeDistributed(Conv2D) -> TimeDistributed(BN) -> TimeDistributed(pool)
      -> LSTM(return_sequences) -> TimeDistributed(Dense).
    """
    keras.utils.set_random_seed(0)
    L = keras.layers
    if kind == "text":
        tokens = keras.Input((7,), dtype="int32", name="tokens")
        x = L.Embedding(20, 12, name="embed")(tokens)
        x = L.LSTM(10, return_sequences=True, name="lstm")(x)
        x = L.GRU(8, name="gru")(x)
        outputs = L.Dense(3, name="logits")(x)
        inputs = tokens
    elif kind == "gru_v1":
        inputs = keras.Input((6, 4), name="signal")
        x = L.Conv1D(10, 1, name="conv")(inputs)
        x = L.BatchNormalization(name="conv_bn")(x)
        x = L.GRU(8, reset_after=False, return_sequences=True, name="gru")(x)
        x = L.LSTM(6, name="lstm")(x)
        outputs = L.Dense(2, name="logits")(x)
    elif kind == "bidirectional":
        inputs = keras.Input((5, 4), name="signal")
        x = L.Bidirectional(L.LSTM(6, return_sequences=True), name="bi_lstm")(inputs)
        x = L.Bidirectional(L.GRU(5, return_sequences=True), merge_mode="sum", name="bi_gru")(x)
        x = L.SimpleRNN(6, name="rnn")(x)
        outputs = L.Dense(2, name="logits")(x)
    elif kind == "time_distributed":
        inputs = keras.Input((4, 6, 6, 3), name="clip")
        x = L.TimeDistributed(L.Conv2D(8, 3, padding="same"), name="td_conv")(inputs)
        x = L.TimeDistributed(L.BatchNormalization(), name="td_bn")(x)
        x = L.TimeDistributed(L.GlobalAveragePooling2D(), name="td_pool")(x)
        x = L.LSTM(6, return_sequences=True, name="lstm")(x)
        outputs = L.TimeDistributed(L.Dense(2), name="td_logits")(x)
    else:
        raise ValueError(kind)
    model = keras.Model(inputs, outputs, name=kind)
    rng = np.random.default_rng(1)
    for layer in model._flatten_layers():  # biases away from zero, so removed units leave something behind
        if layer.weights and type(layer).__name__ in ("LSTM", "GRU", "SimpleRNN", "Bidirectional", "Dense",
                                                      "Conv1D", "Conv2D"):
            layer.set_weights([v if v.ndim > 1 and v.shape[0] != 2 else v + rng.normal(0, 0.3, v.shape)
                               .astype(np.float32) for v in layer.get_weights()])
    randomise_batchnorm(model)
    return model
