"""NumPy references written from Caffe's own sources, shared by tests in several packages.

They stand beside real Caffe where the Caffe build keraffe tests against lacks
a layer (DeepLab's Interp), so they must not call keraffe.
"""

from __future__ import annotations

import numpy as np


def interp2(x: np.ndarray, size_out: tuple[int, int]) -> np.ndarray:
    """DeepLab's caffe_cpu_interp2 (align-corners bilinear, not packed) over an already-cropped NCHW array.

    In float32 step by step, as Caffe computes it.
    """
    x = x.astype(np.float32)
    h1_in, w1_in = x.shape[2:]
    h2_out, w2_out = size_out
    if (h1_in, w1_in) == (h2_out, w2_out):
        return x.copy()
    rheight = np.float32((h1_in - 1) / (h2_out - 1)) if h2_out > 1 else np.float32(0)
    rwidth = np.float32((w1_in - 1) / (w2_out - 1)) if w2_out > 1 else np.float32(0)
    out = np.zeros(x.shape[:2] + (h2_out, w2_out), np.float32)
    for h2 in range(h2_out):
        h1, h1p, h0l, h1l = _source(rheight, h2, h1_in)
        for w2 in range(w2_out):
            w1, w1p, w0l, w1l = _source(rwidth, w2, w1_in)
            out[:, :, h2, w2] = (h0l * (w0l * x[:, :, h1, w1] + w1l * x[:, :, h1, w1 + w1p])
                                 + h1l * (w0l * x[:, :, h1 + h1p, w1] + w1l * x[:, :, h1 + h1p, w1 + w1p]))
    return out


def _source(ratio, position: int, size_in: int):
    """For one output position along one axis: the input index, the step to its neighbour (0 at the
    edge), and the two interpolation weights, each in float32 as Caffe rounds them."""
    real = np.float32(ratio * np.float32(position))
    index = int(real)
    step = 1 if index < size_in - 1 else 0
    far = np.float32(real - np.float32(index))
    return index, step, np.float32(1) - far, far


def huawei_upsample(x: np.ndarray, scale: float, stride: int) -> np.ndarray:
    """Huawei ATC's Upsample as its operator page defines it (no Caffe build has it):
    y[n, c, i, j] = scale * x[n, c, i / stride, j / stride], integer division (nearest)."""
    return (np.float32(scale) * x.repeat(stride, axis=2).repeat(stride, axis=3)).astype(np.float32)


def darknet_reorg(x: np.ndarray, stride: int, reverse: bool) -> np.ndarray:
    """MobileNet-YOLO's ReorgLayer: darknet's reorg_cpu called with the input's (w, h, c) and forward = reverse.

    The loop, index by index, over the flat NCHW buffer (reorg_layer.cpp / blas.c).
    """
    batch, c, h, w = x.shape
    flat = x.reshape(-1)
    out = np.zeros_like(flat)
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2 = k % out_c
                    offset = k // out_c
                    w2 = i * stride + offset % stride
                    h2 = j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    if reverse:
                        out[out_index] = flat[in_index]
                    else:
                        out[in_index] = flat[out_index]
    if reverse:
        return out.reshape(batch, c // (stride * stride), h * stride, w * stride)
    return out.reshape(batch, c * stride * stride, h // stride, w // stride)


def tf_resize_bilinear(x: np.ndarray, out_h: int, out_w: int, align_corners=False, half_pixel_centers=False,
                       nhwc=False) -> np.ndarray:
    """The Synopsys fork's ResizeBilinearLayer (TF 1.x resize_bilinear), in float32 as its loops compute.

    CalculateResizeScale, compute_interpolation_weights and compute_lerp of
    resize_bilinear_layer.cpp, for one output pixel at a time.
    """
    x = x.astype(np.float32)
    if not nhwc:
        x = x.transpose(0, 2, 3, 1)
    in_h, in_w = x.shape[1:3]

    def scale(out_size, in_size):
        if align_corners and out_size > 1:
            return np.float32(in_size - 1) / np.float32(out_size - 1)
        return np.float32(in_size) / np.float32(out_size)

    def weights(out_size, in_size):
        s = scale(out_size, in_size)
        result = []
        for i in range(out_size):
            if half_pixel_centers and not align_corners:
                position = (np.float32(i) + np.float32(0.5)) * s - np.float32(0.5)
            else:
                position = np.float32(i) * s
            position = np.float32(position)
            floor = np.floor(position)
            result.append((max(int(floor), 0), min(int(np.ceil(position)), in_size - 1),
                           np.float32(position - floor)))
        return result

    ys, xs = weights(out_h, in_h), weights(out_w, in_w)
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]), np.float32)
    for y, (y0, y1, fy) in enumerate(ys):
        for col, (x0, x1, fx) in enumerate(xs):
            top_left, top_right = x[:, y0, x0], x[:, y0, x1]
            bottom_left, bottom_right = x[:, y1, x0], x[:, y1, x1]
            top = top_left + (top_right - top_left) * fx
            bottom = bottom_left + (bottom_right - bottom_left) * fx
            out[:, y, col] = top + (bottom - top) * fy
    return out if nhwc else out.transpose(0, 3, 1, 2)


