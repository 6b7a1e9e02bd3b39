"""What every result type shares beyond its arrays: where its image came from (``origin``) and its
pictures, ``plot()``, ``save()`` and ``save_txt()`` (drawing lives in :mod:`modelserve.plotting`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._errors import InvalidInputError

__all__ = ["ResultBase", "attach_image", "with_speed"]


def attach_image(result: Any, image: Any) -> None:
    """Keep the decoded image (pixels and channel order) a result was predicted on, for ``plot()``."""
    object.__setattr__(result, "_image", image)  # results are frozen dataclasses


def with_speed(results: list[Any], t0: float, t1: float, t2: float, t3: float) -> list[Any]:
    """Attach per-image stage times in ms (each stage's time divided by the number of images)."""
    n = len(results)
    speed = {"preprocess": (t1 - t0) * 1000 / n, "inference": (t2 - t1) * 1000 / n, "postprocess": (t3 - t2) * 1000 / n}
    for r in results:
        object.__setattr__(r, "speed", dict(speed))
    return results


class ResultBase:
    """Base of :class:`Detections` and :class:`Classification`.

    ``origin``: where the image came from (:class:`modelserve.sources.Origin`: kind, path or URL,
    frame index, timestamp), set by the Predictor; None for results built by hand. A result made by
    a Predictor also keeps a reference to its decoded image for :meth:`plot` (as Ultralytics'
    ``Results.orig_img`` does): results of a long video kept in a list keep every frame, so use
    ``stream=True`` and drop each result when done with it.
    """

    origin: Any = None

    @property
    def orig_img(self) -> np.ndarray | None:
        """The image this result was predicted on, as an ``HxWx3`` uint8 array in BGR order (as
        Ultralytics' ``Results.orig_img``), or None for a result not made by a Predictor. A view
        of the kept pixels when they are BGR already; do not write to it."""
        kept = self.__dict__.get("_image")
        if kept is None:
            return None
        pixels = kept.full_pixels()  # a scaled decode (fast_decode) resized to the image's size
        return pixels if kept.bgr else np.ascontiguousarray(pixels[..., ::-1])

    def _picture(self, image: Any) -> tuple[Any, bool]:
        if image is not None:
            return image, True  # numpy arrays are read as BGR, like OpenCV's; paths and PIL images as they are
        kept = self.__dict__.get("_image")
        if kept is None:
            raise InvalidInputError("this result holds no image (it was not made by a Predictor, or was pickled): "
                                    "pass the image, e.g. r.plot(image)")
        return kept.full_pixels(), bool(kept.bgr)

    def plot(self, image: Any = None, *, rgb: bool = False, **options: Any) -> np.ndarray:
        """The image annotated with this result (boxes, labels and confidences, masks, keypoints,
        rotated boxes, or the top-5 classes), drawn with Pillow in Ultralytics' colours, as a new
        ``HxWx3`` uint8 array: BGR like Ultralytics' ``Results.plot()`` (``rgb=True`` for RGB).

        ``image``: by default the image this result was predicted on; else a BGR array, a path or a
        PIL image of the same size. ``options``: ``conf``, ``labels``, ``boxes``, ``masks``,
        ``keypoints``, ``line_width``, ``font_size``, ``kpt_radius``, ``alpha`` (see
        :func:`modelserve.plotting.plot`)."""
        from . import plotting

        pixels, bgr = self._picture(image)
        out = plotting.plot(self, pixels, bgr=bgr, **options)
        return np.ascontiguousarray(out[..., ::-1]) if bgr == bool(rgb) else out

    def save(self, path: str | os.PathLike[str], image: Any = None, **options: Any) -> str:
        """Write :meth:`plot`'s picture to ``path`` (JPEG, PNG, BMP, TIFF or WebP by its suffix);
        returns the path."""
        from . import plotting

        pixels, bgr = self._picture(image)
        plotting.save(self, pixels, os.fspath(path), bgr=bgr, **options)
        return os.fspath(path)

    def save_txt(self, path: str | os.PathLike[str], save_conf: bool = False) -> str:
        """Append this result's lines in Ultralytics' label format to ``path`` (``cls xywhn``,
        segments, keypoints, oriented corners, or ``conf name`` for classification); returns the path."""
        from . import plotting

        plotting.save_txt(self, os.fspath(path), save_conf=save_conf)
        return os.fspath(path)
