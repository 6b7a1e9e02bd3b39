"""``save_txt``: a result as Ultralytics' label-file lines (``Results.save_txt`` of Ultralytics 8.4).

One line per detection, numbers in ``%g`` (6 significant digits), coordinates normalised by the
image's width and height:

* detect: ``class xc yc w h``
* segment: ``class x1 y1 x2 y2 ...`` (the mask polygon, ``masks_xyn``; a detection whose polygon
  has fewer than 3 points is left out, as Ultralytics does)
* pose: ``class xc yc w h`` then per keypoint ``x y`` (and its confidence for 3-D keypoints)
* obb: ``class x1 y1 x2 y2 x3 y3 x4 y4`` (the 4 corners)
* classify: ``0.87 name`` for each of the top 5 classes

``save_conf=True`` appends each detection's confidence (classification lines are unchanged). The
lines are appended to the file, as Ultralytics does; nothing is written when there is no line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import _files
from .._errors import InvalidInputError

__all__ = ["label_lines", "save_txt"]


def _normalised_boxes(result: Any, hw: tuple[int, int]) -> np.ndarray:
    """``(n, 4)`` xywhn or ``(n, 8)`` xyxyxyxyn, in float32 as Ultralytics computes them."""
    h, w = hw
    if result.xywhr is not None:
        corners = np.array(result.corners, dtype=np.float32).reshape(-1, 4, 2)
        corners[..., 0] /= w
        corners[..., 1] /= h
        return corners.reshape(-1, 8)
    xyxy = np.asarray(result.xyxy, dtype=np.float32).reshape(-1, 4)
    xywh = np.empty_like(xyxy)
    xywh[:, 0] = (xyxy[:, 0] + xyxy[:, 2]) / 2
    xywh[:, 1] = (xyxy[:, 1] + xyxy[:, 3]) / 2
    xywh[:, 2] = xyxy[:, 2] - xyxy[:, 0]
    xywh[:, 3] = xyxy[:, 3] - xyxy[:, 1]
    xywh[:, [0, 2]] /= w
    xywh[:, [1, 3]] /= h
    return xywh


def _normalised_keypoints(result: Any, hw: tuple[int, int]) -> np.ndarray | None:
    kpts = result.keypoints
    if kpts is None:
        return None
    kpts = np.asarray(kpts, dtype=np.float32)
    out = kpts.copy()
    out[..., 0] /= hw[1]
    out[..., 1] /= hw[0]
    return out.reshape(len(out), -1)


def _detection_lines(result: Any, save_conf: bool) -> list[str]:
    n = len(result)
    if n == 0:
        return []
    hw = tuple(int(v) for v in result.orig_shape)
    if len(hw) != 2 or hw[0] < 1 or hw[1] < 1:
        raise InvalidInputError(f"save_txt needs the image size to normalise coordinates; this result's "
                                f"orig_shape is {result.orig_shape!r}")
    coords = _normalised_boxes(result, (hw[0], hw[1])).tolist()
    kpts = _normalised_keypoints(result, (hw[0], hw[1]))
    kpt_rows = None if kpts is None else kpts.tolist()
    segments = result.masks_xyn if getattr(result, "mask_crops", None) is not None else None
    lines = []
    for j in range(n):
        line: tuple[Any, ...] = (int(result.class_id[j]), *coords[j])
        if segments is not None:
            seg = segments[j]
            if len(seg) < 3:  # not a polygon: Ultralytics leaves the detection out
                continue
            line = (int(result.class_id[j]), *seg.reshape(-1).tolist())
        if kpt_rows is not None:
            line += (*kpt_rows[j],)
        if save_conf:
            line += (float(result.confidence[j]),)
        lines.append(("%g " * len(line)).rstrip() % line)
    return lines


def label_lines(result: Any, save_conf: bool = False) -> list[str]:
    """The lines :func:`save_txt` writes for ``result`` (without newlines)."""
    if not isinstance(save_conf, (bool, np.bool_)):
        raise InvalidInputError(f"save_conf must be True or False, got {save_conf!r}")
    if hasattr(result, "probs") and hasattr(result, "top5"):
        return [f"{float(result.probs[j]):.2f} {result.names.get(j, str(j))}" for j in result.top5]
    if not all(hasattr(result, a) for a in ("xyxy", "confidence", "class_id", "orig_shape", "xywhr", "keypoints")):
        raise InvalidInputError(f"expected a modelserve result (Detections or Classification), got {type(result).__name__}")
    return _detection_lines(result, bool(save_conf))


def save_txt(result: Any, path: str | os.PathLike[str], save_conf: bool = False) -> str:
    """Append ``result``'s label lines (:func:`label_lines`) to the text file ``path``, creating it
    and its parent folders as needed; nothing is written (no file created) when there is no line.
    Returns ``path`` as a str. A path that is a folder or a special file (a FIFO) raises
    :class:`~modelserve.InvalidInputError`; other ``OSError``s propagate."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    lines = label_lines(result, save_conf)
    if lines:
        Path(os.fspath(path)).parent.mkdir(parents=True, exist_ok=True)
        fd = _files.open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, refuse=InvalidInputError)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for line in lines)
    return os.fspath(path)
