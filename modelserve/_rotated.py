"""Rotated (oriented-box, OBB) NMS with Ultralytics 8.4's exact semantics.

Ultralytics' ``non_max_suppression(..., rotated=True)`` runs
``TorchNMS.fast_nms(boxes, scores, iou, iou_func=batch_probiou)`` on ``xywhr`` boxes (centre x, y,
width, height, angle in radians) whose centres are first offset by ``class * max_wh`` (7680)
unless ``agnostic``. This module reproduces that:

* order: ``torch.argsort(scores, descending=True)`` (unstable): descending, every NaN first,
  ``-0.0 == 0.0``, exact ties in the order libstdc++'s ``std::sort`` leaves them (what torch's CPU
  sort runs; the kernel calls the same ``std::sort``, the NumPy fallback emulates it with
  :func:`modelserve._numpy_ops.torch_sort_order`);
* Fast-NMS (``ious.triu_(1)``, ``(ious > thr).sum(0) <= 0``): a box is dropped when *any*
  higher-ranked box, kept or not, has a probabilistic IoU with it ``> thr``; this is not greedy
  NMS (a suppressed box still suppresses). The comparison is in float32 against
  ``float32(iou_threshold)``. NaN IoUs never suppress; a negative threshold suppresses every box
  (the zeroed lower triangle exceeds it), so the result is empty;
* ``batch_probiou`` in float32, operation by operation, eps ``1e-7`` (as float32),
  ``clamp(eps, 100)``.

Bit-exactness caveat: torch evaluates cos/sin/log/exp with MKL VML, whose float32 results are
within 1 ulp of, but not always equal to, the correctly rounded values this module uses (both
backends here compute them in float64 and round). An IoU can therefore differ from torch's by a
few ulps (~1e-7), which changes the kept set only if an IoU lies that close to the threshold.

The functions validate their inputs (raising :class:`~modelserve.InvalidInputError`) and then run
the GIL-releasing Cython kernel ``modelserve._kernels._obb``, or the NumPy fallback here when
``modelserve.ops.backend()`` is ``"numpy"``. Both give identical results.
"""

from __future__ import annotations

import math

import numpy as np

from . import _checks, _numpy_ops
from ._backend import use_kernels
from ._errors import InvalidInputError

try:
    from ._kernels import _obb as _k_obb
except ImportError:  # extension not built
    _k_obb = None  # type: ignore[assignment]

__all__ = ["probiou", "nms_rotated", "batched_nms_rotated", "MAX_WH"]

#: Ultralytics' per-class offset (pixels) for class-aware NMS (``non_max_suppression(max_wh=7680)``).
MAX_WH = _numpy_ops.MAX_WH

_EPS = np.float32(1e-7)
_ROW_BLOCK_ELEMS = 1 << 22  # NumPy fallback: at most this many pairwise IoUs in memory at once


def _use_kernels() -> bool:
    return _k_obb is not None and use_kernels()


