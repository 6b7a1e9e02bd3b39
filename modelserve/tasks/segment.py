"""Segmentation: Ultralytics ``-seg`` heads ``[B, 4+nc+nm, boxes]`` plus prototypes
``[B, nm, mh, mw]`` (and YOLO26-seg end-to-end rows ``[B, N, 6+nm]``); masks as Ultralytics'
``retina_masks=True`` gives them, computed per box crop, detections with an empty mask dropped."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import _letterbox, _nms
from .._detections import Detections
from .._errors import ModelLoadError
from .._masks import process_masks
from .._metadata import ModelInfo
from .base import Head, Shape, as_f32, check_class_ids, check_scores, end2end_filter, fmt, select_anchors, split_layout

__all__ = ["SegmentHead"]


class SegmentHead(Head):
    task = "segment"

    def __init__(self, info: ModelInfo, outputs: Sequence[int], end2end: bool, nm: int) -> None:
        super().__init__(info, outputs, end2end)
        self.nm = nm

    @classmethod
    def from_model(cls, info: ModelInfo, shapes: Sequence[Shape]) -> "SegmentHead":
        ranks = [len(s) for s in shapes]
        if len(shapes) != 2 or sorted(ranks) != [3, 4]:
            raise ModelLoadError(f"expected two segmentation outputs, [batch, 4+classes+32, boxes] and prototypes "
                                 f"[batch, 32, h, w], got {len(shapes)}: {', '.join(fmt(s) for s in shapes)}")
        pred_i, proto_i = ranks.index(3), ranks.index(4)
        nm = shapes[proto_i][1]
        if nm is None or not 1 <= nm <= 1024:
            raise ModelLoadError(f"the prototype output {fmt(shapes[proto_i])} must have a fixed number of masks")
        end2end = split_layout(shapes[pred_i], len(info.names), nm, info.end2end or None, "segmentation",
                               f"box, class scores, {nm} mask coefficients")
        return cls(info, [pred_i, proto_i], end2end, nm)

    def ranks(self) -> tuple[int, ...]:
        return (3, 4)

    def decode(self, outs: Sequence[np.ndarray], opts: Any, images: Sequence[Any],
               geometries: Sequence[Any]) -> list[Detections]:
        protos = as_f32(outs[1])
        results = []
        if self.end2end:
            for b, (rows, image, geometry) in enumerate(zip(as_f32(outs[0]), images, geometries)):
                det = end2end_filter(rows, opts)
                check_scores(det[:, 4], sorted_desc=False)
                check_class_ids(det[:, 5], self.nc, f"x1, y1, x2, y2, conf, class, {self.nm} mask coefficients")
                results.append(self._result(det[:, :6], det[:, 6:], protos[b], image, geometry))
            return results
        raw, corners = _nms.model_boxes(outs[0])
        selected = select_anchors(raw, self.nc, opts, self.kernels, corners)
        for b, ((det, anchors), image, geometry) in enumerate(zip(selected, images, geometries)):
            check_scores(det[:, 4], sorted_desc=True)
            coeffs = raw[b, 4 + self.nc :, :][:, anchors].T
            results.append(self._result(det, coeffs, protos[b], image, geometry))
        return results

    def _result(self, det: np.ndarray, coeffs: np.ndarray, protos: np.ndarray, image: Any, geometry: Any) -> Detections:
        hw = image.hw
        xyxy = _letterbox.scale_with(np.ascontiguousarray(det[:, :4]), geometry.scale)
        crops = process_masks(np.ascontiguousarray(coeffs, dtype=np.float32), protos, xyxy,
                                     geometry.layout.output_hw, hw)
        keep = np.flatnonzero(crops.nonempty())  # Ultralytics drops detections whose mask is empty
        if len(keep) < len(det):
            xyxy, det, crops = xyxy[keep], det[keep], crops.select(keep)
        return Detections._trusted(np.ascontiguousarray(xyxy), det[:, 4].copy(), det[:, 5].astype(np.int64),
                                   self.names, hw, mask_crops=crops)
