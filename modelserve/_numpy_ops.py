"""NumPy reference implementations of the pre- and post-processing kernels.

These are the test oracle for the Cython kernels in ``modelserve/_kernels`` and the explicit
fallback when the extension is not built (or ``MODELSERVE_KERNELS=numpy``). They follow
Ultralytics' pipeline operation by operation, in the same dtypes, so that their results are
identical to it: ``LetterBox`` + ``cv2.resize(INTER_LINEAR)`` + ``copyMakeBorder``, and
``non_max_suppression`` with ``torchvision.ops.nms``.

Inputs are trusted: the public wrappers in :mod:`modelserve.ops` validate them first.

Exactly tied scores included: where torch sorts *unstably* (``torchvision.ops.batched_nms`` above
1000 boxes orders its result with ``Tensor.sort(descending=True)``; ``non_max_suppression`` cuts to
``max_nms`` with ``argsort(descending=True)``), torch's CPU sort and the compiled kernels run
libstdc++'s ``std::sort`` (introsort) with torch's comparator, and this reference emulates that
``std::sort`` step for step (:func:`torch_sort_order`), so ties come out in the same order and the
two backends are identical in every case. Everywhere else (``torchvision.ops.nms``) the sort is
stable (:func:`sort_order`).
"""

from __future__ import annotations

import numpy as np

from ._torch_sort import sort_order, torch_sort_order

__all__ = [
    "linear_taps",
    "resize_bilinear",
    "sort_order",
    "torch_sort_order",
    "letterbox_into",
    "nms",
    "batched_nms",
    "yolo_postprocess",
    "MAX_WH",
]

#: Ultralytics' per-class box offset for class-aware NMS, in pixels.
MAX_WH = 7680.0

_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS  # OpenCV's INTER_RESIZE_COEF_SCALE


