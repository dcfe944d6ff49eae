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