def _yolo_sigmoid(x):
    # region_loss_layer.hpp / yolov3_detection_output_layer.cpp: 1. / (1. + exp(-x)), exp in float.
    return np.float32(1.0 / (1.0 + np.float64(np.exp(np.float32(-x)))))


def _yolo_nms_and_rows(predicts, threshold, num_images):
    """MobileNet-YOLO's std::sort by confidence (descending), ApplyNms (IoU >= threshold drops), and the top rows.

    ``predicts`` holds dicts with x, y, w, h, cls, conf. Equal confidences keep
    their order here (std::sort leaves that unspecified).
    """
    predicts = sorted(predicts, key=lambda p: -p["conf"])

    # ApplyNms, its inner loop over j > i done for all j at once (same float32 arithmetic).
    boxes = np.array([[p["x"], p["y"], p["w"], p["h"]] for p in predicts], np.float32).reshape(-1, 4)
    dropped = np.zeros(len(predicts), bool)
    for i in range(len(predicts) - 1):
        if dropped[i]:
            continue
        x, y, w, h = boxes[i]
        width = (np.minimum(np.float32(x + w / 2), boxes[:, 0] + boxes[:, 2] / 2)
                 - np.maximum(np.float32(x - w / 2), boxes[:, 0] - boxes[:, 2] / 2))
        height = (np.minimum(np.float32(y + h / 2), boxes[:, 1] + boxes[:, 3] / 2)
                  - np.maximum(np.float32(y - h / 2), boxes[:, 1] - boxes[:, 3] / 2))
        inter = np.where((width < 0) | (height < 0), np.float32(0), width * height)
        union = np.float32(w * h) + boxes[:, 2] * boxes[:, 3] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            suppress = inter / union >= threshold
        dropped |= suppress & (np.arange(len(predicts)) > i)
    kept = [p for i, p in enumerate(predicts) if not dropped[i]]
    if not kept:
        rows = np.full((num_images, 7), -1.0, np.float32)
        rows[:, 0] = np.arange(num_images)
        return rows[None, None]
    rows = [[0, p["cls"] + 1, p["conf"], p["x"] - p["w"] / 2.0, p["y"] - p["h"] / 2.0, p["x"] + p["w"] / 2.0,
             p["y"] + p["h"] / 2.0] for p in kept]
    return np.asarray(rows, np.float32)[None, None]


def yolo_detection_output(bottoms, num_classes, num_box, biases, confidence_threshold, nms_threshold):
    """MobileNet-YOLO's YoloDetectionOutputLayer::Forward_cpu on NCHW bottoms: (1, 1, n, 7) rows."""
    predicts = []
    for bottom in bottoms:
        batch, channels, height, width = bottom.shape
        side = width
        per_box = channels // num_box
        for b in range(batch):
            for j in range(side):
                for i in range(side):
                    cell = bottom[b, :, j, i].astype(np.float32)
                    for n in range(num_box):
                        v = cell[n * per_box:(n + 1) * per_box]
                        logits = v[5:5 + num_classes]
                        e = np.exp(logits - logits.max()).astype(np.float32)
                        probabilities = (e / np.float32(e.sum(dtype=np.float32))).astype(np.float32)
                        cls = int(np.argmax(probabilities))
                        conf = np.float32(_yolo_sigmoid(v[4]) * probabilities[cls])
                        if conf >= np.float32(confidence_threshold):
                            predicts.append({
                                "x": np.float32((i + _yolo_sigmoid(v[0])) / side),
                                "y": np.float32((j + _yolo_sigmoid(v[1])) / side),
                                "w": np.float32(np.exp(v[2]) * np.float32(biases[2 * n]) / side),
                                "h": np.float32(np.exp(v[3]) * np.float32(biases[2 * n + 1]) / side),
                                "cls": cls, "conf": conf})
    return _yolo_nms_and_rows(predicts, np.float32(nms_threshold), bottoms[0].shape[0])


