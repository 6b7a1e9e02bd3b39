"""A test-side, from-scratch NumPy reproduction of YOLOX's published ONNX demo post-processing.

What it reproduces (the YOLOX repository's ``yolox/data/data_augment.py::preproc`` and
``yolox/utils/demo_utils.py``: ``demo_postprocess``, ``nms``, ``multiclass_nms``, as used by
``demo/ONNXRuntime/onnx_inference.py``; ``ddddocr`` 1.6.1 ships the same code in
``ddddocr/core/detection_engine.py``):

* The ONNX export (``tools/export_onnx.py``, decode not in the graph) outputs ``[1, N, 5 + nc]``:
  columns 0..3 are the raw head regressions (grid offsets for cx, cy; log-sizes for w, h),
  column 4 the objectness and 5.. the class scores, both already sigmoided.
* ``decode``: per stride s in (8, 16, 32) (p6: 8, 16, 32, 64), a row-major grid of
  ``(H // s) * (W // s)`` cells, x fastest; ``cx, cy = (raw + grid) * s`` and
  ``w, h = exp(raw) * s``. NumPy dtypes as in the reference: the grids and strides are int64, so
  ``(raw + grid) * s`` and ``exp(raw) * s`` are evaluated in float64 (``exp`` itself on the
  float32 values) and rounded back into the float32 array on assignment.
* ``postprocess``: scores = objectness * class scores (float32); boxes to x1y1x2y2 in float32
  (``cx - w / 2.`` ...), divided in place by the letterbox ratio (a Python float, so in float32);
  then NMS. No clipping.
* NMS: greedy, order ``scores.argsort()[::-1]`` (NumPy's default, unstable sort, reversed), areas
  and intersections with the "+1 pixel" convention ``(x2 - x1 + 1) * (y2 - y1 + 1)``, a candidate
  survives while ``iou <= nms_thr``; a box is a candidate when ``score > score_thr`` (strict).
  Class-agnostic (the default): each box takes its argmax class and its score, one NMS over all.
  Class-aware: per class column, its own threshold and NMS; results concatenated class by class.
  Output rows ``[x1, y1, x2, y2, score, class]`` in NumPy's promoted dtype: float64 (float32 boxes
  and scores concatenated with int64 class indices, or float64 ones * class for class-aware),
  in NMS keep order.
* The reference returns ``None`` when nothing passes ``score_thr``; this module returns an empty
  ``(0, 6)`` float64 array instead. (The reference's class-agnostic ``if keep:`` guard can never
  leave ``dets`` unbound: NMS over a non-empty candidate set always keeps at least one box.)

NumPy only at import time; ``cv2`` is imported inside :func:`preprocess` alone, so the module
loads in environments without OpenCV.
"""

from __future__ import annotations

import numpy as np

PAD_VALUE = 114


def preprocess(bgr, input_hw):
    """YOLOX's ``preproc``: top-left letterbox onto a 114-filled canvas, no normalisation.

    ``bgr``: an ``(h, w, 3)`` uint8 image (BGR, as ``cv2.imdecode`` gives it); ``input_hw``:
    ``(H, W)`` of the model input. ``r = min(H / h, W / w)``; the image is resized with
    ``cv2.INTER_LINEAR`` to ``(int(w * r), int(h * r))`` (width, height; truncated), cast to
    uint8 and written at rows ``[:int(h * r)]``, columns ``[:int(w * r)]``; the rest stays 114.
    Channels stay in BGR order, values 0..255.

    Returns ``(tensor, r)``: a C-contiguous float32 ``[1, 3, H, W]`` array and the Python float r
    (divide decoded boxes by it to get image pixels).
    """
    import cv2

    img = np.asarray(bgr)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"preprocess expects an (h, w, 3) BGR image, got shape {img.shape}")
    height, width = int(input_hw[0]), int(input_hw[1])
    ratio = min(height / img.shape[0], width / img.shape[1])
    new_w = int(img.shape[1] * ratio)
    new_h = int(img.shape[0] * ratio)
    canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    canvas[:new_h, :new_w] = resized
    chw = np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32)
    return chw[None], ratio


def _grid_and_strides(input_hw, p6=False):
    """int64 ``(1, N, 2)`` cell indices (x, y) and int64 ``(1, N, 1)`` strides, levels in order."""
    strides = (8, 16, 32, 64) if p6 else (8, 16, 32)
    cells = []
    steps = []
    for stride in strides:
        rows = int(input_hw[0]) // stride
        cols = int(input_hw[1]) // stride
        ys, xs = np.divmod(np.arange(rows * cols, dtype=np.int64), cols)
        cells.append(np.stack([xs, ys], axis=1))
        steps.append(np.full((rows * cols, 1), stride, dtype=np.int64))
    return np.concatenate(cells)[None], np.concatenate(steps)[None]


def decode(raw, input_hw, p6=False):
    """Grid/stride decode of a YOLOX export's output (the reference's ``demo_postprocess``).

    ``raw``: ``[1, N, 5 + nc]`` (or ``[N, 5 + nc]``) as the model returns it; ``input_hw``:
    ``(H, W)`` of the model input; ``p6``: add the stride-64 level. N must equal the number of
    grid cells. Returns a new array of raw's dtype and shape (raw itself is not modified, unlike
    the reference, which decodes in place) with columns 0..3 = cx, cy, w, h in input pixels and
    the score columns untouched.
    """
    out = np.array(raw, copy=True)
    squeeze = out.ndim == 2
    if squeeze:
        out = out[None]
    grid, stride = _grid_and_strides(input_hw, p6)
    if out.shape[1] != grid.shape[1]:
        raise ValueError(f"{out.shape[1]} predictions for {grid.shape[1]} grid cells of {tuple(input_hw)}")
    # int64 grid/stride promote to float64; assignment rounds back to out's dtype.
    out[..., 0:2] = (out[..., 0:2] + grid) * stride
    out[..., 2:4] = np.exp(out[..., 2:4]) * stride
    return out[0] if squeeze else out


