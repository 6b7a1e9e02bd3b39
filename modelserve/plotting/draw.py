"""``plot`` and ``save``: a result drawn on its picture (numpy and Pillow, no OpenCV).

The picture is anything modelserve decodes (a path, bytes, a PIL image, an ``HxW``, ``HxWx3`` or
``HxWx4`` uint8 array); numpy arrays are read as BGR by default, as the Predictor reads them
(``bgr=False`` for RGB arrays), and ``plot`` returns a new ``HxWx3`` uint8 array in the same order
(the input is never modified). ``save`` writes the picture with Pillow, in the format its file
extension names.

    >>> r = predictor.predict(frame)
    >>> annotated = plot(r, frame)             # BGR in, BGR out
    >>> save(r, frame, "out.jpg", conf=False)  # JPEG, quality 95
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from .. import _checks, _files
from .._errors import InvalidInputError
from .._images import load_image
from . import boxes, fonts, layers

__all__ = ["plot", "save", "FORMATS", "style", "default_line_width", "default_font_size"]

#: File extensions ``save`` writes, and the Pillow format of each.
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
           ".webp": "WEBP"}
JPEG_QUALITY = 95  # OpenCV's imwrite default, as Ultralytics saves


def default_line_width(hw: tuple[int, int]) -> int:
    """Ultralytics' default: ~0.3% of the mean side of an ``HxWx3`` picture, at least 2."""
    return max(round((hw[0] + hw[1] + 3) / 2 * 0.003), 2)


def default_font_size(hw: tuple[int, int], line_width: int, classify: bool) -> int:
    """Box labels: ``8 * line_width`` (labels as tall as Ultralytics' OpenCV labels); classification
    lines: Ultralytics' ~3.5% of the mean side; at least 12, at most :data:`fonts.MAX_FONT_SIZE`."""
    size = round((hw[0] + hw[1]) / 2 * 0.035) if classify else 8 * line_width
    return min(max(size, 12), fonts.MAX_FONT_SIZE)


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"{what} must be True or False, got {value!r}")
    return bool(value)


def _is_classification(result: Any) -> bool:
    """Which kind of result this is (duck-typed: the result modules import this package lazily)."""
    if hasattr(result, "probs") and hasattr(result, "top5"):
        return True
    if all(hasattr(result, a) for a in ("xyxy", "confidence", "class_id", "names", "orig_shape", "xywhr")):
        return False
    raise InvalidInputError(f"expected a modelserve result (Detections or Classification), got {type(result).__name__}")


def style(result: Any, hw: tuple[int, int], *, conf: Any = True, labels: Any = True, boxes: Any = True,
          masks: Any = True, keypoints: Any = True, line_width: Any = None, font_size: Any = None,
          kpt_radius: Any = 5, alpha: Any = 0.5, bgr: bool = True) -> layers.Style:
    """Checked, resolved drawing settings for a picture of ``hw`` (see :func:`plot`)."""
    flags = {k: _flag(v, k) for k, v in
             (("conf", conf), ("labels", labels), ("boxes", boxes), ("masks", masks), ("keypoints", keypoints))}
    lw = default_line_width(hw) if line_width is None else min(_checks.positive_int(line_width, "line_width"),
                                                                hw[0] + hw[1])
    if font_size is None:
        size = default_font_size(hw, lw, _is_classification(result))
    else:
        size = _checks.positive_int(font_size, "font_size")
        if size > fonts.MAX_FONT_SIZE:
            raise InvalidInputError(f"font_size must be at most {fonts.MAX_FONT_SIZE}, got {font_size!r}")
    radius = min(_checks.count(kpt_radius, "kpt_radius"), hw[0] + hw[1])  # wider covers nothing more
    a = _checks.finite(alpha, "alpha")
    if not 0.0 <= a <= 1.0:
        raise InvalidInputError(f"alpha must be in [0, 1], got {alpha!r}")
    return layers.Style(line_width=lw, font_size=size, kpt_radius=radius, alpha=a, bgr=bgr, **flags)


def _picture(result: Any, image: Any, bgr_in: bool, bgr_out: bool) -> np.ndarray:
    """A new copy of the decoded picture in ``bgr_out`` order, checked against the result's size."""
    img = load_image(image, "bgr" if bgr_in else "rgb")
    pixels = img.pixels
    h, w = pixels.shape[:2]
    shape = tuple(int(v) for v in result.orig_shape)
    if shape != (0, 0) and shape != (h, w):
        raise InvalidInputError(f"the picture is {h}x{w} (height x width) but the result is for a "
                                f"{shape[0]}x{shape[1]} image: draw on the image it was predicted from")
    crops = getattr(result, "mask_crops", None)
    if crops is not None and tuple(crops.orig_hw) != (h, w):
        raise InvalidInputError(f"the picture is {h}x{w} but the result's masks are {crops.orig_hw[0]}x"
                                f"{crops.orig_hw[1]}")
    return np.ascontiguousarray(pixels[..., ::-1]) if img.bgr != bgr_out else pixels.copy()


