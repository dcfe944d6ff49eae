"""SSD's PriorBox and DetectionOutput."""

from __future__ import annotations

from keraffe import keras_layers
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.shapes.detection import prior_aspect_ratios
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.errors import ConversionError
from keraffe.layout import DETECTIONS, identity


@caffe_layer("PriorBox")
def prior_box(ctx, node):
    p = node.param.prior_box_param
    image_size = None
    if p.HasField("img_h") or p.HasField("img_w"):
        image_size = (p.img_h, p.img_w)
    elif p.HasField("img_size"):
        image_size = (p.img_size, p.img_size)
    step = None
    if p.HasField("step_h") or p.HasField("step_w"):
        step = (p.step_h, p.step_w)
    elif p.HasField("step"):
        step = (p.step, p.step)
    layer = keras_layers.PriorBox(list(p.min_size), list(p.max_size), prior_aspect_ratios(p), list(p.variance),
                                  image_size, step, p.offset, p.clip, name=ctx.blob_name(node))
    y = layer([ctx.input_nhwc(node, 0), ctx.input_nhwc(node, 1)])
    ctx.emit(node, 0, y, identity(3))


@caffe_layer("DetectionOutput")
def detection_output(ctx, node):
    p = node.param.detection_output_param
    for index in range(3):
        if len(ctx.in_shape(node, index)) < 2:
            raise ConversionError(f"layer '{node.name}' (DetectionOutput): bottom {index} has no item axis")
    inputs = [ctx.input(node, i, identity(len(ctx.in_shape(node, i)))) for i in range(3)]
    nms = p.nms_param
    layer = keras_layers.DetectionOutput(
        num_classes=p.num_classes, share_location=p.share_location, background_label_id=p.background_label_id,
        nms_threshold=nms.nms_threshold, top_k=nms.top_k if nms.HasField("top_k") else -1, eta=nms.eta,
        keep_top_k=p.keep_top_k,
        confidence_threshold=p.confidence_threshold if p.HasField("confidence_threshold") else None,
        code_type=pb.PriorBoxParameter.CodeType.Name(p.code_type),
        variance_encoded_in_target=p.variance_encoded_in_target, name=ctx.blob_name(node))
    ctx.emit(node, 0, layer(inputs), DETECTIONS)
