"""Axis-aligned NMS and YOLO decoding with Ultralytics' and torchvision's exact semantics.

:func:`nms` and :func:`batched_nms` follow ``torchvision.ops``; :func:`yolo_postprocess` is
Ultralytics' ``non_max_suppression`` on raw ``[B, 4+nc, N]`` outputs. :func:`yolo_detections` and
:func:`yolo_select` are the forms the task heads use on validated arguments (boxes mapped back in the
same kernel call; kept anchors for heads with channels after the class scores). They run the
GIL-releasing kernel ``modelserve._kernels._nms``, or :mod:`modelserve._numpy_ops` when
:func:`modelserve._backend.use_kernels` says so; both give identical results.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from . import _checks, _numpy_ops, _torch_sort
from ._backend import use_kernels
from ._errors import InvalidInputError
from ._letterbox import scale_with

try:
    from ._kernels import _nms as _k_nms
except ImportError:  # extension not built
    _k_nms = None  # type: ignore[assignment]

__all__ = ["nms", "batched_nms", "yolo_postprocess", "yolo_detections", "yolo_select", "yolo_candidates", "model_boxes",
           "torch_order", "nms_plus_one", "MAX_WH"]

#: Ultralytics' per-class box offset (pixels) for class-aware NMS (``non_max_suppression(max_wh=7680)``).
MAX_WH = _numpy_ops.MAX_WH
#: The candidate limit of Ultralytics' ``non_max_suppression`` (``max_nms``).
MAX_NMS = 30000

yolo_candidates = _numpy_ops.yolo_candidates


def model_boxes(raw: np.ndarray) -> tuple[np.ndarray, bool]:
    """A model's raw ``[B, 4+..., N]`` outputs as the decoders take them: C-contiguous float32, and
    whether channels 0-3 are already x1, y1, x2, y2. Float16 outputs (half-precision exports) get
    their corners computed in float16, as Ultralytics' ``xywh2xyxy`` computes them on half tensors,
    so that the boxes match its answers exactly."""
    if raw.dtype == np.float16:
        return _numpy_ops.half_xyxy(raw), True
    if raw.dtype != np.float32 or not raw.flags.c_contiguous:
        raw = np.ascontiguousarray(raw, dtype=np.float32)
    return raw, False


@functools.lru_cache(maxsize=16)
def _all_classes(nc: int) -> np.ndarray:
    allowed = np.ones(nc, dtype=np.uint8)
    allowed.flags.writeable = False
    return allowed


def yolo_postprocess(
    raw: np.ndarray,
    *,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    max_nms: int = MAX_NMS,
) -> list[np.ndarray]:
    """Decode raw YOLO outputs and run class-aware NMS, like Ultralytics' ``non_max_suppression``.

    ``raw``: ``[B, 4+nc, N]`` (cx, cy, w, h, then one score per class; no objectness; float16 is
    converted to float32). A box is a candidate when its best class score is ``> conf`` (compared in
    float32, as torch does; a NaN score anywhere in its column excludes it, as ``amax`` does); its
    class is the first best one. Boxes are offset by ``class * 7680`` in float32 (unless
    ``agnostic``) and a kept box suppresses another when their IoU is ``> iou``
    (``torchvision.ops.nms``). At most ``max_nms`` candidates (highest first) enter NMS and
    ``max_det`` detections are kept per image. Returns one ``(n, 6)`` float32 array per image,
    ``[x1, y1, x2, y2, confidence, class]``, highest confidence first: bit-identical to
    Ultralytics' ``non_max_suppression`` (single label). The kernel releases the GIL.
    """
    if not isinstance(raw, np.ndarray):
        raise InvalidInputError(f"raw must be a numpy array, got {type(raw).__name__}")
    if raw.ndim != 3 or raw.shape[1] < 5:
        raise InvalidInputError(f"raw must have shape (B, 4+nc, N) with nc >= 1, got {raw.shape}")
    if raw.dtype.kind != "f":
        raise InvalidInputError(f"raw must be a float array, got {raw.dtype}")
    raw = np.ascontiguousarray(raw, dtype=np.float32)
    conf = _checks.finite(conf, "conf")
    iou = _checks.finite(iou, "iou")
    max_det = _checks.count(max_det, "max_det")
    max_nms = _checks.count(max_nms, "max_nms")
    class_arr = _checks.classes(classes)
    if not use_kernels():
        return _numpy_ops.yolo_postprocess(raw, conf, iou, max_det, class_arr, bool(agnostic), max_nms)
    batch, channels, n = raw.shape
    rows = max(1, min(max_det, n))
    det = np.empty((batch, rows, 6), dtype=np.float32)
    counts = np.empty(batch, dtype=np.int64)  # the kernel sets every entry
    rc = _k_nms.yolo_postprocess(
        raw, conf, iou, max_det, _allowed(class_arr, channels - 4), bool(agnostic), max_nms, MAX_WH,
        det, counts,
    )
    if rc != 0:
        raise MemoryError("yolo_postprocess: out of memory")
    return [det[b, : counts[b]].copy() for b in range(batch)]


def _allowed(class_arr: np.ndarray | None, nc: int) -> np.ndarray:
    """The kernel's per-class uint8 mask for ``classes`` (``None``: every class)."""
    if class_arr is None:
        return _all_classes(nc)
    allowed = np.zeros(nc, dtype=np.uint8)
    allowed[class_arr[(class_arr >= 0) & (class_arr < nc)]] = 1
    return allowed


