"""Oriented boxes: Ultralytics ``-obb`` heads ``[B, 4+nc+1, boxes]`` (cx, cy, w, h, scores,
angle; and YOLO26-obb end-to-end rows), with Ultralytics' rotated NMS (probabilistic IoU)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .._detections import Detections, xywhr_corners
from .._errors import ModelLoadError
from .._metadata import ModelInfo
from .base import MAX_NMS, Head, Shape, as_f32, check_class_ids, check_scores, fmt, split_layout

__all__ = ["OBBHead"]


class OBBHead(Head):
    task = "obb"

    @classmethod
    def from_model(cls, info: ModelInfo, shapes: Sequence[Shape]) -> "OBBHead":
        if len(shapes) != 1 or len(shapes[0]) != 3:
            raise ModelLoadError(f"expected one oriented-box output [batch, 4+classes+1, boxes], got "
                                 f"{len(shapes)}: {', '.join(fmt(s) for s in shapes)}")
        end2end = split_layout(shapes[0], len(info.names), 1, info.end2end or None, "oriented-box",
                               "cx, cy, w, h, class scores, angle")
        try:
            from .. import _rotated  # type: ignore[attr-defined]  # noqa: F401
        except ImportError:
            raise ModelLoadError("oriented-box models are recognised but their rotated NMS is not built in this "
                                 "version of modelserve") from None
        return cls(info, [0], end2end)

    def decode(self, outs: Sequence[np.ndarray], opts: Any, images: Sequence[Any],
               geometries: Sequence[Any]) -> list[Detections]:
        raise ModelLoadError("oriented-box decoding is not built yet")
