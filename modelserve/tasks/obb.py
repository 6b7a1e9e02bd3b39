"""Oriented boxes: Ultralytics ``-obb`` heads ``[B, 4+nc+1, boxes]`` (cx, cy, w, h, scores,
angle; and YOLO26-obb end-to-end rows), with Ultralytics' rotated NMS (probabilistic IoU)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import _nms, _rotated
from .._detections import Detections, xywhr_corners
from .._errors import ModelLoadError
from .._metadata import ModelInfo
from .base import MAX_NMS, Head, Shape, as_f32, check_class_ids, check_scores, end2end_filter, fmt, split_layout

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
        return cls(info, [0], end2end)

    def decode(self, outs: Sequence[np.ndarray], opts: Any, images: Sequence[Any],
               geometries: Sequence[Any]) -> list[Detections]:
        raw = as_f32(outs[0])
        results = []
        for b, (image, geometry) in enumerate(zip(images, geometries)):
            if self.end2end:  # rows cx, cy, w, h, conf, class, angle: filtered only
                rows = end2end_filter(raw[b], opts)
                check_scores(rows[:, 4], sorted_desc=False)
                check_class_ids(rows[:, 5], self.nc, "cx, cy, w, h, conf, class, angle")
            else:
                rows = self._nms(raw[b], opts)
                check_scores(rows[:, 4], sorted_desc=True)
            results.append(self._result(rows, image, geometry))
        return results

    def _nms(self, x: np.ndarray, opts: Any) -> np.ndarray:
        """Ultralytics' ``non_max_suppression(..., rotated=True)`` on one image's ``(4+nc+1, N)``
        outputs: best class > conf, classes filter, at most max_nms by score, rotated NMS on
        centres offset by class (probabilistic IoU), max_det. Rows: cx, cy, w, h, conf, class, angle."""
        nc = self.nc
        anchors, conf, j = _nms.yolo_candidates(x, nc, opts.conf, opts.class_array, MAX_NMS)
        if not len(anchors):
            return np.zeros((0, 7), np.float32)
        rows = np.concatenate([x[:4, anchors].T, conf[:, None], j[:, None].astype(np.float32), x[4 + nc :, anchors].T],
                              axis=1).astype(np.float32)
        offset = rows[:, 5:6] * np.float32(0.0 if opts.agnostic else _nms.MAX_WH)
        boxes = np.concatenate([rows[:, :2] + offset, rows[:, 2:4], rows[:, 6:7]], axis=1)
        keep = _rotated.nms_rotated(boxes, np.ascontiguousarray(rows[:, 4]), opts.iou)[: opts.max_det]
        return np.ascontiguousarray(rows[keep])

    def _result(self, rows: np.ndarray, image: Any, geometry: Any) -> Detections:
        """Ultralytics' ``scale_boxes(..., xywh=True)``: centre minus padding, all four divided by
        the gains, not clipped; the angle as the model gives it."""
        row = geometry.scale
        xywhr = np.ascontiguousarray(np.concatenate([rows[:, :4], rows[:, 6:7]], axis=1), dtype=np.float32)
        xywhr[:, 0] -= row[0]
        xywhr[:, 1] -= row[1]
        xywhr[:, 0] /= row[4]
        xywhr[:, 1] /= row[5]
        xywhr[:, 2] /= row[4]
        xywhr[:, 3] /= row[5]
        corners = xywhr_corners(xywhr)
        xyxy = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).astype(np.float32)
        return Detections._trusted(np.ascontiguousarray(xyxy), rows[:, 4].copy(), rows[:, 5].astype(np.int64),
                                   self.names, image.hw, xywhr=xywhr)
