"""What every task shares: the head interface, the letterbox preprocessing, the output checks.

A *head* reads one model's outputs for one task. It is chosen and checked at load
(:func:`modelserve.tasks.head_for`), then the Predictor, which knows no task, asks it how to
preprocess an image (``geometry`` and ``fill``) and how to turn a batch's raw outputs into results
(``decode``). Every check that a model's outputs fit its task lives with that task's head.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .. import _letterbox, _nms
from .._backend import use_kernels
from .._errors import ModelLoadError
from .._metadata import ModelInfo

__all__ = [
    "Head", "Shape", "PAD_VALUE", "MAX_NMS", "fmt", "as_f32", "check_scores", "check_class_ids", "scale_points",
    "end2end_filter", "split_layout", "select_anchors", "check_rows_output",
]

Shape = tuple  # an output's shape: ints, None for dynamic dims
PAD_VALUE = _letterbox.PAD_VALUE  # Ultralytics' letterbox grey
MAX_NMS = _nms.MAX_NMS  # Ultralytics' max_nms: candidates entering NMS, highest scores first
_F32 = np.dtype(np.float32)


def fmt(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


class Head:
    """One task's reading of a model's outputs (subclasses: one per task and layout).

    ``task``: Ultralytics' task name; ``end2end``: NMS-free rows instead of raw anchors;
    ``outputs``: the engine output indices this head reads, in the order ``decode`` takes them.
    """

    task = "detect"
    layout = "ultralytics"
    #: predict options whose default differs for this layout (its family's own defaults)
    option_defaults: Mapping[str, Any] = {}
    #: whether the head reads ``multi_label=True`` (one row per class above ``conf``)
    multi_label = False

    def __init__(self, info: ModelInfo, outputs: Sequence[int], end2end: bool = False) -> None:
        self.info = info
        self.names: Mapping[int, str] = info.names
        self.nc = len(info.names)
        self.outputs = tuple(outputs)
        self.end2end = end2end
        self.kernels = use_kernels()  # Cython kernels or the NumPy reference: chosen once, at load

    def __repr__(self) -> str:
        kind = "end-to-end" if self.end2end else self.layout
        return f"<{type(self).__name__} task={self.task} {kind} classes={self.nc}>"

    # -- preprocessing (Ultralytics' LetterBox: centred, grey padding) ----------------------------
    #: whether images may be decoded smaller than their size (``fast_decode``): a letterbox head
    #: resizes them anyway; heads that crop (classification) say False
    scaled_input = True

    def geometry(self, source_hw: tuple[int, int], imgsz: tuple[int, int], dynamic: bool, stride: int,
                 pixels_hw: tuple[int, int] | None = None) -> Any:
        return _letterbox.geometry(source_hw, imgsz, dynamic, stride, self.kernels, pixels_hw)

    def fill(self, pixels: np.ndarray, bgr: bool, geometry: Any, out: np.ndarray, otype: int) -> None:
        _letterbox.fill(geometry.layout, geometry.plan, pixels, out, otype, PAD_VALUE, bgr)

    # -- outputs ----------------------------------------------------------------------------------
    def check_input(self, input_hw: tuple[Any, ...], output_shape: Shape) -> None:
        """Refuse at load an output that cannot fit this input (heads whose rows follow a grid)."""

    def run_limit(self, engine: Any) -> int | None:
        """1 when the input batch is dynamic but an output's batch is fixed at 1 (such a model
        answers for one image per run), else None; :class:`ModelLoadError` when outputs cannot be
        matched to images."""
        in_batch = engine.inputs[0].shape[0]
        limit = None
        for i in self.outputs:
            shape = engine.outputs[i].shape
            out_batch = shape[0] if shape else None
            if out_batch is None or out_batch == in_batch:
                continue
            if in_batch is None and out_batch == 1:
                limit = 1
                continue
            raise ModelLoadError(
                f"the model's output batch is fixed at {out_batch} while its input batch is "
                f"{'dynamic' if in_batch is None else in_batch}: outputs cannot be matched to images"
            )
        return limit

    def ranks(self) -> tuple[int, ...]:
        return (3,)

    def check_run(self, outs: Sequence[np.ndarray], n: int) -> None:
        """Each run's outputs must have this head's ranks and one block per input image."""
        for out, rank in zip(outs, self.ranks()):
            if out.ndim != rank or out.shape[0] != n:
                raise ModelLoadError(
                    f"the model answered a batch of {n} images with an output of shape {list(out.shape)}: "
                    f"expected rank {rank} with one block per image ({self.task} head); no result is returned "
                    "rather than results matched to the wrong images"
                )

    def decode(self, outs: Sequence[np.ndarray], opts: Any, images: Sequence[Any],
               geometries: Sequence[Any]) -> list[Any]:
        raise NotImplementedError


def as_f32(raw: np.ndarray) -> np.ndarray:
    if raw.dtype is not _F32 or not raw.flags.c_contiguous:
        raw = np.ascontiguousarray(raw, dtype=np.float32)
    return raw


def check_scores(conf: np.ndarray, sorted_desc: bool, what: str = "confidence") -> None:
    """Scores must be probabilities in [0, 1] (else the outputs are not what the model claims)."""
    if not len(conf):
        return
    if sorted_desc:  # NMS output: highest first, and only scores > conf >= 0 got there
        ok = bool(conf[0] <= 1.0)
    else:
        ok = bool(conf.min() >= 0.0 and conf.max() <= 1.0)
    if not ok:
        bad = conf[~((conf >= 0.0) & (conf <= 1.0))].reshape(-1)[0]
        raise ModelLoadError(f"the model gave a {what} of {float(bad):g}, outside [0, 1]: its outputs are not "
                             "sigmoid scores (raw logits, or another task's head)")


def check_class_ids(raw_class: np.ndarray, nc: int, columns: str) -> None:
    """End-to-end rows' float class column must hold whole class ids of the model."""
    if not len(raw_class):
        return
    ok = (raw_class >= 0) & (raw_class < nc) & (raw_class == np.floor(raw_class))
    if not ok.all():
        raise ModelLoadError(f"the model gave class id {float(raw_class[~ok][0]):g}, not one of its {nc} classes "
                             f"(end-to-end rows must be {columns})")


