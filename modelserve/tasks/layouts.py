"""Which family's layout a detector's output has, from its shape, its input size and its metadata.

An Ultralytics export says what it is in its metadata (``task``, ``imgsz``). A model exported by
another family's own repository does not: YOLOv5's ``export.py`` writes only ``stride`` and ``names``
(which are used), YOLOX and YOLOv7 nothing, so its one output is read by shape:

==============  ===========================  ====================================================
layout          output                       how its rows are told apart
==============  ===========================  ====================================================
``ultralytics`` ``[B, 4+nc, anchors]``       channels first: fewer channels than anchors
``end2end``     ``[B, N, 6]``                x1, y1, x2, y2, conf, class; ``N`` is no grid's size
``yolov5``      ``[B, 3*cells, 5+nc]``       three anchors per grid cell of strides 8-32 (or 64)
``yolov7``      ``[B, 3*cells, 5+nc]``       the same rows: only ``layout=`` tells YOLOv7 apart
``yolox``       ``[B, cells, 5+nc]``         one row per grid cell, raw (before the grid decode)
==============  ===========================  ====================================================

``cells`` is the number of grid cells of the model's fixed input at strides 8, 16, 32 (and 64 for
P6 models). What the shape cannot settle is refused with :class:`ModelLoadError` naming the
``layout=`` values that would settle it; nothing is guessed:

- one row per grid cell could be YOLOX's raw head or an anchor-free head already decoded;
- YOLOv5 and YOLOv7 rows are alike, and with one class they score differently (YOLOv5 multiplies
  objectness by the class score, YOLOv7 takes objectness alone), so a one-class model must say,
  unless it carries the ``names`` and ``stride`` that YOLOv5's own export writes;
- a dynamic input or row count has no grid to compare with.

The rows layouts of YOLOv5/YOLOv7 are read as YOLOv5 when there is more than one class, because
their two NMS differ only in the class offset constant and in when candidates are sorted.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .._errors import InvalidInputError, ModelLoadError

__all__ = ["LAYOUTS", "ROWS_LAYOUTS", "P5", "P6", "has_ultralytics_metadata", "detector_layout", "grid_cells"]

#: every ``layout=`` value ``modelserve.load`` takes
LAYOUTS = ("ultralytics", "end2end", "yolov5", "yolov7", "yolox")
#: layouts whose output is ``[B, rows, 5 + nc]`` (objectness in column 4)
ROWS_LAYOUTS = ("yolov5", "yolov7", "yolox")
#: keys only Ultralytics' exports write (YOLOv5's repository writes ``stride`` and ``names`` too)
_METADATA_KEYS = ("task", "imgsz")
#: the heads' strides: P5 models (3 levels) and P6 models (4 levels)
P5, P6 = (8, 16, 32), (8, 16, 32, 64)


def has_ultralytics_metadata(meta: Mapping[str, Any]) -> bool:
    """Whether a model's metadata is an Ultralytics export's (``task``, ``imgsz``; ``names`` and
    ``stride`` alone are what YOLOv5's own ``export.py`` writes)."""
    return any(key in meta for key in _METADATA_KEYS) or "ultralytics" in str(meta.get("author", "")).lower()


def check_layout(layout: Any) -> str | None:
    if layout is None:
        return None
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise InvalidInputError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    return layout


def grid_cells(input_hw: tuple[int, int], strides: Sequence[int]) -> int:
    """The number of grid cells of an ``input_hw`` input over ``strides`` (``H // s * W // s`` each)."""
    h, w = input_hw
    return sum((h // s) * (w // s) for s in strides)


def _cells(input_hw: Sequence[Any]) -> tuple[int, ...]:
    """The grid sizes a fixed input can have: P5 (strides 8-32) and P6 (8-64); none if dynamic."""
    if input_hw[0] is None or input_hw[1] is None:
        return ()
    hw = (int(input_hw[0]), int(input_hw[1]))
    return grid_cells(hw, P5), grid_cells(hw, P6)


def detector_layout(shape: Sequence[Any], input_hw: Sequence[Any], meta: Mapping[str, Any],
                    layout: str | None) -> str:
    """The layout of a detector's one rank-3 output ``shape`` (``layout``: the caller's word)."""
    layout = check_layout(layout)
    if layout is not None:
        return layout
    if has_ultralytics_metadata(meta) or len(shape) != 3:
        return "ultralytics"
    rows, cols = shape[1], shape[2]
    cells = _cells(input_hw)
    if rows is not None and (cols is None or rows <= cols):
        # [B, 4+nc, anchors], channels first (rows layouts have fixed columns) -- unless the rows are
        # a grid's and the columns are not (a rows model with a tiny input or a huge class count)
        if not (cols is not None and rows in (*cells, *(3 * c for c in cells)) and cols not in cells):
            return "ultralytics"
    found = f"the detector output {list(shape)} (input {list(input_hw)}) has no Ultralytics metadata"
    if rows is None or cols is None or not cells:
        raise ModelLoadError(
            f"{found} and a dynamic size, so its layout cannot be read from its shape: say it with layout= "
            f"({_choices()})")
    if rows in tuple(3 * c for c in cells):
        if cols == 6 and "names" in meta and "stride" in meta:
            return "yolov5"  # YOLOv5's own export.py writes names and stride; YOLOv7's writes nothing
        if cols == 6:
            raise ModelLoadError(
                f"{found}: its {rows} rows are three anchors per grid cell (YOLOv5/YOLOv7) with one class, and "
                f"the two score a single class differently; say layout='yolov5' (objectness x class score) or "
                f"layout='yolov7' (objectness alone)")
        if cols < 6:
            raise ModelLoadError(f"{found}: {cols} columns leave no class score (YOLOv5/YOLOv7 rows are "
                                 "cx, cy, w, h, objectness, then one score per class)")
        return "yolov5"
    if rows in cells:
        raise ModelLoadError(
            f"{found}: its {rows} rows are one per grid cell, as an anchor-free head gives them, and the shape "
            f"does not tell raw from decoded rows; say layout='yolox' for YOLOX's raw head (its export default, "
            f"ddddocr's detector), or layout='yolov5' for rows already decoded to cx, cy, w, h pixels with "
            f"objectness")
    if cols == 6:
        return "end2end"
    raise ModelLoadError(
        f"{found} and fits no known layout: {rows} rows match no grid of that input (YOLOv5/YOLOv7: "
        f"3 x {cells[0]}, YOLOX: {cells[0]}), and end-to-end rows have 6 columns; say it with layout= "
        f"({_choices()}), or export with Ultralytics")


def _choices() -> str:
    return ("'ultralytics' [B, 4+nc, anchors], 'end2end' [B, N, 6], 'yolov5' or 'yolov7' [B, rows, 5+nc] with "
            "objectness, 'yolox' raw [B, cells, 5+nc]")
