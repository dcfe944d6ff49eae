"""SSD's PriorBox and DetectionOutput, MobileNet-YOLO's YoloDetectionOutput and Yolov3DetectionOutput,
Faster R-CNN's proposals (py-faster-rcnn's Python layer, brocolli's C++ Proposal)."""

from __future__ import annotations

import keras

from keraffe import keras_layers
from keraffe.caffe.anchors import brocolli_anchors, py_faster_rcnn_anchors
from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.caffe.shapes.detection import (PYTHON_PROPOSAL, PYTHON_PROPOSAL_TEST, prior_aspect_ratios,
                                            python_proposal_setting)
from keraffe.convert.caffe_to_keras import caffe_layer
from keraffe.errors import ConversionError
from keraffe.layout import DETECTIONS, PROPOSALS, identity


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


def _yolo_inputs(ctx, node, num_box: int, num_classes: int, square: bool):
    """The feature maps as NHWC tensors, after checking they hold what the fork reads from them."""
    for index in range(len(node.inputs)):
        _, channels, height, width = ctx.in_shape(node, index)
        if channels != num_box * (5 + num_classes):
            raise ConversionError(
                f"layer '{node.name}' ({node.type}): bottom {index} has {channels} channels, the fork reads "
                f"num_box * (5 + num_classes) = {num_box * (5 + num_classes)}")
        if square and height != width:
            raise ConversionError(f"layer '{node.name}' ({node.type}): bottom {index} is {height}x{width}; the fork "
                                  "walks a square grid of the width's side, so only square maps convert")
    if ctx.in_shape(node, 0)[0] > 1:
        ctx.net.notes.append(f"layer '{node.name}' ({node.type}): the fork puts all images of a batch in one list "
                             "labelled image 0; the Keras layer keeps each image's rows apart (they agree for batch 1)")
    return [ctx.input_nhwc(node, i) for i in range(len(node.inputs))]


def _biases(node, param, needed: int) -> list[float]:
    biases = list(param.biases)
    if len(biases) < 2 * needed:
        raise ConversionError(f"layer '{node.name}' ({node.type}) has {len(biases)} biases; its anchors need "
                              f"{2 * needed} (a width and a height each)")
    return biases


@caffe_layer("YoloDetectionOutput")
def yolo_detection_output(ctx, node):
    p = node.param.yolo_detection_output_param
    if not p.HasField("num_classes"):
        raise ConversionError(f"layer '{node.name}' (YoloDetectionOutput) sets no num_classes; the fork CHECKs it")
    inputs = _yolo_inputs(ctx, node, p.num_box, p.num_classes, square=True)
    layer = keras_layers.YoloDetectionOutput(p.num_classes, p.num_box, _biases(node, p, p.num_box),
                                             p.confidence_threshold, p.nms_threshold, name=ctx.blob_name(node))
    ctx.emit(node, 0, layer(inputs if len(inputs) > 1 else inputs[0]), DETECTIONS)


@caffe_layer("Yolov3DetectionOutput")
def yolov3_detection_output(ctx, node):
    p = node.param.yolov3_detection_output_param
    if not p.HasField("num_classes"):
        raise ConversionError(f"layer '{node.name}' (Yolov3DetectionOutput) sets no num_classes; the fork CHECKs it")
    if p.gaussian_box:
        raise ConversionError(f"layer '{node.name}' (Yolov3DetectionOutput): gaussian_box (Gaussian YOLOv3's "
                              "uncertainty-weighted boxes) does not convert")
    groups = len(p.mask) // max(len(node.inputs), 1)
    if groups < p.num_box or len(p.anchors_scale) < len(node.inputs):
        raise ConversionError(f"layer '{node.name}' (Yolov3DetectionOutput): {len(p.mask)} mask entries and "
                              f"{len(p.anchors_scale)} anchors_scale for {len(node.inputs)} maps of {p.num_box} "
                              "anchors; the fork reads mask[t * len(mask) / maps + n] and anchors_scale[t]")
    masks = list(p.mask)
    inputs = _yolo_inputs(ctx, node, p.num_box, p.num_classes, square=False)
    layer = keras_layers.Yolov3DetectionOutput(p.num_classes, p.num_box, _biases(node, p, max(masks) + 1), masks,
                                               list(p.anchors_scale), p.confidence_threshold, p.nms_threshold,
                                               name=ctx.blob_name(node))
    ctx.emit(node, 0, layer(inputs if len(inputs) > 1 else inputs[0]), DETECTIONS)


def _emit_proposals(ctx, node, layer) -> None:
    """Call a Proposal layer and record its rois (and scores): rows of -1 pad each image (keraffe.layout.PROPOSALS)."""
    im_info = ctx.input(node, 2, identity(len(ctx.in_shape(node, 2))))
    if len(ctx.in_shape(node, 2)) != 2:
        im_info = keras.layers.Reshape((-1,), name=ctx.helper_name(node, "im_info"))(im_info)
    rois, scores = layer([ctx.input_nhwc(node, 0), ctx.input_nhwc(node, 1), im_info])
    ctx.emit(node, 0, rois, PROPOSALS, rows_of=node.outputs[0])
    if len(node.outputs) > 1:
        ctx.emit(node, 1, scores, identity(len(scores.shape)), rows_of=node.outputs[0])


@caffe_layer(PYTHON_PROPOSAL)
def python_proposal(ctx, node):
    """py-faster-rcnn's rpn.proposal_layer.ProposalLayer (and PVANet's copy, which reads ratios), TEST config."""
    setting = python_proposal_setting(node.param, ctx.in_shape(node, 0)[1])
    if setting.note:
        ctx.net.notes.append(f"layer '{node.name}': {setting.note}")
    layer = keras_layers.Proposal(py_faster_rcnn_anchors(setting.ratios, setting.scales).tolist(),
                                  setting.feat_stride, rule="py-faster-rcnn", name=ctx.blob_name(node),
                                  **PYTHON_PROPOSAL_TEST)
    _emit_proposals(ctx, node, layer)


@caffe_layer("Proposal")
def proposal(ctx, node):
    """brocolli-caffe's C++ Proposal, whose scales are anchor sizes in pixels (not py-faster-rcnn's multiples)."""
    p = node.param.proposal_param
    anchors = brocolli_anchors(list(p.ratio), list(p.scale), p.base_size)
    layer = keras_layers.Proposal(anchors.tolist(), p.feat_stride, p.pre_nms_topn, p.post_nms_topn, p.nms_thresh,
                                  p.min_size, rule="brocolli", name=ctx.blob_name(node))
    _emit_proposals(ctx, node, layer)
