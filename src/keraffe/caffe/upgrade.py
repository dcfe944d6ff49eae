"""Bring any Caffe net to the current (V2) form, as Caffe's own upgrade code does.

Caffe has had three net formats: V0 (2013, ``layers { layer { type: "conv" } }``),
V1 (2014, ``layers { type: CONVOLUTION }``) and V2 (``layer { type: "Convolution" }``).
It also moved the input declaration from net fields into an ``Input`` layer and
data transformation fields into ``transform_param``. :func:`upgrade_net` applies
the same steps in the same order as Caffe's ``UpgradeNetAsNeeded``, then one
step of keraffe's own: the forks' ``ceil_mode`` becomes BVLC's ``round_mode``.

Every step returns notes on what it changed, so ``keraffe upgrade`` can say.
"""

from __future__ import annotations

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.errors import CaffeFormatError

V0_TO_V1_TYPE = {
    "accuracy": "ACCURACY",
    "bnll": "BNLL",
    "concat": "CONCAT",
    "conv": "CONVOLUTION",
    "data": "DATA",
    "dropout": "DROPOUT",
    "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN",
    "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL",
    "images": "IMAGE_DATA",
    "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT",
    "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING",
    "relu": "RELU",
    "sigmoid": "SIGMOID",
    "softmax": "SOFTMAX",
    "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT",
    "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

V1_TO_V2_TYPE = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# V0 field -> {V0 layer type: (V1 sub-message, field in it)}. "*" means every type.
# A field given for a type not listed is dropped, and the upgrade notes it.
_V0_FIELD_TARGETS: dict[str, dict[str, tuple[str, str]]] = {
    "num_output": {"conv": ("convolution_param", "num_output"),
                   "innerproduct": ("inner_product_param", "num_output")},
    "biasterm": {"conv": ("convolution_param", "bias_term"),
                 "innerproduct": ("inner_product_param", "bias_term")},
    "weight_filler": {"conv": ("convolution_param", "weight_filler"),
                      "innerproduct": ("inner_product_param", "weight_filler")},
    "bias_filler": {"conv": ("convolution_param", "bias_filler"),
                    "innerproduct": ("inner_product_param", "bias_filler")},
    "pad": {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")},
    "kernelsize": {"conv": ("convolution_param", "kernel_size"),
                   "pool": ("pooling_param", "kernel_size")},
    "group": {"conv": ("convolution_param", "group")},
    "stride": {"conv": ("convolution_param", "stride"), "pool": ("pooling_param", "stride")},
    "pool": {"pool": ("pooling_param", "pool")},
    "dropout_ratio": {"dropout": ("dropout_param", "dropout_ratio")},
    "local_size": {"lrn": ("lrn_param", "local_size")},
    "alpha": {"lrn": ("lrn_param", "alpha")},
    "beta": {"lrn": ("lrn_param", "beta")},
    "k": {"lrn": ("lrn_param", "k")},
    "source": {"data": ("data_param", "source"), "hdf5_data": ("hdf5_data_param", "source"),
               "images": ("image_data_param", "source"),
               "window_data": ("window_data_param", "source"),
               "infogain_loss": ("infogain_loss_param", "source")},
    "scale": {"*": ("transform_param", "scale")},
    "meanfile": {"*": ("transform_param", "mean_file")},
    "batchsize": {"data": ("data_param", "batch_size"),
                  "hdf5_data": ("hdf5_data_param", "batch_size"),
                  "images": ("image_data_param", "batch_size"),
                  "window_data": ("window_data_param", "batch_size")},
    "cropsize": {"*": ("transform_param", "crop_size")},
    "mirror": {"*": ("transform_param", "mirror")},
    "rand_skip": {"data": ("data_param", "rand_skip"), "images": ("image_data_param", "rand_skip")},
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": ("image_data_param", "new_height")},
    "new_width": {"images": ("image_data_param", "new_width")},
    "concat_dim": {"concat": ("concat_param", "concat_dim")},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
    "hdf5_output_param": {"hdf5_output": ("hdf5_output_param", "")},
}


def upgrade_net(net: pb.NetParameter, source: str = "<net>") -> tuple[pb.NetParameter, list[str]]:
    """Return a V2 copy of ``net`` and notes on each upgrade step that applied."""
    result = pb.NetParameter()
    result.CopyFrom(net)
    notes: list[str] = []
    if any(layer.HasField("layer") for layer in result.layers):
        result = _upgrade_v0_to_v1(result, notes)
        notes.append("V0 layers upgraded to V1")
    if _needs_data_transform_upgrade(result):
        _upgrade_data_transform(result)
        notes.append("data transformation fields moved into transform_param")
    if len(result.layers):
        if len(result.layer):
            raise CaffeFormatError(
                f"{source}: the net mixes V1 'layers' and V2 'layer' entries; Caffe refuses such nets"
            )
        result = _upgrade_v1_to_v2(result, notes)
        notes.append("V1 layers upgraded to V2")
    if len(result.input):
        _upgrade_input_fields(result, source)
        notes.append("input fields replaced by an Input layer")
    batch_norms = _upgrade_batch_norm_params(result)
    if batch_norms:
        notes.append(f"BatchNorm param specs frozen (lr_mult 0) in {batch_norms} layer(s)")
    ceil_modes = _upgrade_ceil_mode(result, source)
    if ceil_modes:
        notes.append(f"pooling ceil_mode written as round_mode in {ceil_modes} layer(s)")
    return result, notes


def net_version(net: pb.NetParameter) -> str:
    if any(layer.HasField("layer") for layer in net.layers):
        return "V0"
    if len(net.layers):
        return "V1"
    return "V2"


# ------------------------------------------------------------------ V0 -> V1


def _upgrade_v0_to_v1(net: pb.NetParameter, notes: list[str]) -> pb.NetParameter:
    padded = _fold_v0_padding_layers(net)
    result = pb.NetParameter()
    if padded.HasField("name"):
        result.name = padded.name
    for layer in padded.layers:
        _upgrade_v0_layer(layer, result.layers.add(), notes)
    result.input.extend(padded.input)
    result.input_dim.extend(padded.input_dim)
    if padded.HasField("force_backward"):
        result.force_backward = padded.force_backward
    return result


def _fold_v0_padding_layers(net: pb.NetParameter) -> pb.NetParameter:
    """V0 nets padded with separate 'padding' layers; later formats pad inside conv/pool."""
    result = pb.NetParameter()
    result.CopyFrom(net)
    del result.layers[:]
    last_producer: dict[str, int] = {name: -1 for name in net.input}
    for index, connection in enumerate(net.layers):
        layer = connection.layer
        if layer.type != "padding":
            result.layers.add().CopyFrom(connection)
        for j, blob in enumerate(connection.bottom):
            producer_index = last_producer.get(blob, -1)
            if producer_index < 0:
                continue
            producer = net.layers[producer_index]
            if producer.layer.type == "padding":
                if layer.type not in ("conv", "pool"):
                    raise CaffeFormatError(
                        f"V0 padding layer '{producer.layer.name}' feeds '{layer.name}' "
                        f"of type '{layer.type}'; only conv and pool can absorb padding"
                    )
                target = result.layers[-1]
                target.layer.pad = producer.layer.pad
                target.bottom[j] = producer.bottom[0]
        for blob in connection.top:
            last_producer[blob] = index
    return result


def _upgrade_v0_layer(connection: pb.V1LayerParameter, out: pb.V1LayerParameter, notes: list[str]) -> None:
    out.bottom.extend(connection.bottom)
    out.top.extend(connection.top)
    if not connection.HasField("layer"):
        return
    v0 = connection.layer
    if v0.HasField("name"):
        out.name = v0.name
    v0_type = v0.type
    if v0.HasField("type"):
        out.type = pb.V1LayerParameter.LayerType.Value(V0_TO_V1_TYPE.get(v0_type, "NONE"))
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    for field, targets in _V0_FIELD_TARGETS.items():
        if not v0.HasField(field):
            continue
        target = targets.get(v0_type) or targets.get("*")
        if target is None:
            notes.append(f"V0 layer '{v0.name}' of type '{v0_type}': field {field} dropped")
            continue
        message_name, target_field = target
        message = getattr(out, message_name)
        value = getattr(v0, field)
        if not target_field:
            message.CopyFrom(value)
        elif field == "pool":
            message.pool = pb.PoolingParameter.PoolMethod.Value(
                pb.V0LayerParameter.PoolMethod.Name(value)
            )
        else:
            _assign(message, target_field, value)


def _assign(message, field: str, value) -> None:
    descriptor = message.DESCRIPTOR.fields_by_name[field]
    if is_repeated_field(descriptor):
        getattr(message, field).append(value)
    elif descriptor.message_type is not None:
        getattr(message, field).CopyFrom(value)
    else:
        setattr(message, field, value)


def is_repeated_field(descriptor) -> bool:
    """protobuf 5.29+ has ``is_repeated``; older releases only ``label``."""
    if hasattr(descriptor, "is_repeated"):
        return descriptor.is_repeated
    return descriptor.label == descriptor.LABEL_REPEATED


# ------------------------------------------------------------------ data transformation


_DATA_TYPES = {"DATA": "data_param", "IMAGE_DATA": "image_data_param", "WINDOW_DATA": "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


def _data_layer_param(layer: pb.V1LayerParameter):
    type_name = pb.V1LayerParameter.LayerType.Name(layer.type)
    param_name = _DATA_TYPES.get(type_name)
    return getattr(layer, param_name) if param_name else None


def _needs_data_transform_upgrade(net: pb.NetParameter) -> bool:
    for layer in net.layers:
        param = _data_layer_param(layer)
        if param is not None and any(param.HasField(f) for f in _TRANSFORM_FIELDS):
            return True
    return False


def _upgrade_data_transform(net: pb.NetParameter) -> None:
    for layer in net.layers:
        param = _data_layer_param(layer)
        if param is None:
            continue
        for field in _TRANSFORM_FIELDS:
            if param.HasField(field):
                setattr(layer.transform_param, field, getattr(param, field))
                param.ClearField(field)


# ------------------------------------------------------------------ V1 -> V2

_V1_COPIED_PARAMS = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param",
    "convolution_param", "data_param", "dropout_param", "dummy_data_param", "eltwise_param",
    "exp_param", "hdf5_data_param", "hdf5_output_param", "hinge_loss_param", "image_data_param",
    "infogain_loss_param", "inner_product_param", "lrn_param", "memory_data_param", "mvn_param",
    "pooling_param", "power_param", "relu_param", "sigmoid_param", "softmax_param",
    "slice_param", "tanh_param", "threshold_param", "window_data_param", "transform_param",
    "loss_param",
)


def _upgrade_v1_to_v2(net: pb.NetParameter, notes: list[str]) -> pb.NetParameter:
    result = pb.NetParameter()
    result.CopyFrom(net)
    del result.layers[:]
    del result.layer[:]
    for v1 in net.layers:
        layer = result.layer.add()
        layer.bottom.extend(v1.bottom)
        layer.top.extend(v1.top)
        if v1.HasField("name"):
            layer.name = v1.name
        layer.include.extend(v1.include)
        layer.exclude.extend(v1.exclude)
        if v1.HasField("type"):
            layer.type = V1_TO_V2_TYPE.get(pb.V1LayerParameter.LayerType.Name(v1.type), "")
        layer.blobs.extend(v1.blobs)
        count = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
        for i in range(count):
            spec = layer.param.add()
            if i < len(v1.param):
                spec.name = v1.param[i]
            if i < len(v1.blob_share_mode):
                spec.share_mode = v1.blob_share_mode[i]
            if i < len(v1.blobs_lr):
                spec.lr_mult = v1.blobs_lr[i]
            if i < len(v1.weight_decay):
                spec.decay_mult = v1.weight_decay[i]
        layer.loss_weight.extend(v1.loss_weight)
        for param_name in _V1_COPIED_PARAMS:
            if v1.HasField(param_name):
                getattr(layer, param_name).CopyFrom(getattr(v1, param_name))
        if v1.HasField("layer"):
            notes.append(f"V1 layer '{v1.name}' still held a V0 layer; it was dropped")
    return result


# ------------------------------------------------------------------ inputs and BatchNorm


def _upgrade_input_fields(net: pb.NetParameter, source: str) -> None:
    has_shape = len(net.input_shape) > 0
    has_dim = len(net.input_dim) > 0
    if has_shape or has_dim:
        if has_shape and len(net.input_shape) != len(net.input):
            raise CaffeFormatError(
                f"{source}: {len(net.input)} input(s) but {len(net.input_shape)} input_shape entries"
            )
        if has_dim and not has_shape and len(net.input_dim) != 4 * len(net.input):
            raise CaffeFormatError(
                f"{source}: {len(net.input)} input(s) need {4 * len(net.input)} input_dim values, "
                f"found {len(net.input_dim)}"
            )
        layer = pb.LayerParameter(name="input", type="Input")
        for i, name in enumerate(net.input):
            layer.top.append(name)
            shape = layer.input_param.shape.add()
            if has_shape:
                shape.CopyFrom(net.input_shape[i])
            else:
                shape.dim.extend(net.input_dim[4 * i: 4 * i + 4])
        existing = list(net.layer)
        del net.layer[:]
        net.layer.add().CopyFrom(layer)
        net.layer.extend(existing)
    net.ClearField("input")
    net.ClearField("input_shape")
    net.ClearField("input_dim")


def _upgrade_batch_norm_params(net: pb.NetParameter) -> int:
    count = 0
    for layer in net.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0
            count += 1
    return count


# ------------------------------------------------------------------ fork spellings


def _upgrade_ceil_mode(net: pb.NetParameter, source: str) -> int:
    """Forks say ``ceil_mode: false`` where BVLC says ``round_mode: FLOOR``."""
    count = 0
    for layer in net.layer:
        if not layer.HasField("pooling_param"):
            continue
        param = layer.pooling_param
        if not param.HasField("ceil_mode"):
            continue
        wanted = pb.PoolingParameter.CEIL if param.ceil_mode else pb.PoolingParameter.FLOOR
        if param.HasField("round_mode") and param.round_mode != wanted:
            raise CaffeFormatError(
                f"{source}: layer '{layer.name}' sets both ceil_mode: "
                f"{str(param.ceil_mode).lower()} and round_mode: "
                f"{pb.PoolingParameter.RoundMode.Name(param.round_mode)}, which disagree"
            )
        param.ClearField("ceil_mode")
        if wanted == pb.PoolingParameter.FLOOR:
            param.round_mode = wanted
        count += 1
    return count