def yolov3_detection_output(bottoms, num_classes, num_box, biases, mask, anchors_scale, confidence_threshold,
                            nms_threshold):
    """MobileNet-YOLO's Yolov3DetectionOutputLayer::Forward_cpu (no gaussian_box) on NCHW bottoms: (1, 1, n, 7)."""
    predicts = []
    groups = len(mask) // len(bottoms)
    for t, bottom in enumerate(bottoms):
        batch, channels, height, width = bottom.shape
        length = 5 + num_classes
        nw, nh = width * anchors_scale[t], height * anchors_scale[t]
        for b in range(batch):
            for s in range(width * height):
                y2, x2 = s // width, s % width
                for n in range(num_box):
                    v = bottom[b, n * length:(n + 1) * length, y2, x2].astype(np.float32)
                    objectness = _yolo_sigmoid(v[4])
                    m = mask[n + t * groups]
                    # class_score[c] = sigmoid(logit) (stored as float), then *= obj_score, for every class at once
                    logits = v[5:5 + num_classes]
                    scores = (1.0 / (1.0 + np.exp(-logits).astype(np.float64))).astype(np.float32) * objectness
                    for c in np.nonzero(scores > np.float32(confidence_threshold))[0]:
                        predicts.append({
                            "x": np.float32((x2 + _yolo_sigmoid(v[0])) / width),
                            "y": np.float32((y2 + _yolo_sigmoid(v[1])) / height),
                            "w": np.float32(np.exp(v[2]) * np.float32(biases[2 * m]) / nw),
                            "h": np.float32(np.exp(v[3]) * np.float32(biases[2 * m + 1]) / nh),
                            "cls": int(c), "conf": np.float32(scores[c])})
    return _yolo_nms_and_rows(predicts, np.float32(nms_threshold), bottoms[-1].shape[0])


def py_faster_rcnn_anchors(base_size=16, ratios=(0.5, 1, 2), scales=(8, 16, 32)) -> np.ndarray:
    """py-faster-rcnn's generate_anchors (lib/rpn/generate_anchors.py), in float64 with numpy's round (half to even)."""
    base = np.array([1, 1, base_size, base_size]) - 1

    def whctrs(anchor):
        w = anchor[2] - anchor[0] + 1
        h = anchor[3] - anchor[1] + 1
        return w, h, anchor[0] + 0.5 * (w - 1), anchor[1] + 0.5 * (h - 1)

    def mkanchors(ws, hs, x_ctr, y_ctr):
        ws, hs = ws[:, None], hs[:, None]
        return np.hstack((x_ctr - 0.5 * (ws - 1), y_ctr - 0.5 * (hs - 1), x_ctr + 0.5 * (ws - 1),
                          y_ctr + 0.5 * (hs - 1)))

    w, h, x_ctr, y_ctr = whctrs(base)
    ws = np.round(np.sqrt(w * h / np.asarray(ratios, np.float64)))
    hs = np.round(ws * np.asarray(ratios, np.float64))
    ratio_anchors = mkanchors(ws, hs, x_ctr, y_ctr)
    result = []
    for anchor in ratio_anchors:
        w, h, x_ctr, y_ctr = whctrs(anchor)
        result.append(mkanchors(w * np.asarray(scales, np.float64), h * np.asarray(scales, np.float64), x_ctr, y_ctr))
    return np.vstack(result)