def scale_points(points: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Ultralytics' ``scale_coords`` in place on float32 ``(..., >= 2)`` points (x, y first) with
    a letterbox scale row (:func:`modelserve._letterbox.scale_row`: pad[4], gain[4], bound[4]): ``(v - pad) / gain``,
    clipped to the image."""
    for axis in (0, 1):
        v = points[..., axis]
        v -= row[axis]
        v /= row[4 + axis]
        np.maximum(v, np.float32(0), out=v)
        np.minimum(v, row[8 + axis], out=v)
    return points


def end2end_filter(rows: np.ndarray, opts: Any) -> np.ndarray:
    """NMS-free rows (x1, y1, x2, y2, conf, class, extra...): filter only, as Ultralytics does."""
    mask = rows[:, 4] > opts.conf
    if opts.classes is not None:
        mask &= np.isin(rows[:, 5], np.asarray(opts.classes, dtype=np.float32))
    return np.ascontiguousarray(rows[np.flatnonzero(mask)[: opts.max_det]])


def split_layout(shape: Shape, nc: int, extra: int, end2end: bool | None, task: str, what: str) -> bool:
    """Whether a rank-3 output ``shape`` is end-to-end rows ``[B, N, 6 + extra]`` (True) or raw
    anchors ``[B, 4 + nc + extra, N]`` (False); :class:`ModelLoadError` when it is neither (or
    either, with nothing to tell them apart). ``end2end``: the metadata's word, if any."""
    raw_ok = shape[1] in (None, 4 + nc + extra)
    e2e_ok = shape[2] == 6 + extra  # rows always have a fixed width; a dynamic last dim is anchors
    if end2end is True and shape[2] in (None, 6 + extra):
        return True
    if end2end is False and raw_ok:
        return False
    if raw_ok and not e2e_ok:
        return False
    if e2e_ok and not raw_ok:
        return True
    expected = f"[batch, 4+{nc}+{extra}={4 + nc + extra}, boxes] or end-to-end [batch, N, 6+{extra}={6 + extra}]"
    if raw_ok and e2e_ok:
        raise ModelLoadError(f"the {task} output {fmt(shape)} could be read as {expected}; the metadata does not "
                             "say which (set end2end in the metadata or export with fixed shapes)")
    raise ModelLoadError(f"expected a {task} output {expected} ({what}) for this model's {nc} class names, "
                         f"got {fmt(shape)}")


def check_rows_output(shapes: Sequence[Shape], nc: int, layout: str, rows: str, boxes: str) -> None:
    """A rows layout's one output must be ``[B, rows, 5 + nc]``: ``boxes``, objectness, ``nc`` scores."""
    if len(shapes) != 1 or len(shapes[0]) != 3 or shapes[0][2] not in (None, 5 + nc):
        raise ModelLoadError(f"expected one {layout} output [batch, {rows}, 5+{nc}={5 + nc}] ({boxes}, objectness, "
                             f"{nc} class scores) for this model's {nc} class names, got "
                             f"{', '.join(fmt(s) for s in shapes)}")


def select_anchors(raw: np.ndarray, nc: int, opts: Any, kernels: bool,
                   xyxy: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ultralytics' ``non_max_suppression`` on the first ``4 + nc`` channels of ``[B, C, N]`` raw
    outputs (C >= 4 + nc; channels after the scores ride along, as its ``mask`` split does): per
    image the kept ``(n, 6)`` rows in tensor pixels and the anchors (columns) they came from.
    ``xyxy``: channels 0-3 are already corners (:func:`modelserve._nms.model_boxes`)."""
    return _nms.yolo_select(raw, nc, opts.conf, opts.iou, opts.max_det, opts.class_array, opts.agnostic, MAX_NMS,
                            kernels, xyxy)
