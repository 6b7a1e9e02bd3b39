"""Boxes and their labels, lowest confidence first (so the best detections end on top), each box
then its label, as Ultralytics draws them.

Axis-aligned boxes and every label are written straight into the numpy picture (an outline is four
filled strips, a label a pasted bitmap), so a frame with boxes only is never converted to a PIL
image; rotated boxes are drawn with Pillow on a PIL picture (:func:`draw_rotated`).

Geometry, as the tests check it: a box ``x1, y1, x2, y2`` covers the pixel columns
``floor(x1) .. ceil(x2) - 1`` (at least one) and likewise the rows; its outline is ``line_width``
pixels wide, drawn inside those pixels (one at least half as wide as the box fills it). A rotated
box is its 4 corners joined by lines ``line_width`` wide, centred on the edges, and its label sits
on its topmost corner. Labels are placed by :func:`.fonts.place`. Non-finite boxes are skipped;
coordinates far outside the picture are clamped to just outside it, where nothing shows; a box
wholly outside gets no label, and a rotated box with a corner farther out than twice the
picture's width plus height is skipped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from . import colors, fonts
from .layers import Style

__all__ = ["pixel_rects", "fill_rect", "draw_rects", "draw_rotated", "label_text"]


def pixel_rects(xyxy: np.ndarray, image_wh: tuple[int, int], margin: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rects, finite)``: each box's inclusive pixel rectangle ``x0, y0, x1, y1`` (int64, corners
    sorted, at least one pixel, clamped to ``margin`` pixels beyond the picture) and which boxes
    have finite coordinates (the others' rows are meaningless)."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    finite = np.asarray(np.isfinite(boxes).all(axis=1))
    boxes = np.where(finite[:, None], boxes, 0.0)
    lo = np.floor(np.minimum(boxes[:, :2], boxes[:, 2:]))
    hi = np.maximum(np.ceil(np.maximum(boxes[:, :2], boxes[:, 2:])) - 1, lo)
    w, h = image_wh
    limit_lo = np.array([-margin - 1, -margin - 1], np.float64)
    limit_hi = np.array([w + margin, h + margin], np.float64)
    rects = np.concatenate([np.clip(lo, limit_lo, limit_hi), np.clip(hi, limit_lo, limit_hi)], axis=1)
    return rects.astype(np.int64), finite


def fill_rect(canvas: np.ndarray, x0: int, y0: int, x1: int, y1: int, color: Any) -> None:
    """Fill the inclusive rectangle (clipped to the picture) with ``color``."""
    h, w = canvas.shape[:2]
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    if xa <= xb and ya <= yb:
        canvas[ya:yb + 1, xa:xb + 1] = color


def _outline(canvas: np.ndarray, rect: tuple[int, int, int, int], lw: int, color: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = rect
    if 2 * lw >= min(x1 - x0, y1 - y0) + 1:  # an outline this wide fills the box
        fill_rect(canvas, x0, y0, x1, y1, color)
        return
    fill_rect(canvas, x0, y0, x1, y0 + lw - 1, color)
    fill_rect(canvas, x0, y1 - lw + 1, x1, y1, color)
    fill_rect(canvas, x0, y0 + lw, x0 + lw - 1, y1 - lw, color)
    fill_rect(canvas, x1 - lw + 1, y0 + lw, x1, y1 - lw, color)


def label_text(result: Any, i: int, style: Style, width: int) -> str:
    """Ultralytics' label of detection ``i``: ``"name 0.87"``, the name alone without ``conf``, the
    confidence alone without ``labels``; cut to what a picture ``width`` pixels wide can show."""
    c = int(result.class_id[i])
    name = str(result.names.get(c, c)) if style.labels else ""
    score = f"{float(result.confidence[i]):.2f}" if style.conf else ""
    return fonts.clean(f"{name} {score}".strip(), style.font_size, width)


def _label(result: Any, i: int, style: Style, width: int) -> np.ndarray | None:
    text = label_text(result, i, style, width)
    if not text:
        return None
    c = int(result.class_id[i])
    return fonts.label_array(text, style.font_size, colors.text_color(c, style.bgr), colors.class_color(c, style.bgr))


def draw_rects(canvas: np.ndarray, result: Any, style: Style) -> None:
    """Axis-aligned boxes and their labels, into ``canvas`` (``HxWx3`` uint8, in place)."""
    n = len(result)
    if n == 0 or not style.boxes:
        return
    h, w = canvas.shape[:2]
    lw = style.line_width
    rects, finite = pixel_rects(result.xyxy, (w, h), lw)
    for i in reversed(range(n)):
        x0, y0, x1, y1 = (int(v) for v in rects[i])
        if not finite[i] or x1 < 0 or y1 < 0 or x0 >= w or y0 >= h:
            continue  # not finite, or wholly outside the picture: neither the box nor its label shows
        _outline(canvas, (x0, y0, x1, y1), lw, colors.class_color(int(result.class_id[i]), style.bgr))
        label = _label(result, i, style, w)
        if label is not None:
            lh, lw_ = label.shape[:2]
            x, y = fonts.place((x0, y0), fonts.TextBox(lw_, lh, 0, 0), (w, h))
            region = canvas[y:y + lh, x:x + lw_]  # numpy slicing clips at the picture's edges
            region[...] = label[:region.shape[0], :region.shape[1]]


def _topmost(pts: np.ndarray) -> tuple[int, int]:
    top = pts[np.lexsort((pts[:, 0], pts[:, 1]))[0]]
    return int(math.floor(top[0])), int(math.floor(top[1]))


def draw_rotated(canvas: PILImage.Image, result: Any, style: Style) -> None:
    """Rotated boxes (their 4 corners) and their labels, onto a PIL picture."""
    n = len(result)
    if n == 0 or not style.boxes:
        return
    draw = ImageDraw.Draw(canvas)
    lw = style.line_width
    corners = np.asarray(result.corners, dtype=np.float64).reshape(-1, 4, 2)
    reach = 2 * (canvas.size[0] + canvas.size[1]) + lw
    ok = np.asarray(np.isfinite(corners).all(axis=(1, 2)) & (np.abs(np.nan_to_num(corners)) <= reach).all(axis=(1, 2)))
    for i in reversed(range(n)):
        if not ok[i]:
            continue
        pts = [(float(x), float(y)) for x, y in corners[i]]
        draw.line(pts + pts[:1], fill=colors.class_color(int(result.class_id[i]), style.bgr), width=lw, joint="curve")
        label = _label(result, i, style, canvas.size[0])
        if label is not None:
            x, y = fonts.place(_topmost(corners[i]), fonts.TextBox(label.shape[1], label.shape[0], 0, 0), canvas.size)
            canvas.paste(PILImage.fromarray(label), (x, y))
