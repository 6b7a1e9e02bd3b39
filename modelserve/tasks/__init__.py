"""Tasks: what a model's outputs mean, one module per Ultralytics task.

``head_for(engine, info, task)`` picks the task (``task=`` or the model's metadata), checks that
the model's outputs have that task's layout and returns the head that decodes them; a model whose
outputs fit no known layout is refused here, at load, with :class:`ModelLoadError`.

=========  ====================================================  ==============================
task       outputs                                               result
=========  ====================================================  ==============================
detect     ``[B, 4+nc, A]``; end-to-end ``[B, N, 6]``             :class:`Detections`
detect     RT-DETR ``[B, queries, 6]`` (normalised cxcywh)        :class:`Detections`
segment    ``[B, 4+nc+32, A]`` + protos ``[B, 32, h, w]``         ``Detections.masks``
pose       ``[B, 4+nc+K*D, A]``; end-to-end ``[B, N, 6+K*D]``     ``Detections.keypoints``
obb        ``[B, 4+nc+1, A]``; end-to-end ``[B, N, 7]``           ``Detections.xywhr``
classify   ``[B, nc]`` (softmax)                                  :class:`Classification`
=========  ====================================================  ==============================

Detectors from other families' own repositories (no Ultralytics metadata) have layouts of their
own, recognised from the output's shape or stated with ``layout=`` (:mod:`.layouts`): YOLOv5 and
YOLOv7 rows with objectness (:mod:`.yolov5`) and YOLOX's raw head (:mod:`.yolox`), each with its
family's preprocessing and NMS.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._engine import Engine
from .._errors import InvalidInputError, ModelLoadError
from .._metadata import ModelInfo
from .base import Head, fmt
from .classify import Classification, ClassifyHead
from .detect import DetectHead
from .layouts import LAYOUTS, ROWS_LAYOUTS, check_layout, detector_layout
from .obb import OBBHead
from .pose import PoseHead
from .rtdetr import RTDETRHead, is_rtdetr
from .segment import SegmentHead
from .yolov5 import YOLOv5Head, YOLOv7Head
from .yolox import YOLOXHead

__all__ = ["TASKS", "LAYOUTS", "ROWS_LAYOUTS", "Head", "head_for", "detector_layout", "Classification"]

#: task name -> head class; ``rtdetr`` names RT-DETR's detection layout explicitly.
TASKS: dict[str, Any] = {
    "detect": DetectHead,
    "segment": SegmentHead,
    "pose": PoseHead,
    "obb": OBBHead,
    "classify": ClassifyHead,
    "rtdetr": RTDETRHead,
}

#: detector layouts of other families -> head class
_FAMILY_HEADS: dict[str, Any] = {"yolov5": YOLOv5Head, "yolov7": YOLOv7Head, "yolox": YOLOXHead}


def head_for(engine: Engine, info: ModelInfo, task: str | None = None, layout: str | None = None) -> Head:
    """The head for ``task`` (default: the metadata's ``task``) and, for a detector, ``layout``
    (default: read from the output's shape, :func:`detector_layout`), checked against the outputs."""
    if task is not None and (not isinstance(task, str) or task not in TASKS):
        raise InvalidInputError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    layout = check_layout(layout)
    name = task or info.task
    if layout not in (None, "ultralytics") and name != "detect":
        raise InvalidInputError(f"layout={layout!r} is a detector's layout; this model's task is {name!r} "
                                "(other tasks have only Ultralytics' layout)")
    if name not in TASKS:
        raise ModelLoadError(f"this model's metadata says task {name!r}; modelserve knows {sorted(TASKS)} "
                             "(state the task with task=)")
    if not engine.outputs:
        raise ModelLoadError("this model has no outputs")
    nc = len(info.names)
    if nc == 0:
        raise ModelLoadError("this model has no class names: pass names= (a list, or a dict id -> name)")
    if set(info.names) != set(range(nc)):
        raise ModelLoadError(f"class names must be numbered 0..{nc - 1}, got ids {sorted(info.names)[:20]}")
    if name == "detect" and is_rtdetr(info):  # Ultralytics names RT-DETR's task 'detect'
        name = "rtdetr"
    shapes = [tuple(o.shape) for o in engine.outputs]
    if layout not in (None, "ultralytics") and len(shapes) != 1:
        raise ModelLoadError(f"layout={layout!r} reads one output [batch, rows, columns]; this model has "
                             f"{len(shapes)}: {', '.join(fmt(s) for s in shapes)} (export with the detection "
                             "outputs concatenated, e.g. YOLOv5's export.py, or YOLOv7's with --grid)")
    if name == "detect" and len(shapes) == 1:
        found = detector_layout(shapes[0], tuple(engine.inputs[0].shape[2:4]), info.raw, layout)
        if found in _FAMILY_HEADS:
            head = _FAMILY_HEADS[found].from_model(info, shapes)
            head.check_input(tuple(engine.inputs[0].shape[2:4]), shapes[0])
            return head
        if found == "end2end":
            info = dataclasses.replace(info, end2end=True)
    try:
        return TASKS[name].from_model(info, shapes)
    except ModelLoadError as exc:
        said = f"task={task!r}" if task is not None else f"this model's metadata says task {name!r}"
        raise ModelLoadError(f"{said}, but {exc}") from None