def yolo_detections(
    raw: np.ndarray, conf: float, iou: float, max_det: int, class_arr: np.ndarray | None, agnostic: bool,
    max_nms: int, scale: np.ndarray, kernels: bool, xyxy: bool = False,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The Predictor's post-processing: :func:`yolo_postprocess` on validated arguments (``raw``
    C-contiguous float32) with each image's boxes mapped back by its ``(B, 12)`` ``scale`` row,
    straight into ``(xyxy, confidence, class_id)`` arrays per image. ``xyxy``: channels 0-3 are
    already corners (:func:`model_boxes` of a half-precision model's outputs)."""
    if not kernels:
        dets = _numpy_ops.yolo_postprocess(raw, conf, iou, max_det, class_arr, agnostic, max_nms, xyxy)
        out = []
        for det, row in zip(dets, scale):
            out.append((scale_with(det[:, :4].copy(), row), det[:, 4].copy(), det[:, 5].astype(np.int64)))
        return out
    allowed = _allowed(class_arr, raw.shape[1] - 4)
    return _k_nms.yolo_detections(raw, conf, iou, max_det, allowed, agnostic, max_nms, MAX_WH, scale, xyxy)


def yolo_select(
    raw: np.ndarray, nc: int, conf: float, iou: float, max_det: int, class_arr: np.ndarray | None, agnostic: bool,
    max_nms: int, kernels: bool, xyxy: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`yolo_postprocess` on the first ``4 + nc`` channels of ``[B, C, N]`` validated outputs
    (C-contiguous float32, C >= 4 + nc): per image the kept ``(n, 6)`` rows in tensor pixels and
    the ``(n,)`` int64 anchors (columns of ``raw``) they came from, for heads with channels after
    the class scores (segmentation coefficients, keypoints)."""
    if not kernels:
        return _numpy_ops.yolo_select(raw, nc, conf, iou, max_det, class_arr, agnostic, max_nms, xyxy)
    batch, _, n = raw.shape
    rows = max(1, min(max_det, n))
    det = np.empty((batch, rows, 6), dtype=np.float32)
    anchors = np.empty((batch, rows), dtype=np.int64)
    counts = np.zeros(batch, dtype=np.int64)
    rc = _k_nms.yolo_postprocess(raw, conf, iou, max_det, _allowed(class_arr, nc), agnostic, max_nms,
                                 MAX_WH, det, counts, nc, anchors, xyxy)
    if rc != 0:
        raise MemoryError("yolo_postprocess: out of memory")
    return [(det[b, : counts[b]], anchors[b, : counts[b]]) for b in range(batch)]


def torch_order(scores: np.ndarray, kernels: bool | None = None) -> np.ndarray:
    """Indices that sort float32 ``scores`` as torch's CPU ``argsort(descending=True)`` does, ties
    in ``std::sort``'s order: the kernel (GIL released), or :mod:`modelserve._torch_sort`'s NumPy
    emulation (``kernels`` False, or None and :func:`use_kernels` says so)."""
    if kernels is None:
        kernels = use_kernels()
    if not kernels or _k_nms is None:
        return _torch_sort.torch_sort_order(scores)
    s = np.ascontiguousarray(scores, dtype=np.float32).reshape(-1)
    out = np.empty(len(s), dtype=np.int64)
    if _k_nms.torch_sort_order(s, out) != 0:
        raise MemoryError("torch_order: out of memory")
    return out


def nms_plus_one(boxes: np.ndarray, order: np.ndarray, thr: float, kernels: bool | None = None) -> np.ndarray | None:
    """YOLOX's NMS (+1-pixel areas, ``IoU <= thr`` kept) over float32 ``(n, 4)`` boxes visited in
    ``order``, in the kernel: the kept indices, or None where the kernel does not apply (not built,
    ``kernels`` False, or a coordinate that is not finite, where NumPy's NaN rules decide)."""
    if kernels is None:
        kernels = use_kernels()
    boxes = np.ascontiguousarray(boxes, dtype=np.float32)
    order = np.ascontiguousarray(order, dtype=np.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or order.ndim != 1 or (
            len(order) and (order.min() < 0 or order.max() >= len(boxes))):
        raise InvalidInputError(f"nms_plus_one: boxes must be (n, 4) and order indices into them, got "
                                f"{boxes.shape} and {order.shape}")
    if not kernels or _k_nms is None or not np.isfinite(boxes).all():
        return None
    keep = np.empty(max(len(order), 1), dtype=np.int64)
    count = _k_nms.nms_plus_one(boxes, order, thr, keep)
    if count < 0:
        raise MemoryError("nms_plus_one: out of memory")
    return keep[:count].copy()


def _check_boxes_scores(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InvalidInputError(f"boxes must be a 2D array with shape (N, 4), got {boxes.shape}")
    if scores.shape != (boxes.shape[0],):
        raise InvalidInputError(f"scores must have shape ({boxes.shape[0]},), got {scores.shape}")
    if boxes.dtype.kind not in "fiu" or scores.dtype.kind not in "fiu":
        raise InvalidInputError(f"boxes and scores must be numeric, got {boxes.dtype} and {scores.dtype}")
    return np.ascontiguousarray(boxes, np.float32), np.ascontiguousarray(scores, np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Non-maximum suppression with ``torchvision.ops.nms`` semantics.

    ``boxes``: ``(N, 4)`` x1, y1, x2, y2; ``scores``: ``(N,)``. Boxes are visited by descending score
    (ties keep input order); a box is dropped when its IoU with a kept box is ``> iou_threshold``.
    Returns the kept indices (int64) by descending score.
    """
    boxes, scores = _check_boxes_scores(boxes, scores)
    thr = _checks.threshold(iou_threshold)
    if not use_kernels():
        return _numpy_ops.nms(boxes, scores, thr)
    n = boxes.shape[0]
    keep = np.empty(max(n, 1), dtype=np.int64)
    count = _k_nms.nms(boxes, scores, thr, n, keep)
    if count < 0:
        raise MemoryError("nms: out of memory")
    return keep[:count].copy()


def batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Per-class NMS with ``torchvision.ops.batched_nms`` semantics: boxes of different classes never
    suppress each other. Returns kept indices (int64) by descending score."""
    boxes, scores = _check_boxes_scores(boxes, scores)
    class_ids = np.asarray(class_ids)
    if class_ids.shape != (boxes.shape[0],) or class_ids.dtype.kind not in "iu":
        raise InvalidInputError(
            f"class_ids must be an integer array with shape ({boxes.shape[0]},), got {class_ids.dtype} {class_ids.shape}"
        )
    thr = _checks.threshold(iou_threshold)
    if not use_kernels():
        return _numpy_ops.batched_nms(boxes, scores, class_ids, thr)
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(class_ids.min()), int(class_ids.max())
    if hi - lo < 4 * n + 1024:  # dense ids by offset: increasing, no sort needed
        dense = (class_ids - lo).astype(np.int32)
        ncls = hi - lo + 1
    else:
        uniq, inverse = np.unique(class_ids, return_inverse=True)
        dense = inverse.astype(np.int32).reshape(-1)
        ncls = uniq.size
    use_offsets = n <= _numpy_ops.BATCHED_NMS_VANILLA_ABOVE
    if use_offsets:  # torchvision's coordinate trick, in float32 exactly as it computes it
        with np.errstate(invalid="ignore", over="ignore"):
            offsets = class_ids.astype(np.float32) * (boxes.max() + np.float32(1))
    else:
        offsets = _ONE_ZERO
    keep = np.empty(n, dtype=np.int64)
    count = _k_nms.batched_nms(boxes, scores, offsets, dense, ncls, use_offsets, thr, n, keep)
    if count < 0:
        raise MemoryError("batched_nms: out of memory")
    return keep[:count].copy()


_ONE_ZERO = np.zeros(1, dtype=np.float32)