def _render(result: Any, image: Any, bgr_in: bool, bgr_out: bool, options: dict[str, Any]) -> np.ndarray:
    """The annotated picture, a new ``HxWx3`` uint8 array in ``bgr_out`` order. Masks, boxes and
    labels are drawn straight into it; only rotated boxes and keypoints need a PIL copy of it."""
    classify = _is_classification(result)
    canvas = _picture(result, image, bgr_in, bgr_out)
    st = style(result, canvas.shape[:2], bgr=bgr_out, **options)
    if classify:
        layers.draw_probs(canvas, result, st)
        return canvas
    if not len(result):
        return canvas
    if st.masks and getattr(result, "mask_crops", None) is not None:
        layers.blend_masks(canvas, result, st)
    rotated = result.xywhr is not None
    if not rotated:
        boxes.draw_rects(canvas, result, st)
    kpts = getattr(result, "keypoints", None) if st.keypoints else None
    if (rotated and st.boxes) or kpts is not None:
        picture = PILImage.fromarray(canvas)
        if rotated:
            boxes.draw_rotated(picture, result, st)
        if kpts is not None:
            layers.draw_keypoints(picture, kpts, st)
        canvas = np.array(picture)
    return canvas


def plot(result: Any, image: Any, *, conf: bool = True, labels: bool = True, boxes: bool = True,
         masks: bool = True, keypoints: bool = True, line_width: int | None = None, font_size: int | None = None,
         kpt_radius: int = 5, alpha: float = 0.5, bgr: bool = True) -> np.ndarray:
    """``image`` with ``result`` drawn on it, as a new ``HxWx3`` uint8 array in ``image``'s order.

    * ``result``: a :class:`~modelserve.Detections` (boxes, rotated boxes, masks, keypoints) or a
      :class:`~modelserve.Classification` (its top-5 classes as text lines), for this very picture
      (its ``orig_shape`` must match, unless it is ``(0, 0)``)
    * ``image``: what the Predictor accepts; numpy arrays are BGR unless ``bgr=False``, and the
      returned array has the same order (pictures decoded from paths, bytes or PIL images are
      returned in the order ``bgr`` names too)
    * ``conf`` / ``labels``: the confidence / the class name in each label; ``boxes``, ``masks``,
      ``keypoints``: draw those layers (``boxes=False`` also hides the labels, as in Ultralytics)
    * ``line_width``: box outline width in pixels (default ~0.3% of the picture's mean side, at
      least 2); ``font_size``: label text size in pixels (default ``8 * line_width``, for
      classifications ~3.5% of the mean side; at most 1024); ``kpt_radius``: keypoint disc
      radius; ``alpha``: mask opacity in ``[0, 1]``

    Colours are Ultralytics' (class ``i`` gets palette colour ``i % 20``). Bad arguments raise
    :class:`~modelserve.InvalidInputError`.
    """
    options = dict(conf=conf, labels=labels, boxes=boxes, masks=masks, keypoints=keypoints, line_width=line_width,
                   font_size=font_size, kpt_radius=kpt_radius, alpha=alpha)
    bgr = _flag(bgr, "bgr")
    return _render(result, image, bgr, bgr, options)


def _format(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    ext = Path(os.fspath(path)).suffix.lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        raise InvalidInputError(f"cannot tell the picture format from {os.fspath(path)!r}: use one of the "
                                f"extensions {', '.join(sorted(FORMATS))}")
    if fmt == "WEBP" and "WEBP" not in PILImage.SAVE:
        PILImage.init()
        if "WEBP" not in PILImage.SAVE:
            raise InvalidInputError("this Pillow was built without WebP support: save as .png or .jpg")
    return fmt


def save(result: Any, image: Any, path: str | os.PathLike[str], *, bgr: bool = True, **plot_kwargs: Any) -> str:
    """Draw ``result`` on ``image`` (as :func:`plot`, same keyword arguments) and write it to
    ``path`` in the format its extension names (``.jpg``/``.jpeg`` at quality 95, ``.png``,
    ``.bmp``, ``.tif``, ``.webp``); missing parent folders are created, and the file is replaced
    atomically. Returns ``path`` as a str. An unknown extension, or a path that is a folder or a
    special file, raises :class:`~modelserve.InvalidInputError`; other ``OSError``s propagate."""
    fmt = _format(path)
    unknown = set(plot_kwargs) - {"conf", "labels", "boxes", "masks", "keypoints", "line_width", "font_size",
                                  "kpt_radius", "alpha"}
    if unknown:
        raise InvalidInputError(f"save() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    kind = _files.kind_at(path)
    if kind is not None:
        raise InvalidInputError(f"{os.fspath(path)} must be a regular file (or nothing yet), got a {kind}")
    canvas = PILImage.fromarray(_render(result, image, _flag(bgr, "bgr"), False, plot_kwargs))
    buf = io.BytesIO()
    canvas.save(buf, format=fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))
    Path(os.fspath(path)).parent.mkdir(parents=True, exist_ok=True)
    _files.atomic_write(path, buf.getvalue())
    return os.fspath(path)
