"""Pixel bookkeeping for the plotting tests, written from the documented geometry (not from the
drawing code): a box ``x1, y1, x2, y2`` covers columns ``floor(x1) .. ceil(x2) - 1`` and the rows
likewise; labels sit on the box's top-left corner, above it when they fit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from modelserve.plotting import fonts


def decode(path: Path) -> np.ndarray:
    """A saved picture, decoded to RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def covered(box, hw) -> tuple[int, int, int, int]:
    """The inclusive pixel rectangle ``x0, y0, x1, y1`` a box covers (not clipped to the picture)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    x0, y0 = math.floor(min(x1, x2)), math.floor(min(y1, y2))
    xe, ye = max(math.ceil(max(x1, x2)) - 1, x0), max(math.ceil(max(y1, y2)) - 1, y0)
    return x0, y0, xe, ye


def rect_mask(rects, hw) -> np.ndarray:
    """Union of inclusive rectangles, clipped to the picture."""
    h, w = hw
    m = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in rects:
        m[max(y0, 0):max(min(y1 + 1, h), 0), max(x0, 0):max(min(x1 + 1, w), 0)] = True
    return m


def ring_mask(rect, lw, hw) -> np.ndarray:
    """The outline of an inclusive rectangle, ``lw`` pixels wide, drawn inside it."""
    x0, y0, x1, y1 = rect
    outer = rect_mask([rect], hw)
    inner = rect_mask([(x0 + lw, y0 + lw, x1 - lw, y1 - lw)], hw) if x1 - x0 >= 2 * lw and y1 - y0 >= 2 * lw \
        else np.zeros(hw, bool)
    return outer & ~inner


def label_rect(text: str, anchor, font_size: int, hw) -> tuple[int, int, int, int]:
    """Where the label of a box with top-left corner ``anchor`` goes (inclusive rectangle)."""
    h, w = hw
    box = fonts.measure(fonts.font(font_size), text)
    x, y = min(max(anchor[0], 0), w), min(max(anchor[1], 0), h)
    x = max(min(x, w - box.width), 0)
    y = y - box.height if y >= box.height else y
    return x, y, x + box.width - 1, y + box.height - 1


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``HxW`` bool: where two ``HxWx3`` pictures differ."""
    return (a != b).any(axis=2)
