"""YOLOX from its own repository (``tools/export_onnx.py``, the decode left out of the graph, as in
ddddocr's detector): one output ``[B, cells, 5+nc]`` of raw cx, cy, w, h offsets, objectness and
class scores (both already sigmoided), read as YOLOX's ``demo/ONNXRuntime/onnx_inference.py`` reads it.

Preprocessing (YOLOX's ``preproc``): resized by ``r = min(H / h, W / w)`` to ``(int(w * r), int(h * r))``
(bilinear, as ``cv2.resize``), placed at the *top left* of a canvas of grey 114, **BGR**, values
0-255 (no normalisation); always the full input size.

Post-processing (``demo_postprocess`` and ``multiclass_nms``):

- grid decode: ``(xy + grid) * stride`` and ``exp(wh) * stride`` for strides 8, 16, 32 (and 64 when
  the rows say P6), in float64 stored as float32 as NumPy computes it there;
- confidence = objectness x class score; corners ``x -/+ w / 2``, divided by ``r`` (image pixels);
- class-agnostic by default (YOLOX's default): each box's best class, kept when its confidence
  ``> conf``; ``agnostic=False`` is YOLOX's class-aware variant, one NMS per class, so a box may
  be kept for several classes, ordered by class, then confidence;
- NMS with the +1-pixel area convention, ``IoU <= iou`` kept, visited in ``argsort()[::-1]`` order.

Then, unlike the demo: ``classes`` filters before NMS, ``max_det`` (if given) keeps the highest
confidences in the reference's order, and boxes are clipped to the image.
Defaults follow the demo and ddddocr: ``conf=0.1``, ``iou=0.45``, class-agnostic, no ``max_det`` cap.
Float16 outputs are read in float32.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Sequence

import numpy as np

from .. import _letterbox, _nms
from .._detections import Detections
from .._errors import ModelLoadError
from .._metadata import ModelInfo
from .._numpy_ops import corners
from .base import PAD_VALUE, Head, Shape, as_f32, check_rows_output, check_scores
from .layouts import P5, P6, grid_cells

__all__ = ["YOLOXHead", "yolox_detections", "yolox_grid"]

@functools.lru_cache(maxsize=16)
def yolox_grid(input_hw: tuple[int, int], rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(rows, 2)`` int64 grid offsets and ``(rows, 1)`` int64 strides of an ``input_hw``
    input (P5 or P6, whichever has ``rows`` cells); :class:`ModelLoadError` if neither."""
    for strides in (P5, P6):
        if grid_cells(input_hw, strides) == rows:
            break
    else:
        raise ModelLoadError(f"the yolox output has {rows} rows, but a {list(input_hw)} input has "
                             f"{grid_cells(input_hw, P5)} grid cells (strides 8-32) or {grid_cells(input_hw, P6)} "
                             "(8-64): these rows are not YOLOX's raw head for this input")
    grids, steps = [], []
    for s in strides:
        h, w = input_hw[0] // s, input_hw[1] // s
        xv, yv = np.meshgrid(np.arange(w), np.arange(h))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        steps.append(np.full((h * w, 1), s))
    grid, stride = np.concatenate(grids), np.concatenate(steps)
    grid.setflags(write=False)
    stride.setflags(write=False)
    return grid, stride


def yolox_detections(raw: np.ndarray, input_hw: tuple[int, int], ratio: float, conf: float, iou: float,
                     class_arr: np.ndarray | None = None, agnostic: bool = True, max_det: int | None = None,
                     kernels: bool | None = None) -> np.ndarray:
    """One image's raw ``(rows, 5 + nc)`` YOLOX outputs to ``(n, 6)`` float32 rows x1, y1, x2, y2,
    conf, class in image pixels (divided by ``ratio``, unclipped), as YOLOX's demo computes them.
    ``kernels``: NMS in the compiled kernel (default: :func:`modelserve._backend.use_kernels`) or
    in NumPy; both are the reference's arithmetic."""
    grid, stride = yolox_grid(input_hw, raw.shape[0])
    objectness = np.ascontiguousarray(raw[:, 4])  # one strided pass over the rows; the rest reads this
    check_scores(objectness, sorted_desc=False, what="objectness")
    # Only rows whose objectness passes can pass: obj * cls <= obj in float32 for class scores in
    # [0, 1] (checked on those rows). Every step after is elementwise per row, so rows drop out first.
    rows = np.flatnonzero(objectness > np.float32(conf))
    raw, grid, stride = raw[rows], grid[rows], stride[rows]
    obj, cls = raw[:, 4:5], raw[:, 5:]
    check_scores(cls, sorted_desc=False, what="class score")
    xy = ((raw[:, :2] + grid) * stride).astype(np.float32)  # float32 + int64 -> float64, as the demo
    wh = (np.exp(raw[:, 2:4]) * stride).astype(np.float32)
    scores = obj * cls
    boxes = np.concatenate(corners(xy, wh, np.float32(2)), axis=1)
    boxes /= np.float32(ratio)
    nc = scores.shape[1]
    allowed = np.ones(nc, bool) if class_arr is None else np.isin(np.arange(nc), class_arr)
    parts = []
    if agnostic:
        best = np.argmax(scores, axis=1)
        best_scores = scores[np.arange(len(best)), best]
        mask = (best_scores > np.float32(conf)) & allowed[best]
        b, s, c = boxes[mask], best_scores[mask], best[mask]
        keep = _nms_plus_one(b, s, iou, kernels)
        parts.append((b[keep], s[keep], c[keep]))
    else:
        for k in np.flatnonzero(allowed):
            mask = scores[:, k] > np.float32(conf)
            if mask.any():
                b, s = boxes[mask], scores[mask, k]
                keep = _nms_plus_one(b, s, iou, kernels)
                parts.append((b[keep], s[keep], np.full(len(keep), k)))
    if not parts:
        return np.zeros((0, 6), np.float32)
    det = np.concatenate([np.concatenate([b, s[:, None], c[:, None].astype(np.float32)], axis=1) for b, s, c in parts])
    if max_det is not None and len(det) > max_det:
        top = np.argsort(-det[:, 4], kind="stable")[:max_det]
        det = det[np.sort(top)]
    return np.ascontiguousarray(det, dtype=np.float32)


