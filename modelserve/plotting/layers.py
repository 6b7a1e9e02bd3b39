"""The layers of a picture besides the boxes (:mod:`.boxes`), in Ultralytics' order: masks first,
keypoint skeletons last; for a classification, the top-5 lines. ``Style`` holds the resolved
settings every layer draws with.

Functions here trust their arguments (:mod:`.draw` checks them) and draw in the canvas's channel
order (``Style.bgr``); non-finite coordinates are skipped, never drawn.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from . import colors, fonts

__all__ = ["Style", "KPT_THRESHOLD", "CLASSIFY_BOX", "blend_masks", "draw_keypoints", "draw_probs"]

#: Keypoints with a confidence below this are not drawn (Ultralytics' ``Annotator.kpts`` threshold).
KPT_THRESHOLD = 0.25
#: The translucent RGBA rectangle behind each classification line (Ultralytics' ``(64, 64, 64, 128)``).
CLASSIFY_BOX = (64, 64, 64, 128)


class Style(NamedTuple):
    """Resolved drawing settings (every size in pixels, already checked)."""

    conf: bool
    labels: bool
    boxes: bool
    masks: bool
    keypoints: bool
    line_width: int
    font_size: int
    kpt_radius: int
    alpha: float
    bgr: bool


def blend_masks(canvas: np.ndarray, result: Any, style: Style) -> None:
    """Blend the masks into ``canvas`` (``HxWx3`` uint8, written in place) in their class colours:
    ``(1 - alpha) * pixel + alpha * colour``, rounded, once per pixel: where masks overlap, the
    best detection's colour shows (detections come best first). The masks are read one box crop at
    a time (``mask_crop(i)``), so no full-picture mask is ever made; the one buffer is a uint8 map,
    over the crops' union box, of which palette colour covers each pixel."""
    a = int(round(style.alpha * 256))
    n = len(result)
    if a == 0 or n == 0:
        return
    crops = [result.mask_crop(i) for i in range(n)]
    spans = [(x0, y0, x0 + c.shape[1], y0 + c.shape[0]) for c, (x0, y0) in crops if c.size]
    if not spans:
        return
    bx0, by0 = min(s[0] for s in spans), min(s[1] for s in spans)
    bx1, by1 = max(s[2] for s in spans), max(s[3] for s in spans)
    owner = np.zeros((by1 - by0, bx1 - bx0), np.uint8)  # 0: no mask, else 1 + palette index
    for i in reversed(range(n)):  # the worst first, so the best one is written last
        crop, (x0, y0) = crops[i]
        if crop.size:
            h, w = crop.shape
            color = 1 + int(result.class_id[i]) % len(colors.PALETTE)
            np.copyto(owner[y0 - by0:y0 - by0 + h, x0 - bx0:x0 - bx0 + w], color, where=crop)
    lut = np.array([(0, 0, 0)] + [colors.order(c, style.bgr) for c in colors.PALETTE], np.uint16) * a + 128
    region = canvas[by0:by1, bx0:bx1]
    mixed = region.astype(np.uint16)
    mixed *= 256 - a
    mixed += np.take(lut, owner, axis=0)
    mixed >>= 8
    np.copyto(region, mixed.astype(np.uint8), where=(owner > 0)[..., None])


def draw_keypoints(canvas: PILImage.Image, keypoints: np.ndarray, style: Style) -> None:
    """Each detection's keypoints as discs of ``kpt_radius`` and, for 17-keypoint (COCO) models, the
    skeleton's limbs ``ceil(line_width / 2)`` wide, as Ultralytics' ``Annotator.kpts`` draws them:
    a keypoint shows when its confidence is >= :data:`KPT_THRESHOLD` (2-D keypoints: when it is not
    ``(0, 0)``); a limb when both ends show and neither has a negative coordinate."""
    kpts = np.asarray(keypoints, dtype=np.float64)
    n, k, dims = kpts.shape
    if n == 0 or k == 0:
        return
    draw = ImageDraw.Draw(canvas)
    image_wh = canvas.size
    r = style.kpt_radius
    width = max(1, math.ceil(style.line_width / 2))
    reach = 2 * (image_wh[0] + image_wh[1]) + style.line_width + r
    xy = kpts[..., :2]
    shown = np.asarray(np.isfinite(xy).all(axis=2) & (np.abs(np.nan_to_num(xy)) <= reach).all(axis=2))
    shown &= kpts[..., 2] >= KPT_THRESHOLD if dims == 3 else (xy != 0).any(axis=2)
    pix = np.where(shown[..., None], np.trunc(np.nan_to_num(xy)), 0).astype(np.int64)  # Ultralytics' int()
    point_colors = [colors.keypoint_color(j, k, style.bgr) for j in range(k)]
    limbs = [(a - 1, b - 1, colors.limb_color(m, style.bgr)) for m, (a, b) in enumerate(colors.SKELETON)] \
        if k == len(colors.KPT_COLORS) else []
    for det in reversed(range(n)):
        for j in np.flatnonzero(shown[det]):
            x, y = int(pix[det, j, 0]), int(pix[det, j, 1])
            draw.ellipse((x - r, y - r, x + r, y + r), fill=point_colors[j])
        for a, b, color in limbs:
            if shown[det, a] and shown[det, b] and min(pix[det, a].min(), pix[det, b].min()) >= 0:
                draw.line([tuple(int(v) for v in pix[det, a]), tuple(int(v) for v in pix[det, b])], fill=color,
                          width=width)


def draw_probs(canvas: np.ndarray, result: Any, style: Style) -> None:
    """A classification's top-5 classes into ``canvas`` (``HxWx3`` uint8, in place), one
    ``"name 0.87"`` line each (the name alone without ``conf``, the probability alone without
    ``labels``), white on translucent grey, from ``round(0.03 * height)`` pixels off the top-left
    corner (Ultralytics' place). Only the lines' area is handed to Pillow."""
    if not (style.labels or style.conf):
        return
    h, w = canvas.shape[:2]
    font = fonts.font(style.font_size)
    lines = []
    for j in result.top5:
        name = str(result.names.get(j, j)) if style.labels else ""
        score = f"{float(result.probs[j]):.2f}" if style.conf else ""
        text = fonts.clean(f"{name} {score}".strip(), style.font_size, w)
        lines.append((text, fonts.measure(font, text)))
    x0 = y0 = round(h * 0.03)
    x1, y1 = min(x0 + max(b.width for _, b in lines), w), min(y0 + sum(b.height for _, b in lines), h)
    if x0 >= x1 or y0 >= y1:
        return
    area = PILImage.fromarray(canvas[y0:y1, x0:x1])
    draw = ImageDraw.Draw(area, "RGBA")
    y = 0
    for text, box in lines:
        draw.rectangle((0, y, box.width - 1, y + box.height - 1), fill=CLASSIFY_BOX)
        draw.text((box.dx, y + box.dy), text, fill=colors.WHITE, font=font.face)
        y += box.height
    canvas[y0:y1, x0:x1] = np.asarray(area)