def py_faster_rcnn_proposals(cls_prob, bbox_pred, im_info, feat_stride, ratios=(0.5, 1, 2), scales=(8, 16, 32),
                             pre_nms_top_n=6000, post_nms_top_n=300, nms_thresh=0.7, min_size=16):
    """py-faster-rcnn's ProposalLayer.forward (lib/rpn/proposal_layer.py, TEST config), with gpu_nms.

    Returns (rois (R, 5), scores (R, 1)). gpu_nms drops a box whose IoU with a
    kept one is > the threshold, areas and overlaps counted with +1 in float32.
    Equal scores keep their order here (the layer's argsort leaves it unspecified).
    """
    assert cls_prob.shape[0] == 1
    anchors_base = py_faster_rcnn_anchors(16, ratios, scales)
    num = anchors_base.shape[0]
    scores = cls_prob[:, num:, :, :]
    height, width = scores.shape[-2:]
    shift_x, shift_y = np.meshgrid(np.arange(0, width) * feat_stride, np.arange(0, height) * feat_stride)
    shifts = np.vstack((shift_x.ravel(), shift_y.ravel(), shift_x.ravel(), shift_y.ravel())).transpose()
    anchors = (anchors_base.reshape((1, num, 4)) + shifts.reshape((1, -1, 4)).transpose((1, 0, 2))).reshape((-1, 4))
    deltas = bbox_pred.transpose((0, 2, 3, 1)).reshape((-1, 4)).astype(np.float32)
    scores = scores.transpose((0, 2, 3, 1)).reshape((-1, 1)).astype(np.float32)
    boxes = anchors.astype(np.float32)
    widths = boxes[:, 2] - boxes[:, 0] + np.float32(1.0)
    heights = boxes[:, 3] - boxes[:, 1] + np.float32(1.0)
    ctr_x = boxes[:, 0] + np.float32(0.5) * widths
    ctr_y = boxes[:, 1] + np.float32(0.5) * heights
    pred_ctr_x = deltas[:, 0] * widths + ctr_x
    pred_ctr_y = deltas[:, 1] * heights + ctr_y
    pred_w = np.exp(deltas[:, 2]) * widths
    pred_h = np.exp(deltas[:, 3]) * heights
    proposals = np.stack([pred_ctr_x - np.float32(0.5) * pred_w, pred_ctr_y - np.float32(0.5) * pred_h,
                          pred_ctr_x + np.float32(0.5) * pred_w, pred_ctr_y + np.float32(0.5) * pred_h], axis=1)
    info = im_info[0].astype(np.float32)
    for column, limit in ((0, info[1]), (1, info[0]), (2, info[1]), (3, info[0])):
        proposals[:, column] = np.maximum(np.minimum(proposals[:, column], limit - np.float32(1)), np.float32(0))
    threshold = np.float32(min_size * info[2])
    ws = proposals[:, 2] - proposals[:, 0] + np.float32(1)
    hs = proposals[:, 3] - proposals[:, 1] + np.float32(1)
    keep = np.where((ws >= threshold) & (hs >= threshold))[0]
    proposals, scores = proposals[keep], scores[keep]
    order = np.argsort(-scores.ravel(), kind="stable")[:pre_nms_top_n]
    proposals, scores = proposals[order], scores[order]
    kept, dead = [], np.zeros(len(proposals), bool)
    areas = (proposals[:, 2] - proposals[:, 0] + np.float32(1)) * (proposals[:, 3] - proposals[:, 1] + np.float32(1))
    for i in range(len(proposals)):
        if dead[i]:
            continue
        kept.append(i)
        left = np.maximum(proposals[i, 0], proposals[:, 0])
        right = np.minimum(proposals[i, 2], proposals[:, 2])
        top = np.maximum(proposals[i, 1], proposals[:, 1])
        bottom = np.minimum(proposals[i, 3], proposals[:, 3])
        inter = np.maximum(right - left + np.float32(1), np.float32(0)) * np.maximum(bottom - top + np.float32(1),
                                                                                  np.float32(0))
        overlap = inter / (areas[i] + areas - inter)
        dead |= (overlap > np.float32(nms_thresh)) & (np.arange(len(proposals)) > i)
    kept = kept[:post_nms_top_n]
    rois = np.hstack((np.zeros((len(kept), 1), np.float32), proposals[kept].astype(np.float32)))
    return rois, scores[kept]
