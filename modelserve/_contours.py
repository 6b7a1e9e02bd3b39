"""Segmentation polygons exactly as Ultralytics 8.4 gives them (``Results.masks.xy``), without OpenCV.

Ultralytics' ``ops.masks2segments(masks, strategy="all")`` runs, for each ``(H, W)`` mask,
``cv2.findContours(mask.astype(uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)`` and, when
that finds several contours, joins them with ``data.converter.merge_multi_segment``; no contour
gives an empty ``(0, 2)`` array; the result is float32. ``Masks.xy`` then applies
``ops.scale_coords(mask_hw, xy, orig_hw)``, which with retina masks (mask size == image size)
subtracts a zero padding, divides by a gain of 1.0 and clips to ``[0, W] x [0, H]``: the identity,
since every contour point is a pixel of the mask.

* :func:`external_contours` is ``cv2.findContours(..., RETR_EXTERNAL, CHAIN_APPROX_SIMPLE)``: the
  same contours in the same order (OpenCV lists the last one found first), the same starting
  points and direction, the same compressed points (see ``modelserve/_kernels/_contours.pyx`` for
  the algorithm). Blobs inside the holes of other blobs are not outer contours; masks touching the
  image border are handled as OpenCV does (it pads the mask with zeros).
* :func:`mask_polygon` is ``masks2segments(strategy="all")`` for one mask, shifted by an offset.
  Contours are translation-invariant and so is ``merge_multi_segment`` (it compares squared
  distances), so the polygon of a mask that is zero outside a box equals the polygon of the box
  crop shifted by the crop's top-left corner: ``mask_polygon(crop, offset=(x0, y0))``.

The border following runs in the GIL-releasing Cython kernel ``modelserve._kernels._contours``, or
in the pure-Python fallback below when the kernel is not built or ``modelserve.ops.backend()`` is
``"numpy"``. Both give identical results.

Example::

    >>> import numpy as np
    >>> m = np.zeros((4, 6), bool); m[1:3, 1:4] = True
    >>> external_contours(m)[0].tolist()
    [[1, 1], [1, 2], [3, 2], [3, 1]]
    >>> mask_polygon(m, offset=(10, 20)).tolist()
    [[11.0, 21.0], [11.0, 22.0], [13.0, 22.0], [13.0, 21.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._backend import use_kernels
from ._checks import is_int
from ._errors import InvalidInputError

try:
    from ._kernels import _contours as _k_contours
except ImportError:  # extension not built
    _k_contours = None  # type: ignore[assignment]

__all__ = ["MAX_SIDE", "external_contours", "mask_polygon", "merge_multi_segment"]

#: The largest mask side: contour points are int32, as OpenCV's are.
MAX_SIDE = 2**31 - 3

_DX = (1, 1, 0, -1, -1, -1, 0, 1)  # chain codes 0..7: E, NE, N, NW, W, SW, S, SE (y down)
_DY = (0, -1, -1, -1, 0, 1, 1, 1)
_VISITED, _RIGHT = 0x02, 0x82
_MIN_INDEX_BLOCK = 1 << 21  # NumPy min_index: at most this many squared distances at once


def _use_kernels() -> bool:
    return _k_contours is not None and use_kernels()


def _check_mask(mask: Any) -> np.ndarray:
    """A 2-D bool or uint8 array (nonzero = foreground), as a uint8 view (any strides)."""
    arr = mask if isinstance(mask, np.ndarray) else np.asarray(mask)
    if arr.ndim != 2:
        raise InvalidInputError(f"mask must be a 2D (height, width) array, got shape {arr.shape}")
    if arr.dtype != np.bool_ and arr.dtype != np.uint8:
        raise InvalidInputError(
            f"mask must be a bool or uint8 array (nonzero = foreground), got {arr.dtype}; "
            "convert it first, e.g. mask > 0.5"
        )
    if arr.shape[0] > MAX_SIDE or arr.shape[1] > MAX_SIDE:
        raise InvalidInputError(f"mask sides must be at most {MAX_SIDE}, got {arr.shape}")
    return arr.view(np.uint8)


def _check_offset(offset: Any) -> tuple[int, int]:
    if not isinstance(offset, (tuple, list, np.ndarray)) or len(offset) != 2 or not all(is_int(v) for v in offset):
        raise InvalidInputError(f"offset must be (x0, y0) of ints, got {offset!r}")
    x0, y0 = int(offset[0]), int(offset[1])
    if abs(x0) > MAX_SIDE or abs(y0) > MAX_SIDE:
        raise InvalidInputError(f"offset must be within +-{MAX_SIDE}, got {offset!r}")
    return x0, y0


# ----------------------------------------------------------------------------- pure-Python fallback


def _trace_outer(buf: bytearray, d: Sequence[int], i0: int, x: int, y: int, out: list[int]) -> None:
    """Follow the outer border starting at flat index ``i0`` (image point ``(x, y)``) of the
    padded image ``buf``, marking its pixels and appending its compressed points to ``out``
    (the kernel's ``ms_trace_outer``, step for step)."""
    s = 4
    while True:  # the first neighbour, clockwise from NW
        s = (s - 1) & 7
        i1 = i0 + d[s]
        if buf[i1] or s == 4:
            break
    if s == 4:  # a single pixel
        buf[i0] = _RIGHT
        out += (x, y)
        return
    i3, prev_s = i0, s ^ 4
    while True:
        s_end = s
        i4 = i3
        while s < 15:  # the next neighbour, counterclockwise from the one we came from
            s += 1
            i4 = i3 + d[s]
            if buf[i4]:
                break
        s &= 7
        if 1 <= s <= s_end:  # the east neighbour was examined and is 0
            buf[i3] = _RIGHT
        elif buf[i3] == 1:
            buf[i3] = _VISITED
        if s != prev_s:
            out += (x, y)
        prev_s = s
        x += _DX[s]
        y += _DY[s]
        if i4 == i0 and i3 == i1:
            return
        i3 = i4
        s = (s + 4) & 7


def _last_mark(row: np.ndarray, lo: int, hi: int, last: int) -> int:
    """The kernel's ``last`` after its scan of columns ``lo..hi-1`` of a padded row that starts
    no contour there: at a change of value onto a traced pixel, that column; at a change from a
    "visited" (2) pixel to 0, the column before it."""
    if hi <= lo:
        return last
    prev, cur = row[lo - 1:hi - 1], row[lo:hi]
    onto = np.flatnonzero((cur != prev) & ((cur & 0xFE) != 0))
    hole = np.flatnonzero((cur == 0) & (prev == _VISITED))
    if onto.size:
        last = max(last, lo + int(onto[-1]))
    if hole.size:
        last = max(last, lo + int(hole[-1]) - 1)
    return last


def _external_numpy(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's ``external_contours`` (points, starts; discovery order) in Python.

    The kernel's raster scan can start a contour only where a row goes from 0 to 1, and tracing
    never creates such a change (it only marks 1-pixels), so each row's candidates are found
    once with NumPy; between two candidates nothing is traced, so ``last`` (see the kernel) is
    found with NumPy on the row as it is when the scan reaches the next one."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros((0, 2), np.int32), np.zeros(1, np.int64)
    r0, c0 = int(rows[0]), int(cols[0])  # only the bounding box of the nonzero pixels, as the kernel
    mask = mask[r0:int(rows[-1]) + 1, c0:int(cols[-1]) + 1]
    h, w = mask.shape
    step, width = w + 2, w + 1
    buf = bytearray((h + 2) * step)
    img = np.frombuffer(buf, np.uint8).reshape(h + 2, step)
    np.not_equal(mask, 0, out=img[1:-1, 1:-1].view(bool))
    d = [_DX[k & 7] + _DY[k & 7] * step for k in range(16)]
    pts: list[int] = []
    starts: list[int] = []
    for y in range(1, h + 1):
        row, base, last, pos = img[y], y * step, 0, 1
        for x in (np.flatnonzero((row[:width - 1] == 0) & (row[1:width] == 1)) + 1).tolist():
            last = _last_mark(row, pos, x, last)
            pos = x + 1
            if buf[base + x] != 1:  # traced since the row began: the scan steps onto a marked pixel
                last = x
            elif not 1 <= buf[base + last] <= 127:  # signed char > 0: inside a traced blob
                starts.append(len(pts) // 2)
                _trace_outer(buf, d, base + x, x - 1 + c0, y - 1 + r0, pts)
                last = x
    starts.append(len(pts) // 2)
    return np.array(pts, np.int32).reshape(-1, 2), np.array(starts, np.int64)


# ----------------------------------------------------------------------------- merging


def _min_index(a: np.ndarray, b: np.ndarray, kernels: bool | None = None) -> tuple[int, int]:
    """Ultralytics' ``min_index`` of two non-empty C-contiguous ``(n, 2)`` int32 arrays: the first
    ``(i, j)`` (row-major) minimising ``((a[i] - b[j]) ** 2).sum()`` computed as it is there (int32
    squares, int64 sum). ``kernels``: the backend (None: the current one)."""
    if _use_kernels() if kernels is None else kernels:
        return _k_contours.min_index(a, b)
    m = len(b)
    rows = max(1, _MIN_INDEX_BLOCK // m)
    best, bi, bj = 0, -1, -1
    for r0 in range(0, len(a), rows):  # blocks of rows of a; a later block wins only if strictly less
        dis = ((a[r0:r0 + rows, None, :] - b[None, :, :]) ** 2).sum(-1)
        k = int(np.argmin(dis))
        v = int(dis.flat[k])
        if bi < 0 or v < best:
            best, bi, bj = v, r0 + k // m, k % m
    return bi, bj


def _merge(segments: Sequence[np.ndarray], kernels: bool) -> np.ndarray:
    n = len(segments)
    joins: list[list[int]] = [[] for _ in range(n)]
    for i in range(1, n):
        a, b = _min_index(segments[i - 1], segments[i], kernels)
        joins[i - 1].append(a)
        joins[i].append(b)
    rings, out = [], []
    for i, seg in enumerate(segments):
        idx, size = joins[i], len(seg)
        if len(idx) == 2 and idx[0] > idx[1]:  # walk it backwards: mirror the indices
            seg = seg[::-1]
            idx = [size - 1 - v for v in idx]
        ring = np.concatenate((seg[idx[0]:], seg[:idx[0] + 1]))  # from the joining point, closed
        rings.append(ring)
        out.append(ring if i in (0, n - 1) else ring[:idx[1] - idx[0] + 1])
    for i in range(n - 2, 0, -1):
        out.append(rings[i][abs(joins[i][1] - joins[i][0]):])
    return np.concatenate(out)


def merge_multi_segment(segments: Sequence[np.ndarray]) -> np.ndarray:
    """Ultralytics' ``np.concatenate(merge_multi_segment(segments))`` for two or more non-empty
    ``(k, 2)`` int32 point arrays (as :func:`external_contours` gives): consecutive segments are
    joined at their closest points (the first closest pair in row-major order); each is walked
    from its joining point as a closed ring (its first point repeated at the end): forwards
    through the first, the middle ones up to their second joining point (reversed first when that
    comes before the first), the whole last one, then back through the rest of each middle one,
    last to first. Returns the int32 points."""
    segs = list(segments) if isinstance(segments, (list, tuple)) else None
    if segs is None or len(segs) < 2:
        raise InvalidInputError(f"segments must be a list of at least two point arrays, got {type(segments).__name__}"
                                + ("" if segs is None else f" of {len(segs)}"))
    for k, seg in enumerate(segs):
        if not isinstance(seg, np.ndarray) or seg.dtype != np.int32 or seg.ndim != 2 or seg.shape[1] != 2 \
                or len(seg) == 0:
            what = f"{seg.dtype} {seg.shape}" if isinstance(seg, np.ndarray) else type(seg).__name__
            raise InvalidInputError(f"segments[{k}] must be a non-empty (k, 2) int32 array, got {what}")
        segs[k] = np.ascontiguousarray(seg)
    return _merge(segs, _use_kernels())


# ----------------------------------------------------------------------------- public API


def _external(arr: np.ndarray, kernels: bool) -> list[np.ndarray]:
    if kernels:
        res = _k_contours.external_contours(arr)
        if res is None:
            raise MemoryError(f"external_contours: out of memory for a {arr.shape} mask")
    else:
        res = _external_numpy(arr)
    pts, starts = res
    bounds = starts.tolist()
    return [pts[bounds[k]:bounds[k + 1]] for k in range(len(bounds) - 2, -1, -1)]


def external_contours(mask: Any) -> list[np.ndarray]:
    """The outer contours of a 2-D bool or uint8 ``mask`` (nonzero = foreground), exactly as
    ``[c.reshape(-1, 2) for c in cv2.findContours(mask, cv2.RETR_EXTERNAL,
    cv2.CHAIN_APPROX_SIMPLE)[0]]``: a list of ``(k, 2)`` int32 ``(x, y)`` arrays, in OpenCV's
    order (the contour found last by the raster scan first). An empty or all-zero mask gives
    ``[]``. Any strides are accepted; the kernel releases the GIL."""
    return _external(_check_mask(mask), _use_kernels())


def mask_polygon(mask: Any, offset: tuple[int, int] | Sequence[int] = (0, 0)) -> np.ndarray:
    """One mask's polygon as Ultralytics' ``masks2segments(masks, strategy="all")`` (and hence
    ``Results.masks.xy`` with retina masks) gives it: the single outer contour, or all of them
    joined by :func:`merge_multi_segment`, or ``(0, 2)`` when the mask is empty; then shifted by
    ``offset = (x0, y0)`` (ints). Returns ``(k, 2)`` float32 ``(x, y)``.

    For a detection's box crop of a full-image mask that is zero outside the box (as
    Ultralytics' masks are), ``mask_polygon(crop, offset=(x0, y0))`` equals the polygon of the
    full mask."""
    x0, y0 = _check_offset(offset)
    arr = _check_mask(mask)
    kernels = _use_kernels()
    contours = _external(arr, kernels)
    if not contours:
        return np.zeros((0, 2), np.float32)
    pts = contours[0] if len(contours) == 1 else _merge(contours, kernels)
    if x0 or y0:
        return (pts.astype(np.int64) + np.array([x0, y0], np.int64)).astype(np.float32)
    return pts.astype(np.float32)
