"""Label text: Pillow's bundled scalable font, text measures and where a label goes.

The font is ``PIL.ImageFont.load_default(size)`` (Aileron Regular, bundled since Pillow 10.1, so
nothing is downloaded); older Pillow, or a Pillow built without FreeType, gets Pillow's bitmap
default font, whose size is fixed. Fonts are cached per thread (FreeType faces are not shared
across threads).

A label is a filled rectangle holding one line of text with ``pad`` pixels around it
(:func:`measure`). It sits on top of the box's top-left corner, outside the box when there is
room above, else just inside, shifted left as needed to stay in the image (:func:`place`).
"""

from __future__ import annotations

import functools
import threading
import unicodedata
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["MAX_FONT_SIZE", "MAX_LABEL_CHARS", "TextBox", "Font", "font", "measure", "place", "clean", "scalable",
           "label_array"]

#: The largest font size :func:`font` accepts (a label is rendered as one bitmap; 1024 px is already
#: taller than most pictures).
MAX_FONT_SIZE = 1024
#: Labels are cut to this many characters (a longer one is wider than any picture).
MAX_LABEL_CHARS = 200
_REFERENCE = "Ag"  # every label is as tall as this (ascender and descender), whatever its letters

_LOCAL = threading.local()


class TextBox(NamedTuple):
    """A label's rectangle size and where to draw its text: ``(dx, dy)`` from the rectangle's top-left
    corner is the origin to pass to ``ImageDraw.text``."""

    width: int
    height: int
    dx: int
    dy: int


class Font(NamedTuple):
    """A Pillow font (``face``, for ``ImageDraw.text``) and the vertical extent of ``"Ag"`` in it,
    which every label spans so that labels of one picture are equally tall."""

    face: Any
    top: int
    bottom: int


def _load(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # type: ignore[call-arg,unused-ignore]  # Pillow >= 10.1
    except (TypeError, ImportError, OSError):  # older Pillow (no size) or no FreeType: the bitmap font
        return ImageFont.load_default()


def font(size: int) -> Font:
    """The bundled font at ``size`` pixels (trusted: ``1 <= size <= MAX_FONT_SIZE``), cached per thread."""
    cache: dict[int, Font] = _LOCAL.__dict__.setdefault("fonts", {})
    f = cache.get(size)
    if f is None:
        face = _load(size)
        _, top, _, bottom = _bbox(face, _REFERENCE)
        if len(cache) >= 16:
            cache.clear()
        f = cache[size] = Font(face, top, bottom)
    return f


def scalable() -> bool:
    """Whether :func:`font` honours its size (False on the bitmap fallback)."""
    return isinstance(font(12).face, ImageFont.FreeTypeFont)


def _bbox(face: Any, text: str) -> tuple[int, int, int, int]:
    try:
        left, top, right, bottom = face.getbbox(text)
    except AttributeError:  # Pillow < 9.2 bitmap fonts
        w, h = face.getsize(text)
        left, top, right, bottom = 0, 0, w, h
    return int(left), int(top), int(right), int(bottom)


def measure(f: Font, text: str) -> TextBox:
    """The rectangle a one-line label ``text`` needs in font ``f``: its ink box, at least as tall
    as ``"Ag"``, with ``pad = max(1, height // 6)`` pixels on every side."""
    left, top, right, bottom = _bbox(f.face, text) if text else (0, f.top, 0, f.bottom)
    top, bottom = min(top, f.top), max(bottom, f.bottom)
    pad = max(1, (bottom - top) // 6)
    return TextBox(right - left + 2 * pad, bottom - top + 2 * pad, pad - left, pad - top)


#: Labels of at most this many "pixels" (characters x size x size) are cached once rendered.
_CACHED_LABEL_AREA = 1 << 17


def label_array(text: str, size: int, fg: tuple[int, int, int], bg: tuple[int, int, int]) -> np.ndarray:
    """A rendered label: ``text`` in colour ``fg`` on a ``bg`` rectangle of :func:`measure`'s size,
    as a read-only ``h x w x 3`` uint8 array in the colours' channel order. Small labels are cached
    (those of a video repeat)."""
    if len(text) * size * size <= _CACHED_LABEL_AREA:
        return _cached_label(text, size, fg, bg)
    return _render_label(text, size, fg, bg)


def _render_label(text: str, size: int, fg: tuple[int, int, int], bg: tuple[int, int, int]) -> np.ndarray:
    f = font(size)
    box = measure(f, text)
    im = Image.new("RGB", (max(box.width, 1), max(box.height, 1)), bg)
    ImageDraw.Draw(im).text((box.dx, box.dy), text, fill=fg, font=f.face)
    arr = np.array(im)
    arr.flags.writeable = False
    return arr


_cached_label = functools.lru_cache(maxsize=256)(_render_label)


def place(anchor: tuple[int, int], box: TextBox, image_wh: tuple[int, int]) -> tuple[int, int]:
    """The top-left corner of a label of size ``box`` for a box whose top-left corner is ``anchor``:
    above the anchor when it fits (``y >= box.height``), else from the anchor down; ``x`` shifted
    into ``[0, width - box.width]`` (0 when the label is wider than the image). The anchor is first
    clamped into the image."""
    w, h = image_wh
    x, y = min(max(anchor[0], 0), w), min(max(anchor[1], 0), h)
    x = max(min(x, w - box.width), 0)
    return x, (y - box.height if y >= box.height else y)


def clean(text: str, size: int = 1, width: int | None = None) -> str:
    """``text`` on one line: control characters (newlines, tabs, ...) become spaces; cut to
    :data:`MAX_LABEL_CHARS`, and, given the font ``size`` and the picture's ``width``, to as many
    characters as could show (no glyph is narrower than a quarter of the size), so that a label is
    never rendered much wider than the picture."""
    limit = MAX_LABEL_CHARS if width is None else min(MAX_LABEL_CHARS, width // max(size // 4, 1) + 1)
    text = text[:limit]
    return "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
