"""YOLOv5 and YOLOv7 from their own repositories: one output ``[B, 3*cells, 5+nc]`` of decoded
cx, cy, w, h (input pixels), objectness and one score per class, read as their ``detect.py`` reads it.

Preprocessing is Ultralytics' letterbox (centred, grey 114, RGB, /255), always padded to the full
input size (``auto=False``, as their ``detect.py`` runs exported models). Post-processing is each
repository's ``non_max_suppression``, step for step:

- candidates: objectness ``> conf``; confidence = objectness x class score (YOLOv7 with one class:
  objectness alone);
- one label per box, its best class (``multi_label=True``: every class whose confidence ``> conf``);
- ``classes`` filters before NMS; YOLOv5 sorts the candidates by confidence (torch's unstable
  order) and keeps ``max_nms`` = 30000, YOLOv7 sorts only beyond 30000;
- class-aware NMS by offsetting boxes by ``class * max_wh`` (YOLOv5 7680, YOLOv7 4096), then
  ``torchvision.ops.nms``; at most ``max_det`` kept (YOLOv7's own NMS keeps at most 300 whatever
  is asked);
- boxes mapped back by ``scale_boxes``/``scale_coords``: one gain, the padding *not* rounded, then
  clipped to the image. Boxes stay floats (their ``detect.py`` rounds them for display).

Defaults follow their ``detect.py``: ``conf=0.25``, ``iou=0.45``, ``max_det=1000`` (YOLOv5) / 300 (YOLOv7).
Float16 outputs are read in float32 (YOLOv5's ``--half`` runs these steps in float16: confidences
may then differ in the fourth decimal).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from .. import _letterbox, _nms
from .._detections import Detections
from .._errors import ModelLoadError
from .._metadata import ModelInfo
from .._numpy_ops import xywh2xyxy
from .base import MAX_NMS, Head, Shape, as_f32, check_rows_output, check_scores

__all__ = ["YOLOv5Head", "YOLOv7Head", "objectness_nms", "yolov5_scale_row"]


def yolov5_scale_row(tensor_hw: tuple[int, int], source_hw: tuple[int, int]) -> np.ndarray:
    """YOLOv5's ``scale_boxes`` as a scale row (padding[4], gain[4], bound[4], float32): one gain
    ``min(th / sh, tw / sw)`` and the padding ``(t - s * gain) / 2`` left unrounded."""
    return _row((int(tensor_hw[0]), int(tensor_hw[1])), (int(source_hw[0]), int(source_hw[1])))


@functools.lru_cache(maxsize=256)
def _row(tensor_hw: tuple[int, int], source_hw: tuple[int, int]) -> np.ndarray:
    (th, tw), (sh, sw) = tensor_hw, source_hw
    gain = min(th / sh, tw / sw)
    pad_x, pad_y = (tw - sw * gain) / 2, (th - sh * gain) / 2
    row = np.array([pad_x, pad_y, pad_x, pad_y, gain, gain, gain, gain, sw, sh, sw, sh], np.float32)
    row.setflags(write=False)
    return row


def objectness_nms(x: np.ndarray, conf: float, iou: float, max_det: int, class_arr: np.ndarray | None,
                   agnostic: bool, multi_label: bool, family: str = "yolov5", kernels: bool | None = None) -> np.ndarray:
    """One image's ``(rows, 5 + nc)`` float32 outputs through YOLOv5's (``family="yolov5"``) or
    YOLOv7's ``non_max_suppression``: the kept ``(n, 6)`` float32 rows x1, y1, x2, y2, conf, class
    in input pixels, highest confidence first. ``kernels``: sort with the compiled kernel (default:
    :func:`modelserve._backend.use_kernels`) or the NumPy emulation; both give torch's order."""
    nc = x.shape[1] - 5
    objectness = np.ascontiguousarray(x[:, 4])  # one strided pass over the rows; the rest reads this
    check_scores(objectness, sorted_desc=False, what="objectness")  # every row: NaN or < 0 is no model's
    x = x[objectness > np.float32(conf)]  # candidates: objectness > conf (float32, as torch compares)
    if not len(x):
        return np.zeros((0, 6), np.float32)
    obj = x[:, 4:5]
    check_scores(x[:, 5:], sorted_desc=False, what="class score")  # the candidates' (the rest cannot pass)
    scores = obj.copy() if (family == "yolov7" and nc == 1) else x[:, 5:] * obj
    box = xywh2xyxy(x[:, :4])  # YOLOv5's xywh2xyxy: x -/+ w / 2 in float32
    multi_label = multi_label and nc > 1
    if multi_label:
        i, j = np.nonzero(scores > np.float32(conf))  # row-major, as torch's nonzero
        det = np.concatenate([box[i], scores[i, j][:, None], j[:, None].astype(np.float32)], axis=1)
    else:
        j = np.argmax(scores, axis=1)  # the first best class, as torch's max(1)
        best = scores[np.arange(len(scores)), j]
        det = np.concatenate([box, best[:, None], j[:, None].astype(np.float32)], axis=1)
        det = det[best > np.float32(conf)]
    if class_arr is not None:
        det = det[np.isin(det[:, 5], class_arr.astype(np.float32))]
    if not len(det):
        return np.zeros((0, 6), np.float32)
    if family == "yolov5" or len(det) > MAX_NMS:  # YOLOv5 always sorts; YOLOv7 only beyond max_nms
        det = det[_nms.torch_order(det[:, 4], kernels)[:MAX_NMS]]
    max_wh = np.float32(0 if agnostic else (7680 if family == "yolov5" else 4096))
    boxes = det[:, :4] + det[:, 5:6] * max_wh
    keep = _nms.nms(boxes, det[:, 4], iou)[:max_det]
    return np.ascontiguousarray(det[keep], dtype=np.float32)