def _check_xywhr(xywhr: np.ndarray, what: str = "xywhr") -> np.ndarray:
    arr = np.asarray(xywhr)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise InvalidInputError(f"{what} must be a 2D array with shape (N, 5) (x, y, w, h, angle), got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what} must be numeric, got {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(arr, np.float32)


def _check_xywhr_scores(xywhr: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = _check_xywhr(xywhr)
    sc = np.asarray(scores)
    if sc.shape != (boxes.shape[0],):
        raise InvalidInputError(f"scores must have shape ({boxes.shape[0]},), got {sc.shape}")
    if sc.dtype.kind not in "fiu":
        raise InvalidInputError(f"scores must be numeric, got {sc.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        return boxes, np.ascontiguousarray(sc, np.float32)


def _check_threshold(value: float) -> np.float32:
    """A real number, not NaN, as the float32 torch compares the IoUs with (an overflowing value
    is +-inf)."""
    thr = _checks.threshold(value)
    if math.isnan(thr):
        raise InvalidInputError(f"iou_threshold must not be NaN, got {value!r}")
    with np.errstate(over="ignore"):
        return np.float32(thr)


# ----------------------------------------------------------------------------- NumPy fallback


def _f32(fn, x: np.ndarray) -> np.ndarray:
    """A transcendental function in float64, rounded to float32 (what the kernel computes)."""
    return fn(x.astype(np.float64)).astype(np.float32)


def _cov(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    """``_get_covariance_matrix`` (float32) plus the clamped determinant ``(a*b - c^2).clamp(0)``."""
    a = boxes[:, 2] * boxes[:, 2] / np.float32(12) + np.float32(0)
    b = boxes[:, 3] * boxes[:, 3] / np.float32(12) + np.float32(0)
    cs, sn = _f32(np.cos, boxes[:, 4]), _f32(np.sin, boxes[:, 4])
    cos2, sin2 = cs * cs, sn * sn
    A = a * cos2 + b * sin2
    B = a * sin2 + b * cos2
    C = (a - b) * cs * sn
    D = A * B - C * C
    D = np.where(D < 0, np.float32(0), D)  # clamp_(0), NaN kept
    return boxes[:, 0], boxes[:, 1], A, B, C, D


def _pair_iou(p: tuple[np.ndarray, ...], q: tuple[np.ndarray, ...]) -> np.ndarray:
    """``batch_probiou`` of the rows of ``p`` (column vectors) with those of ``q`` (row vectors)."""
    x1, y1, a1, b1, c1, d1 = (v[:, None] for v in p)
    x2, y2, a2, b2, c2, d2 = (v[None, :] for v in q)
    sa, sb, sc = a1 + a2, b1 + b2, c1 + c2
    dy, dx = y1 - y2, x1 - x2
    num = sa * sb - sc * sc
    den = num + _EPS
    t1 = ((sa * (dy * dy) + sb * (dx * dx)) / den) * np.float32(0.25)
    t2 = ((sc * (x2 - x1) * dy) / den) * np.float32(0.5)
    q4 = np.float32(4) * np.sqrt(d1 * d2) + _EPS
    t3 = _f32(np.log, num / q4 + _EPS) * np.float32(0.5)
    bd = t1 + t2 + t3
    bd = np.where(bd < _EPS, _EPS, np.where(bd > np.float32(100), np.float32(100), bd))  # clamp, NaN kept
    e = _f32(np.exp, -bd)
    hd = np.sqrt(np.float32(1) - e + _EPS)
    return np.float32(1) - hd


def _probiou_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return _pair_iou(_cov(a), _cov(b)).astype(np.float32, copy=False)


def _nms_rotated_numpy(boxes: np.ndarray, scores: np.ndarray, thr: np.float32) -> np.ndarray:
    n = boxes.shape[0]
    if n == 0 or not thr >= 0:
        return np.zeros(0, dtype=np.int64)
    order = _numpy_ops.torch_sort_order(scores)
    with np.errstate(all="ignore"):
        p = _cov(boxes[order])
        suppressed = np.zeros(n, dtype=bool)
        block = max(1, _ROW_BLOCK_ELEMS // n)
        for r0 in range(0, n - 1, block):
            r1 = min(n - 1, r0 + block)  # rows r0..r1-1 against columns r0+1..n-1
            iou = _pair_iou(tuple(v[r0:r1] for v in p), tuple(v[r0 + 1:] for v in p))
            rows = np.arange(r0, r1)[:, None]
            cols = np.arange(r0 + 1, n)[None, :]
            hit = (iou > thr) & (rows < cols)  # triu(diagonal=1)
            suppressed[r0 + 1:] |= hit.any(axis=0)
    return order[~suppressed].astype(np.int64)


# ----------------------------------------------------------------------------- public API


def probiou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Ultralytics' ``batch_probiou(a, b)``: the ``(n, m)`` float32 probabilistic IoU (1 minus the
    Hellinger distance of the boxes' Gaussians) of ``(n, 5)`` and ``(m, 5)`` xywhr boxes (angle in
    radians). NaN inputs give NaN entries."""
    a = _check_xywhr(a, "a")
    b = _check_xywhr(b, "b")
    n, m = a.shape[0], b.shape[0]
    if not _use_kernels():
        if n == 0 or m == 0:
            return np.zeros((n, m), dtype=np.float32)
        return _probiou_numpy(a, b)
    out = np.empty((n, m), dtype=np.float32)
    if _k_obb.probiou(a, b, out) != 0:
        raise MemoryError("probiou: out of memory")
    return out


def nms_rotated(xywhr: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Ultralytics' rotated NMS (``TorchNMS.fast_nms`` with ``batch_probiou``), class-agnostic.

    ``xywhr``: ``(N, 5)`` centre x, y, width, height, angle (radians); ``scores``: ``(N,)``.
    Boxes are ranked as ``torch.argsort(scores, descending=True)`` ranks them (ties included); a
    box is dropped when any higher-ranked box (kept or not: Fast-NMS) has probiou ``> iou_threshold``
    with it. Returns the kept indices (int64), highest score first. The kernel releases the GIL.
    """
    boxes, sc = _check_xywhr_scores(xywhr, scores)
    thr = _check_threshold(iou_threshold)
    return _run(boxes, sc, None, thr)


def batched_nms_rotated(
    xywhr: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float, *, max_wh: float = MAX_WH
) -> np.ndarray:
    """Class-aware rotated NMS exactly as Ultralytics' ``non_max_suppression(rotated=True)`` does it.

    Ultralytics does not run one NMS per class: it adds ``c = float32(class) * max_wh`` (7680) to
    each box's centre x and y (float32) and runs one :func:`nms_rotated`; boxes of different classes
    are then ``>= 7680`` px apart, so their probiou is ~0 and they never suppress each other for
    boxes smaller than that (which is the case for every image Ultralytics handles). Doing the same
    here keeps the result identical to Ultralytics' in every case, including the float32 rounding of
    offset centres. Returns kept indices (int64), highest score first.
    """
    boxes, sc = _check_xywhr_scores(xywhr, scores)
    cls = np.asarray(class_ids)
    if cls.shape != (boxes.shape[0],) or cls.dtype.kind not in "iu":
        raise InvalidInputError(
            f"class_ids must be an integer array with shape ({boxes.shape[0]},), got {cls.dtype} {cls.shape}"
        )
    mw = _checks.finite(max_wh, "max_wh")
    with np.errstate(over="ignore", invalid="ignore"):
        offsets = cls.astype(np.float32) * np.float32(mw)  # x[:, 5:6] * max_wh, in float32
    thr = _check_threshold(iou_threshold)
    return _run(boxes, sc, np.ascontiguousarray(offsets, np.float32), thr)


def _run(boxes: np.ndarray, scores: np.ndarray, offsets: np.ndarray | None, thr: np.float32) -> np.ndarray:
    n = boxes.shape[0]
    if not _use_kernels():
        if offsets is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                boxes = boxes.copy()
                boxes[:, 0] += offsets
                boxes[:, 1] += offsets
        return _nms_rotated_numpy(boxes, scores, thr)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    keep = np.empty(n, dtype=np.int64)
    count = _k_obb.nms_rotated(boxes, scores, _ONE_ZERO if offsets is None else offsets, offsets is not None,
                               float(thr), keep)
    if count < 0:
        raise MemoryError("nms_rotated: out of memory")
    return keep[:count].copy()


_ONE_ZERO = np.zeros(1, dtype=np.float32)
