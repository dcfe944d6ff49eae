"""SSD's PriorBox and DetectionOutput, computed exactly as the SSD fork of Caffe does."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops


def prior_boxes(
    layer_hw: tuple[int, int],
    image_hw: tuple[int, int],
    min_sizes, max_sizes, aspect_ratios, variances,
    step_hw: tuple[float, float] | None, offset: float, clip: bool,
) -> np.ndarray:
    """The (1, 2, H*W*priors*4) PriorBox output: box corners, then their variances.

    ``aspect_ratios`` is the expanded list (1 first, flips included). Boxes are
    min_size squares, then the sqrt(min*max) square, then one per other ratio,
    for each cell in row-major order, as SSD writes them.
    """
    layer_h, layer_w = layer_hw
    img_h, img_w = image_hw
    step_h, step_w = step_hw if step_hw else (img_h / layer_h, img_w / layer_w)
    boxes = []
    for h in range(layer_h):
        for w in range(layer_w):
            cx = (w + offset) * step_w
            cy = (h + offset) * step_h
            for i, min_size in enumerate(min_sizes):
                # SSD's Caffe code holds the sizes in ints: 30.4 means 30 (OpenCV keeps the float).
                min_size = int(min_size)
                sizes = [(min_size, min_size)]
                if len(max_sizes):
                    side = math.sqrt(min_size * int(max_sizes[i]))
                    sizes.append((side, side))
                for ratio in aspect_ratios:
                    if abs(ratio - 1.0) < 1e-6:
                        continue
                    sizes.append((min_size * math.sqrt(ratio), min_size / math.sqrt(ratio)))
                for bw, bh in sizes:
                    boxes.append([(cx - bw / 2.0) / img_w, (cy - bh / 2.0) / img_h,
                                  (cx + bw / 2.0) / img_w, (cy + bh / 2.0) / img_h])
    corners = np.asarray(boxes, dtype=np.float32).reshape(-1)
    if clip:
        corners = np.clip(corners, 0.0, 1.0)
    if len(variances) == 1:
        variance = np.full_like(corners, variances[0])
    else:
        variance = np.tile(np.asarray(variances, dtype=np.float32), corners.size // 4)
    return np.stack([corners, variance])[None].astype(np.float32)


@keras.saving.register_keras_serializable(package="keraffe")
class PriorBox(keras.layers.Layer):
    """SSD PriorBox. Its output depends only on shapes, so it is a constant of the model.

    Inputs are the feature map and the image (both NHWC); the output is Caffe's
    (1, 2, K) tensor, the same for every image in the batch.
    """

    def __init__(self, min_sizes, max_sizes, aspect_ratios, variances, image_size=None, step=None,
                 offset=0.5, clip=False, **kwargs):
        super().__init__(**kwargs)
        self.min_sizes = [float(v) for v in min_sizes]
        self.max_sizes = [float(v) for v in max_sizes]
        self.aspect_ratios = [float(v) for v in aspect_ratios]
        self.variances = [float(v) for v in variances] or [0.1]
        self.image_size = None if image_size is None else tuple(int(v) for v in image_size)
        self.step = None if step is None else tuple(float(v) for v in step)
        self.offset = float(offset)
        self.clip = bool(clip)

    def _priors(self, feature_shape, image_shape) -> np.ndarray:
        image_hw = self.image_size or (image_shape[1], image_shape[2])
        return prior_boxes((feature_shape[1], feature_shape[2]), image_hw, self.min_sizes, self.max_sizes,
                           self.aspect_ratios, self.variances, self.step, self.offset, self.clip)

    def call(self, inputs):
        feature, image = inputs
        priors = self._priors(feature.shape, image.shape)
        # Tie the constant to the input so the layer stays in the graph on every backend.
        zero = ops.sum(feature[:1, :1, :1, :1] * 0.0)
        return ops.convert_to_tensor(priors, dtype=feature.dtype) + zero

    def compute_output_shape(self, input_shape):
        feature_shape, image_shape = input_shape
        return self._priors(feature_shape, image_shape).shape

    def get_config(self):
        config = super().get_config()
        config.update(min_sizes=self.min_sizes, max_sizes=self.max_sizes, aspect_ratios=self.aspect_ratios,
                      variances=self.variances, image_size=self.image_size, step=self.step,
                      offset=self.offset, clip=self.clip)
        return config


def _iou_matrix(boxes):
    """Pairwise Jaccard overlap of (..., K, 4) corner boxes, SSD's normalised rule."""
    xmin, ymin, xmax, ymax = (boxes[..., i] for i in range(4))
    area = ops.where(ops.logical_or(xmax < xmin, ymax < ymin), 0.0, (xmax - xmin) * (ymax - ymin))
    ix0 = ops.maximum(xmin[..., :, None], xmin[..., None, :])
    iy0 = ops.maximum(ymin[..., :, None], ymin[..., None, :])
    ix1 = ops.minimum(xmax[..., :, None], xmax[..., None, :])
    iy1 = ops.minimum(ymax[..., :, None], ymax[..., None, :])
    disjoint = ops.logical_or(ix0 > ix1, iy0 > iy1)
    inter = ops.where(disjoint, 0.0, (ix1 - ix0) * (iy1 - iy0))
    union = area[..., :, None] + area[..., None, :] - inter
    return ops.where(disjoint, 0.0, inter / ops.where(union > 0, union, 1.0))


