"""Detection: Ultralytics YOLOv5u/v8/11 heads ``[B, 4+nc, boxes]`` and end-to-end (YOLOv10,
YOLO26, ``nms=True`` exports) rows ``[B, N, 6]``, read into :class:`modelserve.Detections`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import _letterbox, _nms
from .._detections import Detections
from .._errors import ModelLoadError
from .._metadata import ModelInfo
from .base import MAX_NMS, Head, Shape, as_f32, check_class_ids, check_scores, end2end_filter, fmt, split_layout

__all__ = ["DetectHead"]

E2E_COLUMNS = "x1, y1, x2, y2, conf, class"


class DetectHead(Head):
    task = "detect"

    @classmethod
    def from_model(cls, info: ModelInfo, shapes: Sequence[Shape]) -> "DetectHead":
        if len(shapes) != 1 or len(shapes[0]) != 3:
            found = ", ".join(fmt(s) for s in shapes)
            hint = " (a classifier's [batch, classes]: load it with task='classify')" if any(len(s) == 2 for s in shapes) else ""
            raise ModelLoadError(f"expected one detector output [batch, 4+classes, boxes] or end-to-end "
                                 f"[batch, N, 6], got {len(shapes)} output(s): {found}{hint}")
        shape = shapes[0]
        nc = len(info.names)
        if info.end2end and shape[2] not in (6, None):
            raise ModelLoadError(f"expected end-to-end detector rows [batch, N, 6] ({E2E_COLUMNS}), got {fmt(shape)}")
        if not info.end2end and shape[1] not in (None, 4 + nc) and shape[2] not in (None, 6):
            raise ModelLoadError(
                f"expected a detector output [batch, 4+{nc}, boxes] for this model's {nc} class names, got "
                f"{fmt(shape)} ({shape[1]} = 4 + {shape[1] - 4}, not 4 + {nc}): a segmentation (4+nc+32), pose (4+nc+keypoints) "
                "or oriented-box (4+nc+1) head is not a detector (load it with its task=), and names= must "
                "list every class"
            )
        end2end = split_layout(shape, nc, 0, True if info.end2end else None, "detector", "cx, cy, w, h, scores")
        return cls(info, [0], end2end)

    def decode(self, outs: Sequence[np.ndarray], opts: Any, images: Sequence[Any],
               geometries: Sequence[Any]) -> list[Detections]:
        names = self.names
        if self.end2end:
            raw = as_f32(outs[0])
            if raw.shape[2] != 6:
                raise ModelLoadError(f"expected end-to-end output rows [batch, N, 6], got {list(raw.shape)}")
            out = []
            for rows, image, geometry in zip(raw, images, geometries):
                det = end2end_filter(rows, opts)
                check_scores(det[:, 4], sorted_desc=False)
                check_class_ids(det[:, 5], self.nc, E2E_COLUMNS)
                _letterbox.scale_with(det[:, :4], geometry.scale)
                out.append(Detections._from_rows(det, names, image.hw))
            return out
        raw, corners = _nms.model_boxes(outs[0])
        if raw.shape[1] != 4 + self.nc:
            raise ModelLoadError(f"expected a detector output [batch, 4+{self.nc}, boxes], got {list(raw.shape)}")
        scale = geometries[0].scale[None] if len(geometries) == 1 else np.stack([g.scale for g in geometries])
        arrays = _nms.yolo_detections(raw, opts.conf, opts.iou, opts.max_det, opts.class_array, opts.agnostic,
                                      MAX_NMS, scale, self.kernels, corners)
        results = []
        for (xyxy, conf, cls_), image in zip(arrays, images):
            check_scores(conf, sorted_desc=True)
            results.append(Detections._trusted(xyxy, conf, cls_, names, image.hw))
        return results
