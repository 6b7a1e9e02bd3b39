"""RT-DETR (Ultralytics ``rtdetr-*`` exports): ``[B, queries, 6]`` rows of normalised cx, cy, w, h,
score, class, already top-k selected by the decoder; images are stretched to the input size (no
padding) and boxes scaled by the original width and height, as Ultralytics' RTDETRPredictor does."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from .. import _letterbox
from .._detections import Detections
from .._errors import ModelLoadError
from .._metadata import ModelInfo
from .base import Head, Shape, as_f32, check_class_ids, check_scores, end2end_filter, fmt

__all__ = ["RTDETRHead", "is_rtdetr"]

COLUMNS = "cx, cy, w, h (normalised), score, class"


def is_rtdetr(info: ModelInfo) -> bool:
    """Ultralytics writes ``description: Ultralytics RT-DETR...`` (or ``rtdetr`` in it) for these models."""
    text = " ".join(str(info.raw.get(k, "")) for k in ("description", "model", "arch")).lower()
    return "rtdetr" in text.replace("-", "")


class _Stretch(NamedTuple):
    layout: _letterbox.LetterboxInfo
    plan: Any
    scale: np.ndarray  # unused: boxes are normalised


class RTDETRHead(Head):
    task = "detect"
    layout = "rtdetr"

    @classmethod
    def from_model(cls, info: ModelInfo, shapes: Sequence[Shape]) -> "RTDETRHead":
        if len(shapes) != 1 or len(shapes[0]) != 3 or shapes[0][2] != 6:
            raise ModelLoadError(f"expected one RT-DETR output [batch, queries, 6] ({COLUMNS}), got "
                                 f"{', '.join(fmt(s) for s in shapes)}")
        return cls(info, [0])

    def geometry(self, source_hw: tuple[int, int], imgsz: tuple[int, int], dynamic: bool, stride: int,
                 pixels_hw: tuple[int, int] | None = None) -> Any:
        h, w = source_hw
        th, tw = imgsz  # LetterBox(scale_fill=True): resize to exactly the input size, no padding
        layout = _letterbox.LetterboxInfo((h, w), (th, tw), min(th / h, tw / w), (tw, th), (0, 0))
        ph, pw = pixels_hw or (h, w)
        plan = _letterbox.kernel_plan(ph, pw, th, tw, (tw, th), (0, 0)) if self.kernels else None
        return _Stretch(layout, plan, np.zeros(12, np.float32))

    def decode(self, outs: Sequence[np.ndarray], opts: Any, images: Sequence[Any],
               geometries: Sequence[Any]) -> list[Detections]:
        half = outs[0].dtype == np.float16
        raw = as_f32(outs[0])
        if raw.shape[2] != 6:
            raise ModelLoadError(f"expected RT-DETR output rows [batch, queries, 6], got {list(raw.shape)}")
        results = []
        for rows, image in zip(raw, images):
            det = end2end_filter(rows, opts)  # Ultralytics: score > conf, classes, the first max_det
            check_scores(det[:, 4], sorted_desc=False)
            check_class_ids(det[:, 5], self.nc, COLUMNS)
            oh, ow = image.hw
            xyxy = _corners(det[:, :4], ow, oh, np.float16 if half else np.float32)
            results.append(Detections._trusted(np.ascontiguousarray(xyxy, dtype=np.float32), det[:, 4].copy(),
                                               det[:, 5].astype(np.int64), self.names, (oh, ow)))
        return results


def _corners(cxcywh: np.ndarray, ow: int, oh: int, dtype: type) -> np.ndarray:
    """Normalised cx, cy, w, h rows to x1, y1, x2, y2 image pixels as Ultralytics computes them in the
    model's output precision: ``xywh2xyxy``, then ``*= ow`` / ``*= oh`` in place; in float16 each
    operation is rounded to float16 (torch's half arithmetic through float32)."""
    b: np.ndarray = cxcywh.astype(dtype)
    xy, half = b[:, :2], b[:, 2:4] / dtype(2)
    xyxy = np.concatenate([xy - half, xy + half], axis=1)
    scale = np.array([ow, oh, ow, oh], np.float32)
    return np.ascontiguousarray((xyxy.astype(np.float32) * scale).astype(dtype), dtype=np.float32)