class YOLOv5Head(Head):
    """Detection from YOLOv5 ``[B, 3*cells, 5+nc]`` rows (see the module's docstring)."""

    task = "detect"
    layout = "yolov5"
    option_defaults = {"conf": 0.25, "iou": 0.45, "max_det": 1000}
    multi_label = True  # takes multi_label=True

    @classmethod
    def from_model(cls, info: ModelInfo, shapes: Sequence[Shape]) -> "YOLOv5Head":
        check_rows_output(shapes, len(info.names), cls.layout, "rows", "cx, cy, w, h")
        return cls(info, [0])

    def geometry(self, source_hw: tuple[int, int], imgsz: tuple[int, int], dynamic: bool, stride: int,
                 pixels_hw: tuple[int, int] | None = None) -> Any:
        g = _letterbox.geometry(source_hw, imgsz, False, stride, self.kernels, pixels_hw)  # detect.py: auto=False
        return g._replace(scale=yolov5_scale_row(g.layout.output_hw, g.layout.source_hw))

    def decode(self, outs: Sequence[np.ndarray], opts: Any, images: Sequence[Any],
               geometries: Sequence[Any]) -> list[Detections]:
        raw = as_f32(outs[0])
        if raw.shape[2] != 5 + self.nc:
            raise ModelLoadError(f"expected {self.layout} output rows [batch, rows, {5 + self.nc}], got "
                                 f"{list(raw.shape)}")
        max_det = min(opts.max_det, 300) if self.layout == "yolov7" else opts.max_det
        results = []
        for rows, image, geometry in zip(raw, images, geometries):
            det = objectness_nms(rows, opts.conf, opts.iou, max_det, opts.class_array, opts.agnostic,
                                 opts.multi_label, self.layout, self.kernels)
            xyxy = _letterbox.scale_with(det[:, :4].copy(), geometry.scale)
            results.append(Detections._trusted(xyxy, det[:, 4].copy(), det[:, 5].astype(np.int64), self.names,
                                               image.hw))
        return results


class YOLOv7Head(YOLOv5Head):
    """Detection from YOLOv7 rows: YOLOv5's layout with YOLOv7's ``non_max_suppression``."""

    layout = "yolov7"
    option_defaults = {"conf": 0.25, "iou": 0.45, "max_det": 300}
