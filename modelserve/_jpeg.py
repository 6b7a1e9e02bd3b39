"""JPEG decoding through libjpeg-turbo (``simplejpeg``): the pixels OpenCV's ``imdecode`` gives.

Ultralytics reads images with ``cv2.imread`` / ``cv2.imdecode(..., IMREAD_COLOR)``: libjpeg-turbo
with its accurate integer DCT and smooth chroma upsampling, CMYK and YCCK converted by OpenCV's
own formula, greyscale replicated into three channels, and the EXIF orientation applied. The same
decoder through ``simplejpeg`` (``fastdct=False, fastupsample=False``) gives those pixels bit for
bit (``tests/predictor/test_jpeg.py`` checks against OpenCV on real photos and on progressive,
greyscale, CMYK, 4:4:4 and every EXIF orientation), and it is 2-5x faster than Pillow's decode.

:func:`decode` returns None where it does not apply (not a JPEG, ``simplejpeg`` not installed,
a header libjpeg-turbo does not read): the caller then decodes with Pillow as before. A JPEG that
libjpeg-turbo reports as corrupt also goes to Pillow, so such files keep today's behaviour (an
error, or Pillow's tolerant decode) rather than a second opinion.

``target``: ``target((height, width)) -> (th, tw)``, the smallest size the caller needs of the
upright image: it is then decoded in the DCT domain at the smallest of 1/2, 1/4 or 1/8 of each
side that still covers it, when the caller will shrink the image anyway (only these scales are
fast in libjpeg-turbo: 5/8 of bus.jpg took 3.3 ms against 3.1 for the full decode and 1.7 for
1/2). Not bit-identical to a full decode followed by the resize: ``ms.load(fast_decode=True)``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ._errors import InvalidInputError

__all__ = ["is_jpeg", "decode", "header", "available"]

_SOI = b"\xff\xd8\xff"
_module: Any = None
_checked = False


def _simplejpeg() -> Any:
    global _module, _checked
    if not _checked:
        try:
            import simplejpeg
        except ImportError:  # a platform without its wheel: Pillow decodes everything
            simplejpeg = None
        _module, _checked = simplejpeg, True
    return _module


def available() -> bool:
    """Whether JPEGs are decoded by libjpeg-turbo through ``simplejpeg`` (else by Pillow)."""
    return _simplejpeg() is not None


def is_jpeg(data: bytes | memoryview) -> bool:
    return bytes(data[:3]) == _SOI


def header(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` of a JPEG as stored (before its EXIF orientation), or None."""
    sj = _simplejpeg()
    if sj is None or not is_jpeg(data):
        return None
    try:
        h, w, _, _ = sj.decode_jpeg_header(data)
    except (ValueError, RuntimeError):
        return None
    return int(h), int(w)


def _max_pixels() -> int | None:
    from PIL import Image as PILImage

    limit = PILImage.MAX_IMAGE_PIXELS  # the same decompression-bomb limit Pillow applies
    return None if limit is None else 2 * int(limit)


def decode(data: bytes, what: str, target: Any = None) -> tuple[np.ndarray, tuple[int, int]] | None:
    """``(pixels, (height, width))``: the BGR ``HxWx3`` pixels of a JPEG with its EXIF orientation
    applied, and the image's full upright size (the pixels' own unless scaled by ``target``); or
    None (see the module doc). Raises :class:`InvalidInputError` for an image over Pillow's pixel
    limit."""
    stored = header(data)
    if stored is None:
        return None
    h, w = stored
    limit = _max_pixels()
    if limit is not None and h * w > limit:
        raise InvalidInputError(f"refusing to decode {what}: {w}x{h} = {w * h} pixels is over the limit of "
                                f"{limit} (PIL.Image.MAX_IMAGE_PIXELS x 2), a possible decompression bomb")
    orientation = _orientation(data)
    upright = (int(h), int(w)) if orientation < 5 else (int(w), int(h))
    options: dict[str, Any] = {}
    if target is not None:
        th, tw = target(upright)
        if orientation >= 5:
            th, tw = tw, th  # the stored image's sides
        f = max((f for f in (1, 2, 4, 8) if -(-h // f) >= th and -(-w // f) >= tw), default=1)
        options = {"min_height": -(-h // f), "min_width": -(-w // f)}  # libjpeg-turbo then decodes at 1/f
    try:
        pixels = _simplejpeg().decode_jpeg(data, colorspace="BGR", fastdct=False, fastupsample=False, strict=True, **options)
    except (ValueError, RuntimeError):
        return None
    return _oriented(pixels, orientation), upright


def _has_exif(data: bytes) -> bool:
    """Whether the JPEG's headers (the segments before the first scan) hold an APP1 ``Exif`` block:
    a walk over the segment lengths, so that a photo without one never opens Pillow. Anything it
    cannot walk counts as having one (Pillow then decides)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return True
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan / end of image: no more headers
            return False
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\x00\x00":
            return True
        if length < 2:
            return True
        i += 2 + length
    return True


def _orientation(data: bytes) -> int:
    """The EXIF orientation (1-8; 1 when absent or unreadable), read by Pillow from the headers only
    (and not at all when the headers hold no EXIF block)."""
    if not _has_exif(data):
        return 1
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(data)) as img:
            value = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is no orientation, as Pillow's exif_transpose treats it
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _oriented(a: np.ndarray, orientation: int) -> np.ndarray:
    """``a`` turned upright, as ``PIL.ImageOps.exif_transpose`` (and OpenCV's ``imdecode``) do."""
    if orientation == 1:
        return a
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.transpose(1, 0, 2)
    elif orientation == 6:
        a = np.rot90(a, -1)
    elif orientation == 7:
        a = a[::-1, ::-1].transpose(1, 0, 2)
    else:  # 8
        a = np.rot90(a, 1)
    return np.ascontiguousarray(a)