def nms(boxes, scores, nms_thr):
    """Greedy single-class NMS as YOLOX's NumPy ``nms``; returns kept indices (a list), best first.

    Areas and overlaps use the "+1 pixel" convention; a box is suppressed when its IoU with a kept
    box is ``> nms_thr`` (kept while ``<=``). Order is ``scores.argsort()[::-1]``: NumPy's default
    unstable sort, so among exactly equal scores the order is whatever that sort yields.
    """
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    kept = []
    while order.size:
        best = order[0]
        rest = order[1:]
        kept.append(best)
        iw = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = iw * ih
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= nms_thr]
    return kept


def _empty(boxes):
    return np.zeros((0, 6), dtype=np.result_type(boxes.dtype, np.int64))


def multiclass_nms_class_agnostic(boxes, scores, nms_thr, score_thr):
    """Each box's argmax class and score, ``score > score_thr``, one NMS over all classes.

    Rows ``[x1, y1, x2, y2, score, class]`` (float64 for float32 inputs), or an empty ``(0, 6)``.
    """
    cls = scores.argmax(1)
    best = scores[np.arange(len(cls)), cls]
    mask = best > score_thr
    if not mask.any():
        return _empty(boxes)
    cand_boxes, cand_scores, cand_cls = boxes[mask], best[mask], cls[mask]
    kept = nms(cand_boxes, cand_scores, nms_thr)
    return np.concatenate([cand_boxes[kept], cand_scores[kept, None], cand_cls[kept, None]], 1)


def multiclass_nms_class_aware(boxes, scores, nms_thr, score_thr):
    """Per class column: ``score > score_thr`` then NMS; rows concatenated in class order.

    A box may appear once per class. Class column is float64 (``ones * class``), so rows are
    float64; empty ``(0, 6)`` when nothing passes.
    """
    parts = []
    for c in range(scores.shape[1]):
        col = scores[:, c]
        mask = col > score_thr
        if not mask.any():
            continue
        cand_boxes, cand_scores = boxes[mask], col[mask]
        kept = nms(cand_boxes, cand_scores, nms_thr)
        if kept:
            labels = np.ones((len(kept), 1)) * c
            parts.append(np.concatenate([cand_boxes[kept], cand_scores[kept, None], labels], 1))
    if not parts:
        return np.zeros((0, 6), dtype=np.float64)
    return np.concatenate(parts, 0)


def multiclass_nms(boxes, scores, nms_thr, score_thr, class_agnostic=True):
    """Dispatch to the class-agnostic (default, as YOLOX) or class-aware variant."""
    fn = multiclass_nms_class_agnostic if class_agnostic else multiclass_nms_class_aware
    return fn(boxes, scores, nms_thr, score_thr)


def postprocess(raw, input_hw, ratio, nms_thr, score_thr, class_agnostic=True, p6=False):
    """The YOLOX ONNX demo's full post-processing of one image.

    ``raw``: the model output ``[1, N, 5 + nc]`` (first image used) or ``[N, 5 + nc]``;
    ``input_hw``: the model input ``(H, W)``; ``ratio``: the letterbox ratio from
    :func:`preprocess`. Returns ``(n, 6)`` rows ``[x1, y1, x2, y2, score, class]`` in original
    image pixels (not clipped, may lie outside the image), NMS keep order, float64 for a float32
    ``raw`` (every value float32-exact); an empty ``(0, 6)`` array when no score
    exceeds ``score_thr`` (the reference returns ``None``).

    ddddocr's detector: ``postprocess(raw, (416, 416), ratio, 0.45, 0.1)``.
    """
    pred = decode(raw, input_hw, p6)
    if pred.ndim == 3:
        pred = pred[0]
    box = pred[:, :4]
    scores = pred[:, 4:5] * pred[:, 5:]
    xyxy = np.ones_like(box)
    xyxy[:, 0] = box[:, 0] - box[:, 2] / 2.0
    xyxy[:, 1] = box[:, 1] - box[:, 3] / 2.0
    xyxy[:, 2] = box[:, 0] + box[:, 2] / 2.0
    xyxy[:, 3] = box[:, 1] + box[:, 3] / 2.0
    xyxy /= ratio
    return multiclass_nms(xyxy, scores, nms_thr, score_thr, class_agnostic)


def ddddocr_int_boxes(dets, image_hw):
    """ddddocr's ``get_bbox`` conversion of float rows to ``[x1, y1, x2, y2]`` ints.

    Per row (as Python floats): x1 = 0 if x1 < 0 else int(x1); y1 likewise; x2 = w if x2 > w else
    int(x2); y2 = h if y2 > h else int(y2). ``int`` truncates toward zero; nothing else is
    clipped (e.g. x2 < 0 stays negative). ``image_hw``: the decoded image's (h, w).
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    out = []
    for x1, y1, x2, y2 in np.asarray(dets)[:, :4].tolist():
        out.append([
            0 if x1 < 0 else int(x1),
            0 if y1 < 0 else int(y1),
            width if x2 > width else int(x2),
            height if y2 > height else int(y2),
        ])
    return out
