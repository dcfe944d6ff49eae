"""SSD's PriorBox and DetectionOutput (keraffe's Keras layers) back to the SSD fork's Caffe layers.

With these an SSD net goes Caffe -> Keras (to fine-tune or prune) -> Caffe
again; targets whose runtime has the SSD layers (opencv) take them.
"""

from __future__ import annotations

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.errors import ConversionError
from keraffe.layout import DETECTIONS, identity

_SAME = 1e-6  # how close two aspect ratios are to count as one, as SSD's Caffe code judges


def _caffe_aspect_ratios(expanded: list[float]) -> tuple[list[float], bool]:
    """Caffe's (aspect_ratio, flip) that expand to ``expanded`` (1 first, then each ratio and, flipping, its inverse).

    A list of ratio/inverse pairs is written as the ratios with flip on, as SSD's
    prototxts say it; any other list is written whole with flip off, which
    expands to the same list.
    """
    if not expanded or abs(expanded[0] - 1.0) > _SAME:
        raise ConversionError(f"PriorBox aspect ratios {expanded} do not start with 1, as Caffe's always do")
    rest = expanded[1:]
    paired = len(rest) % 2 == 0 and all(abs(rest[i] * rest[i + 1] - 1.0) < _SAME and abs(rest[i] - 1.0) > _SAME
                                       for i in range(0, len(rest), 2))
    return (rest[0::2], True) if paired and rest else (rest, False)


@keras_layer("keraffe>PriorBox")
def prior_box(ctx, operation, call):
    feature, image = (ctx.value(t) for t in call.inputs)
    name = ctx.layer_name(operation, call)
    layer = ctx.add("PriorBox", name, [ctx.blob_nchw(feature, name), ctx.blob_nchw(image, name)])
    p = layer.prior_box_param
    p.min_size.extend(operation.min_sizes)
    p.max_size.extend(operation.max_sizes)
    ratios, flip = _caffe_aspect_ratios(list(operation.aspect_ratios))
    p.aspect_ratio.extend(ratios)
    p.flip = flip
    p.clip = operation.clip  # always written: forks differ in its default
    if list(operation.variances) != [0.1]:  # exactly 0.1 is keraffe's stand-in for none given (Caffe: 0.1)
        p.variance.extend(operation.variances)
    if operation.image_size is not None:
        if operation.image_size[0] == operation.image_size[1]:
            p.img_size = operation.image_size[0]
        else:
            p.img_h, p.img_w = operation.image_size
    if operation.step is not None:
        if operation.step[0] == operation.step[1]:
            p.step = operation.step[0]
        else:
            p.step_h, p.step_w = operation.step
    if operation.offset != 0.5:
        p.offset = operation.offset
    ctx.emit(operation, call, 0, call.outputs[0], name, identity(3))


@keras_layer("keraffe>DetectionOutput")
def detection_output(ctx, operation, call):
    """Location, confidence and priors in Caffe's order, as SSD's DetectionOutput reads them."""
    values = [ctx.value(t) for t in call.inputs]
    name = ctx.layer_name(operation, call)
    layer = ctx.add("DetectionOutput", name, [ctx.blob_in(v, identity(len(v.shape)), name) for v in values])
    p = layer.detection_output_param
    p.num_classes = operation.num_classes
    p.share_location = operation.share_location
    p.background_label_id = operation.background_label_id
    p.nms_param.nms_threshold = operation.nms_threshold
    if operation.top_k >= 0:
        p.nms_param.top_k = operation.top_k
    if operation.eta != 1.0:
        p.nms_param.eta = operation.eta
    p.keep_top_k = operation.keep_top_k
    if operation.confidence_threshold is not None:
        p.confidence_threshold = operation.confidence_threshold
    p.code_type = pb.PriorBoxParameter.CodeType.Value(operation.code_type)
    if operation.variance_encoded_in_target:
        p.variance_encoded_in_target = True
    ctx.emit(operation, call, 0, call.outputs[0], name, DETECTIONS)