def _nms_plus_one(boxes: np.ndarray, scores: np.ndarray, thr: float, kernels: bool | None = None) -> np.ndarray:
    """YOLOX's single-class NMS: visit in ``argsort()[::-1]`` order, areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``,
    keep boxes whose IoU with the kept one is ``<= thr`` (float32 throughout): the kernel, else
    this NumPy loop (the kernel's reference)."""
    if not len(boxes):
        return np.zeros(0, np.int64)
    order = scores.argsort()[::-1]  # NumPy's unstable sort, reversed: the reference's tie order
    kept = _nms.nms_plus_one(boxes, order, thr, kernels)
    if kept is not None:
        return kept
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    one, zero, t = np.float32(1), np.float32(0), np.float32(thr)
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(zero, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one)
        h = np.maximum(zero, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= t]
    return np.asarray(keep, np.int64)


class YOLOXHead(Head):
    """Detection from YOLOX's raw ``[B, cells, 5+nc]`` head (see the module's docstring)."""

    task = "detect"
    layout = "yolox"
    option_defaults = {"conf": 0.1, "iou": 0.45, "agnostic": True, "max_det": sys.maxsize}  # YOLOX has no cap

    @classmethod
    def from_model(cls, info: ModelInfo, shapes: Sequence[Shape]) -> "YOLOXHead":
        check_rows_output(shapes, len(info.names), cls.layout, "cells", "raw cx, cy, w, h")
        return cls(info, [0])

    def check_input(self, input_hw: tuple[Any, ...], output_shape: Shape) -> None:
        """A fixed input's grid must have one cell per row (checked again on every run)."""
        if None not in input_hw and output_shape[1] is not None:
            yolox_grid((int(input_hw[0]), int(input_hw[1])), int(output_shape[1]))

    def geometry(self, source_hw: tuple[int, int], imgsz: tuple[int, int], dynamic: bool, stride: int,
                 pixels_hw: tuple[int, int] | None = None) -> Any:
        h, w = source_hw
        th, tw = imgsz
        r = min(th / h, tw / w)
        rw, rh = max(int(w * r), 1), max(int(h * r), 1)  # YOLOX truncates where Ultralytics rounds
        layout = _letterbox.LetterboxInfo((h, w), (th, tw), r, (rw, rh), (0, 0))
        ph, pw = pixels_hw or (h, w)
        plan = _letterbox.kernel_plan(ph, pw, th, tw, (rw, rh), (0, 0)) if self.kernels else None
        scale = np.array([0, 0, 0, 0, r, r, r, r, w, h, w, h], np.float32)  # float32(r): YOLOX's divisor
        scale.setflags(write=False)  # shared through the Predictor's geometry cache
        return _letterbox.Geometry(layout, plan, scale)

    def fill(self, pixels: np.ndarray, bgr: bool, geometry: Any, out: np.ndarray, otype: int) -> None:
        """BGR values 0-255: the letterbox in uint8, then widened (YOLOX does not normalise)."""
        canvas = np.empty((3, *geometry.layout.output_hw), np.uint8)
        _letterbox.fill(geometry.layout, geometry.plan, pixels, canvas, _letterbox.OTYPES["B"], PAD_VALUE, not bgr)
        np.copyto(out.reshape(canvas.shape), canvas, casting="unsafe")

    def decode(self, outs: Sequence[np.ndarray], opts: Any, images: Sequence[Any],
               geometries: Sequence[Any]) -> list[Detections]:
        raw = as_f32(outs[0])
        if raw.shape[2] != 5 + self.nc:
            raise ModelLoadError(f"expected yolox output rows [batch, cells, {5 + self.nc}], got {list(raw.shape)}")
        results = []
        for rows, image, geometry in zip(raw, images, geometries):
            det = yolox_detections(rows, geometry.layout.output_hw, geometry.layout.ratio, opts.conf, opts.iou,
                                   opts.class_array, opts.agnostic, opts.max_det, self.kernels)
            xyxy = np.ascontiguousarray(det[:, :4])
            np.clip(xyxy, 0, geometry.scale[8:12], out=xyxy)
            results.append(Detections._trusted(xyxy, det[:, 4].copy(), det[:, 5].astype(np.int64), self.names,
                                               image.hw))
        return results
