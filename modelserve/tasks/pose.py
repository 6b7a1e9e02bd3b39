"""Pose: Ultralytics ``-pose`` heads ``[B, 4+nc+K*D, boxes]`` (and end-to-end ``[B, N, 6+K*D]``),
keypoint shape ``(K, D)`` from the metadata's ``kpt_shape``; keypoints in original-image pixels."""

from __future__ import annotations

import ast
from typing import Any, Sequence

import numpy as np

from .. import _letterbox, _nms
from .._detections import Detections
from .._errors import ModelLoadError
from .._metadata import ModelInfo
from .base import (
    Head,
    Shape,
    as_f32,
    check_class_ids,
    check_scores,
    end2end_filter,
    fmt,
    scale_points,
    select_anchors,
    split_layout,
)

__all__ = ["PoseHead", "kpt_shape"]


def kpt_shape(info: ModelInfo) -> tuple[int, int]:
    """``(K, D)`` from the metadata's ``kpt_shape`` (D = 2: x, y; 3: x, y, visibility)."""
    text = info.raw.get("kpt_shape")
    if text is None:
        raise ModelLoadError("a pose model needs 'kpt_shape' in its metadata (e.g. [17, 3]); this one has none")
    try:
        value = ast.literal_eval(str(text)[:100])
        k, d = (int(v) for v in value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ModelLoadError(f"model metadata 'kpt_shape' must be [keypoints, 2 or 3], got {str(text)[:80]!r}") from None
    if not 1 <= k <= 4096 or d not in (2, 3):
        raise ModelLoadError(f"model metadata 'kpt_shape' must be [keypoints, 2 or 3], got {[k, d]}")
    return k, d


class PoseHead(Head):
    task = "pose"

    def __init__(self, info: ModelInfo, outputs: Sequence[int], end2end: bool, kpt: tuple[int, int]) -> None:
        super().__init__(info, outputs, end2end)
        self.kpt = kpt

    @classmethod
    def from_model(cls, info: ModelInfo, shapes: Sequence[Shape]) -> "PoseHead":
        kpt = kpt_shape(info)
        nk = kpt[0] * kpt[1]
        if len(shapes) != 1 or len(shapes[0]) != 3:
            raise ModelLoadError(f"expected one pose output [batch, 4+classes+{kpt[0]}*{kpt[1]}, boxes], got "
                                 f"{len(shapes)} output(s): {', '.join(fmt(s) for s in shapes)}")
        end2end = split_layout(shapes[0], len(info.names), nk, info.end2end or None, "pose",
                               f"box, class scores, {kpt[0]} keypoints x {kpt[1]}")
        return cls(info, [0], end2end, kpt)

    def decode(self, outs: Sequence[np.ndarray], opts: Any, images: Sequence[Any],
               geometries: Sequence[Any]) -> list[Detections]:
        results = []
        if self.end2end:
            for rows, image, geometry in zip(as_f32(outs[0]), images, geometries):
                det = end2end_filter(rows, opts)
                check_scores(det[:, 4], sorted_desc=False)
                check_class_ids(det[:, 5], self.nc, "x1, y1, x2, y2, conf, class, keypoints")
                results.append(self._result(det[:, :6], det[:, 6:], image, geometry))
            return results
        raw, corners = _nms.model_boxes(outs[0])
        selected = select_anchors(raw, self.nc, opts, self.kernels, corners)
        for b, ((det, anchors), image, geometry) in enumerate(zip(selected, images, geometries)):
            check_scores(det[:, 4], sorted_desc=True)
            extra = raw[b, 4 + self.nc :, :][:, anchors].T
            results.append(self._result(det, extra, image, geometry))
        return results

    def _result(self, det: np.ndarray, extra: np.ndarray, image: Any, geometry: Any) -> Detections:
        k, d = self.kpt
        kpts = np.array(extra, dtype=np.float32).reshape(len(det), k, d)
        if d == 3:
            check_scores(kpts[..., 2].reshape(-1), sorted_desc=False, what="keypoint confidence")
        scale_points(kpts, geometry.scale)
        xyxy = _letterbox.scale_with(np.ascontiguousarray(det[:, :4]), geometry.scale)
        return Detections._trusted(xyxy, det[:, 4].copy(), det[:, 5].astype(np.int64), self.names,
                                   image.hw, keypoints=kpts)