@keras.saving.register_keras_serializable(package="keraffe")
class DetectionOutput(keras.layers.Layer):
    """SSD's DetectionOutput: decode boxes, per-class NMS, keep the best, in Caffe's row order.

    Caffe returns a (1, 1, n, 7) blob whose n depends on the data. Keras needs a
    fixed shape, so this layer returns (batch, max_detections, 7): each image's
    rows [image_id, label, score, xmin, ymin, xmax, ymax] in Caffe's order
    (label ascending, score descending), padded with rows of -1. keraffe's
    layout for this tensor maps it back to Caffe's blob for verification.
    """

    def __init__(self, num_classes, share_location=True, background_label_id=0, nms_threshold=0.3,
                 top_k=-1, eta=1.0, keep_top_k=-1, confidence_threshold=None, code_type="CORNER",
                 variance_encoded_in_target=False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.share_location = bool(share_location)
        self.background_label_id = int(background_label_id)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.eta = float(eta)
        self.keep_top_k = int(keep_top_k)
        self.confidence_threshold = None if confidence_threshold is None else float(confidence_threshold)
        if code_type not in ("CORNER", "CENTER_SIZE", "CORNER_SIZE"):
            raise ValueError(f"code_type must be CORNER, CENTER_SIZE or CORNER_SIZE, received {code_type!r}")
        self.code_type = code_type
        self.variance_encoded_in_target = bool(variance_encoded_in_target)

    def _sizes(self, num_priors: int) -> tuple[list[int], int, int]:
        classes = [c for c in range(self.num_classes) if c != self.background_label_id]
        per_class = num_priors if self.top_k < 0 else min(self.top_k, num_priors)
        total = len(classes) * per_class
        rows = total if self.keep_top_k < 0 else min(self.keep_top_k, total)
        return classes, per_class, max(rows, 1)

    def _decode(self, loc, priors, variances):
        pxmin, pymin, pxmax, pymax = (priors[..., i] for i in range(4))
        var = [variances[..., i] if not self.variance_encoded_in_target else 1.0 for i in range(4)]
        lx, ly, lx2, ly2 = (loc[..., i] for i in range(4))
        pw, ph = pxmax - pxmin, pymax - pymin
        if self.code_type == "CORNER":
            return ops.stack([pxmin + var[0] * lx, pymin + var[1] * ly, pxmax + var[2] * lx2, pymax + var[3] * ly2], -1)
        if self.code_type == "CORNER_SIZE":
            return ops.stack([pxmin + var[0] * lx * pw, pymin + var[1] * ly * ph,
                              pxmax + var[2] * lx2 * pw, pymax + var[3] * ly2 * ph], -1)
        pcx, pcy = (pxmin + pxmax) / 2.0, (pymin + pymax) / 2.0
        cx = var[0] * lx * pw + pcx
        cy = var[1] * ly * ph + pcy
        w = ops.exp(var[2] * lx2) * pw
        h = ops.exp(var[3] * ly2) * ph
        return ops.stack([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], -1)

    def call(self, inputs):
        loc, conf, priors = inputs
        num_priors = priors.shape[-1] // 4
        classes, per_class, rows = self._sizes(num_priors)
        loc_classes = 1 if self.share_location else self.num_classes
        loc = ops.reshape(loc, (-1, num_priors, loc_classes, 4))
        conf = ops.reshape(conf, (-1, num_priors, self.num_classes))
        prior_corners = ops.reshape(priors[0, 0], (num_priors, 4))
        prior_variances = ops.reshape(priors[0, 1], (num_priors, 4))
        boxes = self._decode(loc, prior_corners[None, :, None, :], prior_variances[None, :, None, :])

        threshold = -np.finfo(np.float32).max if self.confidence_threshold is None else self.confidence_threshold
        labels, scores, candidates, keeps = [], [], [], []
        for c in classes:
            class_scores, order = ops.top_k(conf[:, :, c], per_class)
            class_boxes = boxes[:, :, 0 if self.share_location else c, :]
            class_boxes = ops.take_along_axis(class_boxes, order[:, :, None], axis=1)
            keep = self._nms(class_boxes, class_scores > threshold)
            labels.append(ops.full_like(class_scores, float(c)))
            scores.append(class_scores)
            candidates.append(class_boxes)
            keeps.append(keep)
        labels = ops.concatenate(labels, axis=1)
        scores = ops.concatenate(scores, axis=1)
        candidates = ops.concatenate(candidates, axis=1)
        keep = ops.concatenate(keeps, axis=1)
        count = labels.shape[1]

        # Keep the keep_top_k best overall, then order by label, then by score.
        masked = ops.where(keep, scores, -np.inf)
        _, by_score = ops.top_k(masked, count)
        rank = ops.argsort(by_score, axis=1)  # position of each candidate in score order
        retained = ops.logical_and(keep, rank < rows)
        key = ops.where(retained, ops.cast(labels, "int32") * count + ops.cast(rank, "int32"),
                        (self.num_classes + 1) * count)
        order = ops.argsort(key, axis=1)[:, :rows]
        take = lambda values: ops.take_along_axis(values, order, axis=1)  # noqa: E731
        valid = take(retained)
        image_id = ops.cast(ops.arange(ops.shape(scores)[0])[:, None], scores.dtype) + ops.zeros_like(take(scores))
        out = ops.concatenate([
            image_id[..., None], take(labels)[..., None], take(scores)[..., None],
            ops.take_along_axis(candidates, order[:, :, None], axis=1),
        ], axis=-1)
        return ops.where(valid[..., None], out, -1.0)

    def _nms(self, boxes, valid):
        """Greedy NMS over score-sorted candidates, with SSD's adaptive threshold (eta)."""
        per_class = boxes.shape[1]
        overlap = _iou_matrix(boxes)
        positions = ops.arange(per_class)

        def step(i, state):
            kept, threshold = state
            earlier = ops.logical_and(kept, positions[None, :] < i)
            row = ops.take(overlap, i, axis=1)
            suppressed = ops.any(ops.logical_and(earlier, row > threshold[:, None]), axis=1)
            keep_i = ops.logical_and(ops.take(valid, i, axis=1), ops.logical_not(suppressed))
            kept = ops.where(positions[None, :] == i, keep_i[:, None], kept)
            if self.eta < 1.0:
                shrink = ops.logical_and(keep_i, threshold > 0.5)
                threshold = ops.where(shrink, threshold * self.eta, threshold)
            return kept, threshold

        kept = ops.zeros_like(valid)
        threshold = ops.full((ops.shape(valid)[0],), self.nms_threshold, dtype="float32")
        kept, _ = ops.fori_loop(0, per_class, step, (kept, threshold))
        return kept

    def compute_output_shape(self, input_shape):
        loc_shape, _, prior_shape = input_shape
        _, _, rows = self._sizes(prior_shape[-1] // 4)
        return (loc_shape[0], rows, 7)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, share_location=self.share_location,
                      background_label_id=self.background_label_id, nms_threshold=self.nms_threshold,
                      top_k=self.top_k, eta=self.eta, keep_top_k=self.keep_top_k,
                      confidence_threshold=self.confidence_threshold, code_type=self.code_type,
                      variance_encoded_in_target=self.variance_encoded_in_target)
        return config


def _center_iou_row(boxes, index):
    """IoU of box ``index`` with every box, MobileNet-YOLO's box_iou on (x, y, w, h) centre boxes (no +1, unclipped).

    ``boxes`` is (batch, K, 4); ``index`` a scalar. Overlaps are right - left of
    the two intervals; a negative overlap on either axis means no intersection.
    """
    chosen = ops.take(boxes, index, axis=1)[:, None, :]
    x1, y1, w1, h1 = (chosen[..., i] for i in range(4))
    x2, y2, w2, h2 = (boxes[..., i] for i in range(4))

    def overlap(c1, s1, c2, s2):
        return ops.minimum(c1 + s1 / 2, c2 + s2 / 2) - ops.maximum(c1 - s1 / 2, c2 - s2 / 2)

    w = overlap(x1, w1, x2, w2)
    h = overlap(y1, h1, y2, h2)
    inter = ops.where(ops.logical_or(w < 0, h < 0), 0.0, w * h)
    return inter / (w1 * h1 + w2 * h2 - inter)


def _yolo_nms(boxes, valid, threshold):
    """MobileNet-YOLO's ApplyNms over score-sorted boxes: a later box goes when its IoU with a kept one is >= threshold.

    Class-agnostic. A while loop over the valid boxes only, each step comparing
    one box with all the others, so memory stays linear in the number of boxes.
    """
    count = boxes.shape[1]
    positions = ops.arange(count)
    last = ops.max(ops.sum(ops.cast(valid, "int32"), axis=1))

    def body(i, suppressed):
        keep_i = ops.logical_and(ops.take(valid, i, axis=1), ops.logical_not(ops.take(suppressed, i, axis=1)))
        hits = ops.logical_and(_center_iou_row(boxes, i) >= threshold, positions[None, :] > i)
        return i + 1, ops.logical_or(suppressed, ops.logical_and(keep_i[:, None], hits))

    _, suppressed = ops.while_loop(lambda i, s: i < last, body, (ops.convert_to_tensor(0, "int32"),
                                                                  ops.zeros_like(valid)))
    return ops.logical_and(valid, ops.logical_not(suppressed))


def _yolo_rows(x, y, w, h, labels, scores, valid, threshold):
    """Sort candidates by score, NMS them, and lay out the kept ones as Caffe's rows, padded with -1.

    Rows are [image, label + 1, score, x - w/2, y - h/2, x + w/2, y + h/2], best first.
    """
    count = scores.shape[1]
    masked = ops.where(valid, scores, -np.inf)
    _, order = ops.top_k(masked, count)
    take = lambda values: ops.take_along_axis(values, order, axis=1)  # noqa: E731
    x, y, w, h, labels, scores, valid = (take(v) for v in (x, y, w, h, labels, scores, valid))
    kept = _yolo_nms(ops.stack([x, y, w, h], axis=-1), valid, threshold)
    positions = ops.arange(count)[None, :]
    rank = ops.argsort(ops.where(kept, positions, count + positions), axis=1)
    keep = lambda values: ops.take_along_axis(values, rank, axis=1)  # noqa: E731
    x, y, w, h, labels, scores, kept = (keep(v) for v in (x, y, w, h, labels, scores, kept))
    image = ops.cast(ops.arange(ops.shape(scores)[0])[:, None], scores.dtype) + ops.zeros_like(scores)
    rows = ops.stack([image, labels + 1.0, scores, x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=-1)
    return ops.where(kept[..., None], rows, -1.0)


def _sigmoid(x):
    return 1.0 / (1.0 + ops.exp(-x))


def _cells(feature, num_box):
    """(N, H, W, A*(5+K)) NHWC -> (N, H*W*A, 5+K), cells row-major then anchors, as the forks walk them."""
    _, height, width, channels = feature.shape
    return ops.reshape(feature, (-1, height * width * num_box, channels // num_box))


def _grid(height, width, num_box):
    """Column and row of each (cell, anchor) in _cells' order (as tensors), and its anchor index (numpy)."""
    cells = np.arange(height * width * num_box) // num_box
    return (ops.convert_to_tensor((cells % width).astype(np.float32)),
            ops.convert_to_tensor((cells // width).astype(np.float32)), np.tile(np.arange(num_box), height * width))


class _YoloDetections(keras.layers.Layer):
    """What MobileNet-YOLO's two detection outputs share: decode each map, rank, NMS, lay out rows."""

    def __init__(self, num_classes, num_box, biases, confidence_threshold=0.01, nms_threshold=0.45, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.num_box = int(num_box)
        self.biases = [float(b) for b in biases]
        self.confidence_threshold = float(confidence_threshold)
        self.nms_threshold = float(nms_threshold)

    def _anchor_sizes(self, anchors):
        return (ops.convert_to_tensor(np.asarray(self.biases[0::2], np.float32)[anchors]),
                ops.convert_to_tensor(np.asarray(self.biases[1::2], np.float32)[anchors]))

    def call(self, inputs):
        inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        parts = [self._decode(index, len(inputs), feature) for index, feature in enumerate(inputs)]
        x, y, w, h, labels, scores = (ops.concatenate([p[i] for p in parts], axis=1) for i in range(6))
        return _yolo_rows(x, y, w, h, labels, scores, self._passes(scores), self.nms_threshold)

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        rows = sum(s[1] * s[2] * self.num_box for s in shapes)
        return (shapes[0][0], rows, 7)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, num_box=self.num_box, biases=self.biases,
                      confidence_threshold=self.confidence_threshold, nms_threshold=self.nms_threshold)
        return config


@keras.saving.register_keras_serializable(package="keraffe")
class YoloDetectionOutput(_YoloDetections):
    """MobileNet-YOLO's YoloDetectionOutput (YOLOv2 region decoding, softmax classes, class-agnostic NMS).

    Inputs: one or two NHWC maps of ``num_box * (5 + num_classes)`` channels on
    square grids; anchor n reads channels n*(5+K) + (tx, ty, tw, th, to, classes).
    A box is (i + sigmoid(tx)) / side, (j + sigmoid(ty)) / side, exp(tw) * bias_w
    / side, exp(th) * bias_h / side, its score sigmoid(to) times the best softmax
    class probability (the first best), kept when >= confidence_threshold; then
    NMS drops a box whose IoU with a better kept one is >= nms_threshold.

    The output is keraffe's detection convention (batch, rows, 7), each image's
    rows best first and padded with -1 (keraffe.layout.DETECTIONS). The fork
    puts every image of a batch in one list labelled image 0; keraffe keeps
    images apart, so the two agree for batch 1. Caffe orders equal scores
    with std::sort, which is unspecified; keraffe puts the earlier box first.
    """

    def _decode(self, index, count, feature):
        side = feature.shape[2]  # the fork reads the width for both axes
        cells = _cells(feature, self.num_box)
        cols, rows, anchors = _grid(feature.shape[1], side, self.num_box)
        bias_w, bias_h = self._anchor_sizes(anchors)
        probabilities = ops.softmax(cells[..., 5:5 + self.num_classes], axis=-1)
        return ((cols + _sigmoid(cells[..., 0])) / side, (rows + _sigmoid(cells[..., 1])) / side,
                ops.exp(cells[..., 2]) * bias_w / side, ops.exp(cells[..., 3]) * bias_h / side,
                ops.cast(ops.argmax(probabilities, axis=-1), feature.dtype),
                _sigmoid(cells[..., 4]) * ops.max(probabilities, axis=-1))

    def _passes(self, scores):
        return scores >= self.confidence_threshold


@keras.saving.register_keras_serializable(package="keraffe")
class Yolov3DetectionOutput(_YoloDetections):
    """MobileNet-YOLO's Yolov3DetectionOutput (YOLOv3 decoding, sigmoid classes, class-agnostic NMS).

    Input t is an NHWC map of ``num_box * (5 + num_classes)`` channels; its
    anchor n is ``mask[t * len(mask) / len(inputs) + n]``. A box is (x +
    sigmoid(tx)) / W, (y + sigmoid(ty)) / H, exp(tw) * bias_w / (W *
    anchors_scale[t]), exp(th) * bias_h / (H * anchors_scale[t]); each class c
    with sigmoid(to) * sigmoid(class c) > confidence_threshold is a candidate.
    NMS over all candidates drops one whose IoU with a better kept one is >=
    nms_threshold.

    All candidates of one box share its geometry, so the best of them
    suppresses the others (their IoU is 1): only each box's best class can be
    kept, and that is what this layer ranks, one candidate per box. (This holds
    for boxes of positive area; a box whose width or height underflows to 0,
    tw below about -87, has an IoU of NaN with itself, and the fork keeps one
    row for each of its classes.) Output and batches as YoloDetectionOutput.
    """

    def __init__(self, num_classes, num_box, biases, mask, anchors_scale, confidence_threshold=0.01,
                 nms_threshold=0.45, **kwargs):
        super().__init__(num_classes, num_box, biases, confidence_threshold, nms_threshold, **kwargs)
        self.mask = [int(m) for m in mask]
        self.anchors_scale = [int(s) for s in anchors_scale]

    def _decode(self, index, count, feature):
        height, width = feature.shape[1], feature.shape[2]
        groups = len(self.mask) // count
        cells = _cells(feature, self.num_box)
        cols, rows, anchors = _grid(height, width, self.num_box)
        bias_w, bias_h = self._anchor_sizes(np.asarray(self.mask[index * groups:index * groups + self.num_box])[anchors])
        scale = self.anchors_scale[index]
        scores = _sigmoid(cells[..., 5:5 + self.num_classes]) * _sigmoid(cells[..., 4:5])
        return ((cols + _sigmoid(cells[..., 0])) / width, (rows + _sigmoid(cells[..., 1])) / height,
                ops.exp(cells[..., 2]) * bias_w / (width * scale), ops.exp(cells[..., 3]) * bias_h / (height * scale),
                ops.cast(ops.argmax(scores, axis=-1), feature.dtype), ops.max(scores, axis=-1))

    def _passes(self, scores):
        return scores > self.confidence_threshold

    def get_config(self):
        config = super().get_config()
        config.update(mask=self.mask, anchors_scale=self.anchors_scale)
        return config


def _plus_one_iou_row(boxes, index, disjoint_is_zero):
    """IoU of box ``index`` with every box, corners [x1, y1, x2, y2] in pixels, areas counted with +1 (R-CNN's rule).

    brocolli's nms_cpu returns 0 for boxes that do not touch (x1 > other x2, ...)
    before the +1 widths could make them overlap; py-faster-rcnn's NMS kernels do not.
    """
    chosen = ops.take(boxes, index, axis=1)[:, None, :]
    ax1, ay1, ax2, ay2 = (chosen[..., i] for i in range(4))
    bx1, by1, bx2, by2 = (boxes[..., i] for i in range(4))
    width = ops.maximum(ops.minimum(ax2, bx2) - ops.maximum(ax1, bx1) + 1.0, 0.0)
    height = ops.maximum(ops.minimum(ay2, by2) - ops.maximum(ay1, by1) + 1.0, 0.0)
    inter = width * height
    area_a = (ax2 - ax1 + 1.0) * (ay2 - ay1 + 1.0)
    area_b = (bx2 - bx1 + 1.0) * (by2 - by1 + 1.0)
    iou = inter / (area_a + area_b - inter)
    if disjoint_is_zero:
        apart = ops.logical_or(ops.logical_or(ax1 > bx2, ay1 > by2), ops.logical_or(ax2 < bx1, ay2 < by1))
        iou = ops.where(apart, 0.0, iou)
    return iou


@keras.saving.register_keras_serializable(package="keraffe")
class Proposal(keras.layers.Layer):
    """Faster R-CNN's region proposals: anchors moved by the predicted deltas, clipped, ranked, NMS'd.

    Inputs (NHWC): the RPN's object probabilities (N, H, W, 2A) (the second A
    channels are "object"), its deltas (N, H, W, 4A) and im_info (N, 3) =
    (image height, image width, scale). ``anchors`` are the A base boxes
    (keraffe.caffe.anchors); anchor a at cell (h, w) is shifted by feat_stride.

    ``rule`` picks the original computed exactly:

    * "py-faster-rcnn" (its Python ProposalLayer, TEST config): boxes narrower or
      lower than min_size * im_info[2] are removed; the pre_nms_topn best go
      through NMS (a box goes when its IoU with a kept one is > nms_thresh).
      Each image reads its own im_info row (the original takes batch 1 only).
    * "brocolli" (the C++ Proposal of brocolli-caffe): a box under min_size (not
      scaled) keeps its place with score 0; every image reads im_info row 0;
      NMS counts boxes that do not touch as not overlapping.

    Outputs: rois (N * post_nms_topn, 5) = [image, x1, y1, x2, y2], each image's
    kept boxes best first, padded with rows of -1 (keraffe.layout.PROPOSALS);
    and the kept boxes' scores, (N * post_nms_topn, 1) for py-faster-rcnn or
    (N * post_nms_topn,) for brocolli, padded with -1. Equal scores are ranked
    by the originals' sorts in an unspecified order; keraffe puts the earlier
    (h, w, a) first.
    """

    RULES = ("py-faster-rcnn", "brocolli")

    def __init__(self, anchors, feat_stride, pre_nms_topn=6000, post_nms_topn=300, nms_thresh=0.7, min_size=16,
                 rule="py-faster-rcnn", **kwargs):
        super().__init__(**kwargs)
        if rule not in self.RULES:
            raise ValueError(f"rule must be one of {self.RULES}, received {rule!r}")
        self.anchors = [[float(v) for v in box] for box in anchors]
        self.feat_stride = int(feat_stride)
        self.pre_nms_topn = int(pre_nms_topn)
        self.post_nms_topn = int(post_nms_topn)
        self.nms_thresh = float(nms_thresh)
        self.min_size = int(min_size)
        self.rule = rule

    def _shifted_anchors(self, height, width) -> np.ndarray:
        base = np.asarray(self.anchors, np.float64)
        ys, xs = np.meshgrid(np.arange(height) * self.feat_stride, np.arange(width) * self.feat_stride, indexing="ij")
        shifts = np.stack([xs, ys, xs, ys], axis=-1).reshape(-1, 1, 4)
        return (shifts + base[None]).reshape(-1, 4).astype(np.float32)

    def call(self, inputs):
        scores, deltas, im_info = inputs
        count = len(self.anchors)
        height, width = scores.shape[1], scores.shape[2]
        total = height * width * count
        dtype = scores.dtype
        object_scores = ops.reshape(scores[..., count:2 * count], (-1, total))
        deltas = ops.reshape(deltas, (-1, total, 4))
        anchors = ops.convert_to_tensor(self._shifted_anchors(height, width), dtype=dtype)[None]
        widths = anchors[..., 2] - anchors[..., 0] + 1.0
        heights = anchors[..., 3] - anchors[..., 1] + 1.0
        ctr_x = anchors[..., 0] + 0.5 * widths
        ctr_y = anchors[..., 1] + 0.5 * heights
        pred_x = deltas[..., 0] * widths + ctr_x
        pred_y = deltas[..., 1] * heights + ctr_y
        pred_w = ops.exp(deltas[..., 2]) * widths
        pred_h = ops.exp(deltas[..., 3]) * heights
        info = im_info if self.rule == "py-faster-rcnn" else ops.zeros_like(im_info) + im_info[:1]
        image_h, image_w = info[:, 0:1], info[:, 1:2]

        def clip(value, limit):
            return ops.maximum(ops.minimum(value, limit - 1.0), 0.0)

        x1 = clip(pred_x - 0.5 * pred_w, image_w)
        y1 = clip(pred_y - 0.5 * pred_h, image_h)
        x2 = clip(pred_x + 0.5 * pred_w, image_w)
        y2 = clip(pred_y + 0.5 * pred_h, image_h)
        if self.rule == "py-faster-rcnn":
            least = float(self.min_size) * info[:, 2:3]
            big = ops.logical_and(x2 - x1 + 1.0 >= least, y2 - y1 + 1.0 >= least)
            candidates, ranked = big, ops.where(big, object_scores, -np.inf)
        else:
            big = ops.logical_and(x2 - x1 + 1.0 >= float(self.min_size), y2 - y1 + 1.0 >= float(self.min_size))
            ranked = object_scores * ops.cast(big, dtype)
            candidates = ops.ones_like(big)
        considered = min(self.pre_nms_topn, total) if self.pre_nms_topn > 0 else total
        best, order = ops.top_k(ranked, considered)
        take = lambda values: ops.take_along_axis(values, order, axis=1)  # noqa: E731
        boxes = ops.stack([take(x1), take(y1), take(x2), take(y2)], axis=-1)
        kept = self._nms(boxes, take(candidates))
        positions = ops.arange(considered)[None, :]
        rank = ops.argsort(ops.where(kept, positions, considered + positions), axis=1)
        rows = min(self.post_nms_topn, considered) if self.post_nms_topn > 0 else considered
        rank = rank[:, :rows]
        valid = ops.take_along_axis(kept, rank, axis=1)
        boxes = ops.take_along_axis(boxes, rank[..., None], axis=1)
        best = ops.take_along_axis(best, rank, axis=1)
        image = ops.cast(ops.arange(ops.shape(best)[0])[:, None], dtype) + ops.zeros_like(best)
        rois = ops.where(valid[..., None], ops.concatenate([image[..., None], boxes], axis=-1), -1.0)
        best = ops.where(valid, best, -1.0)
        pad = self._rows() - rows
        if pad:
            rois = ops.pad(rois, [(0, 0), (0, pad), (0, 0)], constant_values=-1.0)
            best = ops.pad(best, [(0, 0), (0, pad)], constant_values=-1.0)
        rois = ops.reshape(rois, (-1, 5))
        best = ops.reshape(best, (-1, 1) if self.rule == "py-faster-rcnn" else (-1,))
        return rois, best

    def _rows(self) -> int:
        return self.post_nms_topn if self.post_nms_topn > 0 else self.pre_nms_topn

    def _nms(self, boxes, candidates):
        count = boxes.shape[1]
        positions = ops.arange(count)
        last = ops.max(ops.sum(ops.cast(candidates, "int32"), axis=1))
        disjoint_is_zero = self.rule == "brocolli"

        def body(i, suppressed):
            keep_i = ops.logical_and(ops.take(candidates, i, axis=1),
                                     ops.logical_not(ops.take(suppressed, i, axis=1)))
            hits = ops.logical_and(_plus_one_iou_row(boxes, i, disjoint_is_zero) > self.nms_thresh,
                                   positions[None, :] > i)
            return i + 1, ops.logical_or(suppressed, ops.logical_and(keep_i[:, None], hits))

        _, suppressed = ops.while_loop(lambda i, s: i < last, body,
                                       (ops.convert_to_tensor(0, "int32"), ops.zeros_like(candidates)))
        return ops.logical_and(candidates, ops.logical_not(suppressed))

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        rows = None if batch is None else batch * self._rows()
        return (rows, 5), ((rows, 1) if self.rule == "py-faster-rcnn" else (rows,))

    def get_config(self):
        config = super().get_config()
        config.update(anchors=self.anchors, feat_stride=self.feat_stride, pre_nms_topn=self.pre_nms_topn,
                      post_nms_topn=self.post_nms_topn, nms_thresh=self.nms_thresh, min_size=self.min_size,
                      rule=self.rule)
        return config