def linear_taps(src_size: int, dst_size: int, clamp: bool = True) -> tuple[np.ndarray, ...]:
    """OpenCV's fixed-point bilinear taps along one axis (``cv::resize``, ``INTER_LINEAR``, 8-bit).

    Returns ``(index0, index1, weight0, weight1)`` per output pixel (int32), weights in 1/2048 units.
    As in ``resize.cpp``: ``scale = 1 / (dst / src)``; ``f = float((d + 0.5) * scale - 0.5)``;
    ``s = floor(f)``; each weight is ``saturate_cast<short>(w * 2048)`` of ``1 - f`` and ``f``
    (rounded separately). Horizontally (``clamp=True``) a tap left of 0 or at/after the last pixel
    becomes weight ``(2048, 0)`` on the edge pixel; vertically (``clamp=False``) the weights are kept
    and only the row indices are clipped, which rounds differently at the top and bottom edges.
    """
    scale = 1.0 / (dst_size / src_size)
    d = np.arange(dst_size, dtype=np.float64)
    f = ((d + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    if clamp:
        low = s < 0
        f[low] = 0
        s[low] = 0
        high = s >= src_size - 1
        f[high] = 0
        s[high] = src_size - 1
    w0 = np.rint((np.float32(1) - f) * np.float32(_COEF_SCALE)).astype(np.int32)
    w1 = np.rint(f * np.float32(_COEF_SCALE)).astype(np.int32)
    s0 = np.clip(s, 0, src_size - 1).astype(np.int32)
    s1 = np.clip(s + 1, 0, src_size - 1).astype(np.int32)
    return s0, s1, w0, w1


def resize_bilinear(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an ``HxWxC`` uint8 image exactly as ``cv2.resize(..., INTER_LINEAR)`` (OpenCV 4.x/5.0).

    Fixed point: a horizontal pass into ints scaled by 2048, then the vertical pass
    ``((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2`` saturated to uint8, which is
    what both the SIMD (``VResizeLinearVec_32s8u``) and the scalar loops compute.
    An unchanged size is a copy (LetterBox does not call ``cv2.resize`` then).
    """
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img.copy()
    xs0, xs1, xa0, xa1 = linear_taps(w, width, clamp=True)
    ys0, ys1, yb0, yb1 = linear_taps(h, height, clamp=False)
    src = img.astype(np.int64)
    rows = src[:, xs0] * xa0.astype(np.int64)[None, :, None] + src[:, xs1] * xa1.astype(np.int64)[None, :, None]
    r0 = rows[ys0] >> 4
    r1 = rows[ys1] >> 4
    b0 = yb0.astype(np.int64)[:, None, None]
    b1 = yb1.astype(np.int64)[:, None, None]
    out = (((b0 * r0) >> 16) + ((b1 * r1) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def letterbox_into(
    image: np.ndarray,
    out: np.ndarray,
    resized_wh: tuple[int, int],
    pad_lt: tuple[int, int],
    pad_value: int,
    bgr_to_rgb: bool,
) -> None:
    """Resize ``image`` (HxWx3 uint8) to ``resized_wh``, place it at ``pad_lt`` in ``out`` (3xHxW).

    ``out`` is float32, float16 or uint8; floats are divided by 255 after the float32 cast,
    exactly as Ultralytics does (``tensor.float() / 255``).
    """
    rw, rh = resized_wh
    left, top = pad_lt
    resized = resize_bilinear(image, rw, rh)
    if bgr_to_rgb:
        resized = resized[..., ::-1]
    chw = resized.transpose(2, 0, 1)
    if out.dtype == np.uint8:
        out[...] = pad_value
        out[:, top : top + rh, left : left + rw] = chw
        return
    pad = np.float32(pad_value) / np.float32(255)
    out[...] = pad
    out[:, top : top + rh, left : left + rw] = chw.astype(np.float32) / np.float32(255)


def _iou_kept_vs_many(box: np.ndarray, area: np.float32, boxes: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """IoU of one kept box against later boxes, float32, exactly as torchvision's CPU kernel
    (``std::max``/``std::min`` on scalars: ``max(a, b) = a < b ? b : a``, ``min(a, b) = b < a ? b : a``,
    so a NaN coordinate of the later box loses and one of the kept box wins)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        xx1 = np.where(box[0] < boxes[:, 0], boxes[:, 0], box[0])
        yy1 = np.where(box[1] < boxes[:, 1], boxes[:, 1], box[1])
        xx2 = np.where(boxes[:, 2] < box[2], boxes[:, 2], box[2])
        yy2 = np.where(boxes[:, 3] < box[3], boxes[:, 3], box[3])
        zero = np.float32(0)
        dw = xx2 - xx1
        dh = yy2 - yy1
        w = np.where(zero < dw, dw, zero)
        h = np.where(zero < dh, dh, zero)
        inter = w * h
        return inter / (area + areas - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int = -1) -> np.ndarray:
    """Greedy NMS with torchvision's semantics; returns kept indices (int64), highest score first.

    ``boxes`` is ``(N, 4)`` float32 xyxy, ``scores`` ``(N,)`` float32. Boxes are visited in
    :func:`sort_order`; a box is suppressed by a kept box when their float32 IoU, compared as a
    double, is ``> iou_threshold`` (NaN never suppresses).
    ``max_keep >= 0`` stops after that many boxes are kept (same prefix as a full run).
    """
    n = boxes.shape[0]
    if n == 0 or max_keep == 0:
        return np.zeros(0, dtype=np.int64)
    order = sort_order(scores)
    b = boxes[order]
    with np.errstate(invalid="ignore", over="ignore"):
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    thr = float(iou_threshold)
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(order[i])
        if len(keep) == max_keep:
            break
        if i + 1 < n:
            iou = _iou_kept_vs_many(b[i], areas[i], b[i + 1 :], areas[i + 1 :])
            suppressed[i + 1 :] |= iou.astype(np.float64) > thr
    return np.asarray(keep, dtype=np.int64)


#: ``torchvision.ops.batched_nms`` on CPU runs one NMS per class above this many boxes, and the
#: coordinate trick (offsetting each class) at or below it.
BATCHED_NMS_VANILLA_ABOVE = 1000


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float, max_keep: int = -1
) -> np.ndarray:
    """Class-aware NMS with ``torchvision.ops.batched_nms`` semantics (CPU, torchvision 0.2x):
    up to 1000 boxes, the coordinate trick (``boxes + class * (boxes.max() + 1)`` in float32, then
    one NMS); above, one NMS per class on the raw boxes, merged by descending score."""
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n <= BATCHED_NMS_VANILLA_ABOVE:
        with np.errstate(invalid="ignore", over="ignore"):
            max_coordinate = boxes.max()
            offsets = class_ids.astype(np.float32) * (max_coordinate + np.float32(1))
            shifted = boxes + offsets[:, None]
        return nms(shifted, scores, iou_threshold, max_keep)
    keep_mask = np.zeros(n, dtype=bool)
    for c in np.unique(class_ids):
        idx = np.flatnonzero(class_ids == c)
        keep_mask[idx[nms(boxes[idx], scores[idx], iou_threshold)]] = True
    kept = np.flatnonzero(keep_mask)
    kept = kept[torch_sort_order(scores[kept])]  # scores[kept].sort(descending=True): unstable
    return kept if max_keep < 0 else kept[:max_keep]


def corners(xy: np.ndarray, wh: np.ndarray, two: np.floating) -> tuple[np.ndarray, np.ndarray]:
    """Ultralytics' ``xywh2xyxy`` in the arrays' dtype: ``xy - wh / 2`` and ``xy + wh / 2``."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf boxes give NaN/inf, as in torch
        half = wh / two
        return xy - half, xy + half


def xywh2xyxy(x: np.ndarray) -> np.ndarray:
    """``(n, 4)`` cx, cy, w, h rows to x1, y1, x2, y2 with :func:`corners` (float32 halves)."""
    y = np.empty_like(x)
    y[:, 0:2], y[:, 2:4] = corners(x[:, 0:2], x[:, 2:4], np.float32(2))
    return y


def yolo_postprocess(
    raw: np.ndarray,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    classes: np.ndarray | None = None,
    agnostic: bool = False,
    max_nms: int = 30000,
    xyxy: bool = False,
) -> list[np.ndarray]:
    """Ultralytics' ``non_max_suppression`` for ``[B, 4+nc, N]`` float32 outputs (single label per box).

    Returns one ``(n, 6)`` float32 array per image: ``x1, y1, x2, y2, confidence, class``.
    ``xyxy``: the first four channels are already x1, y1, x2, y2 (see :func:`half_xyxy`).
    """
    nc = raw.shape[1] - 4
    return [det for det, _ in yolo_select(raw, nc, conf, iou, max_det, classes, agnostic, max_nms, xyxy)]


def half_xyxy(raw: np.ndarray) -> np.ndarray:
    """Float16 ``[B, 4+..., N]`` outputs as float32 with channels 0-3 turned into x1, y1, x2, y2 in
    float16 arithmetic, as Ultralytics' ``xywh2xyxy`` computes them on a half-precision model's
    outputs (each operation rounded to float16, like torch's CPU half arithmetic)."""
    out = raw.astype(np.float32)
    out[:, 0:2], out[:, 2:4] = corners(raw[:, 0:2], raw[:, 2:4], np.float16(2))
    return out


def yolo_select(
    raw: np.ndarray,
    nc: int,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    classes: np.ndarray | None = None,
    agnostic: bool = False,
    max_nms: int = 30000,
    xyxy: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`yolo_postprocess` on the first ``4 + nc`` channels of ``[B, 4+nc+extra, N]`` outputs;
    per image the ``(n, 6)`` rows and the ``(n,)`` int64 anchors (columns of ``raw``) they came from."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    none = (np.zeros((0, 6), dtype=np.float32), np.zeros(0, dtype=np.int64))
    for b in range(raw.shape[0]):
        anchors, confs, j = yolo_candidates(raw[b], nc, conf, classes, max_nms)
        if anchors.size == 0:
            out.append(none)
            continue
        boxes = np.ascontiguousarray(raw[b, :4][:, anchors].T)
        if not xyxy:
            boxes = xywh2xyxy(boxes)
        det = np.concatenate([boxes, confs[:, None], j[:, None].astype(np.float32)], axis=1).astype(np.float32)
        offset = det[:, 5:6] * np.float32(0.0 if agnostic else MAX_WH)  # float32, as Ultralytics
        keep = nms(det[:, :4] + offset, det[:, 4], iou, max_det)[:max_det]
        out.append((np.ascontiguousarray(det[keep]), anchors[keep]))
    return out


def yolo_candidates(
    x: np.ndarray, nc: int, conf: float, classes: np.ndarray | None, max_nms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates of Ultralytics' ``non_max_suppression`` (single label) in one image's
    ``(4 + nc + extra, N)`` float32 outputs: anchors whose best class score is ``> conf`` (in
    float32; a NaN score excludes its anchor, as ``amax`` does), of an allowed class, at most
    ``max_nms`` of them by score (torch's unstable sort). Returns ``(anchors int64, scores
    float32, classes int64)`` in the order NMS receives them."""
    scores = x[4 : 4 + nc]  # (nc, N)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64))
    if nc == 0:
        return empty
    with np.errstate(invalid="ignore"):
        cand = np.flatnonzero(scores.max(axis=0) > np.float32(conf))  # torch compares in float32
    if cand.size == 0:
        return empty
    cls_scores = scores[:, cand]
    j = cls_scores.argmax(axis=0)
    confs = cls_scores[j, np.arange(cand.size)]
    if classes is not None:
        keep = np.isin(j.astype(np.float32), np.asarray(classes, dtype=np.float32))
        cand, confs, j = cand[keep], confs[keep], j[keep]
    if cand.size > max_nms:  # x[x[:, 4].argsort(descending=True)[:max_nms]]: unstable
        order = torch_sort_order(confs)[:max_nms]
        cand, confs, j = cand[order], confs[order], j[order]
    return cand.astype(np.int64), confs.astype(np.float32), j.astype(np.int64)
