"""Pre- and post-processing operations for YOLO-style detectors.

``letterbox`` turns an image into a model input tensor exactly as Ultralytics does;
``yolo_postprocess`` turns raw ``[B, 4+nc, N]`` outputs into detections exactly as Ultralytics'
``non_max_suppression`` does; ``nms`` / ``batched_nms`` follow ``torchvision.ops``.

The wrappers here validate and convert their inputs (raising :class:`InvalidInputError`), then call
the compiled Cython kernels (``modelserve/_kernels``), which release the GIL. When the extension is
not built, or the environment variable ``MODELSERVE_KERNELS=numpy`` is set (read at every call of
these functions; a Predictor reads it once, when it is loaded), the NumPy reference implementation
in ``modelserve._reference`` runs instead and a ``RuntimeWarning`` is issued once per process;
:func:`backend` says which one is active. Both give identical results, bit for bit, including the
order of exactly tied scores where torch sorts unstably (both follow libstdc++'s ``std::sort``).
The wrappers never modify their inputs, and refuse ``out`` buffers that overlap them.

Example::

    >>> import numpy as np, modelserve as ms
    >>> frame = np.zeros((720, 1280, 3), np.uint8)
    >>> tensor, info = ms.ops.letterbox(frame, (640, 640))
    >>> tensor.shape, info.resized_wh, info.pad_lt
    ((3, 640, 640), (640, 360), (0, 140))
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np

from . import _reference
from ._errors import InvalidInputError

try:
    from ._kernels import _letterbox as _k_letterbox
    from ._kernels import _nms as _k_nms
except ImportError as _exc:  # extension not built
    _k_letterbox = _k_nms = None  # type: ignore[assignment]
    _KERNELS_IMPORT_ERROR: str | None = str(_exc)
else:
    _KERNELS_IMPORT_ERROR = None

__all__ = [
    "LetterboxInfo",
    "letterbox_geometry",
    "letterbox",
    "yolo_postprocess",
    "nms",
    "batched_nms",
    "nms_rotated",
    "batched_nms_rotated",
    "probiou",
    "scale_boxes",
    "backend",
    "MAX_IMGSZ",
]

#: The largest tensor side (height or width) modelserve letterboxes into: ``imgsz``, a model's
#: input size and stride, and ``letterbox``'s ``new_shape`` beyond it are refused
#: (a 3 x 8192 x 8192 float32 tensor is already 805 MB).
MAX_IMGSZ = 8192

#: Environment variable that, set to ``numpy``, forces the NumPy reference (read at call time).
KERNELS_ENV = "MODELSERVE_KERNELS"
_warned_fallback = False


def backend() -> str:
    """The implementation the functions of this module use right now: ``"cython"`` or ``"numpy"``."""
    if _k_nms is None or os.environ.get(KERNELS_ENV, "").strip().lower() == "numpy":
        return "numpy"
    return "cython"


def _use_kernels() -> bool:
    global _warned_fallback
    if backend() == "cython":
        return True
    if not _warned_fallback:
        _warned_fallback = True
        if _k_nms is None:
            why = (
                f"the compiled kernels are not available ({_KERNELS_IMPORT_ERROR}); build them with "
                "`python setup.py build_ext --inplace` or `pip install .`"
            )
        else:
            why = f"{KERNELS_ENV}=numpy is set"
        warnings.warn(
            f"modelserve.ops is using the slow NumPy reference implementation: {why}",
            RuntimeWarning,
            stacklevel=3,
        )
    return False


@dataclass(frozen=True)
class LetterboxInfo:
    """Where a letterboxed image sits inside its tensor.

    ``source_hw``: the original image's (height, width); ``output_hw``: the tensor's (height, width);
    ``ratio``: the resize factor; ``resized_wh``: the resized image's (width, height);
    ``pad_lt``: the (left, top) padding in pixels.
    """

    source_hw: tuple[int, int]
    output_hw: tuple[int, int]
    ratio: float
    resized_wh: tuple[int, int]
    pad_lt: tuple[int, int]


def _is_int(value: object) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    """``value`` as ``(height, width)``: an int, or a list, tuple or 1-D array of one or two ints,
    each in ``1..MAX_IMGSZ``. Anything else (strings, bools, floats, NaN) is refused: ``"64"``
    must not become ``(6, 4)`` nor ``320.7`` silently ``320``."""
    if _is_int(value):
        pair = (int(value), int(value))  # type: ignore[arg-type]
    elif (isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)) \
            and len(value) in (1, 2) and all(_is_int(v) for v in value):
        pair = (int(value[0]), int(value[-1]))
    else:
        raise InvalidInputError(f"{what} must be an int or (height, width) of ints, got {value!r}")
    if pair[0] < 1 or pair[1] < 1:
        raise InvalidInputError(f"{what} must be positive, got {value!r}")
    if pair[0] > MAX_IMGSZ or pair[1] > MAX_IMGSZ:
        raise InvalidInputError(f"{what} must be at most {MAX_IMGSZ} (ops.MAX_IMGSZ) on each side, got {value!r}")
    return pair


def _hw(value: object, what: str) -> tuple[int, int]:
    """An image's ``(height, width)``: two ints >= 1 (no upper bound: images may be large)."""
    if not isinstance(value, (tuple, list, np.ndarray)) or len(value) != 2 or not all(_is_int(v) for v in value):
        raise InvalidInputError(f"{what} must be (height, width) of ints, got {value!r}")
    h, w = int(value[0]), int(value[1])
    if h < 1 or w < 1:
        raise InvalidInputError(f"{what} must be positive (a non-zero size), got height={h}, width={w}")
    return h, w


def _check_stride(stride: object) -> int:
    if not _is_int(stride) or not 1 <= int(stride) <= MAX_IMGSZ:  # type: ignore[call-overload]
        raise InvalidInputError(f"stride must be an int in 1..{MAX_IMGSZ}, got {stride!r}")
    return int(stride)  # type: ignore[call-overload]


def letterbox_geometry(
    source_hw: tuple[int, int],
    new_shape: int | Sequence[int] = (640, 640),
    *,
    auto: bool = False,
    stride: int = 32,
    scaleup: bool = True,
) -> LetterboxInfo:
    """Compute the letterbox layout of an image of ``source_hw`` without touching pixels.

    Follows Ultralytics' ``LetterBox``: ratio ``min(new_h / h, new_w / w)`` (capped at 1 when
    ``scaleup=False``), resized size rounded half-to-even, padding to ``new_shape`` (or, with
    ``auto=True``, only up to the next multiple of ``stride``) split around the image.
    """
    h, w = _hw(source_hw, "source_hw")
    nh, nw = _pair(new_shape, "new_shape")
    stride = _check_stride(stride)
    r = min(nh / h, nw / w)
    if not scaleup:
        r = min(r, 1.0)
    rw, rh = int(round(w * r)), int(round(h * r))
    # An extreme aspect ratio can round one side to zero pixels; keep at least one.
    rw, rh = max(rw, 1), max(rh, 1)
    dw, dh = nw - rw, nh - rh
    if auto:
        dw, dh = dw % stride, dh % stride
    dw2, dh2 = dw / 2, dh / 2
    top, bottom = int(round(dh2 - 0.1)), int(round(dh2 + 0.1))
    left, right = int(round(dw2 - 0.1)), int(round(dw2 + 0.1))
    return LetterboxInfo(
        source_hw=(h, w),
        output_hw=(rh + top + bottom, rw + left + right),
        ratio=r,
        resized_wh=(rw, rh),
        pad_lt=(left, top),
    )


_OUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint8))


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError(f"image must have shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise InvalidInputError(f"image must be uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"image must have a non-zero size, got {image.shape}")
    return np.ascontiguousarray(image)


def letterbox(
    image: np.ndarray,
    new_shape: int | Sequence[int] = (640, 640),
    *,
    auto: bool = False,
    stride: int = 32,
    scaleup: bool = True,
    pad_value: int = 114,
    bgr_to_rgb: bool = True,
    dtype: type | np.dtype = np.float32,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, LetterboxInfo]:
    """Letterbox an ``HxWx3`` uint8 image into a ``3 x h x w`` model input tensor.

    The result is bit-identical to Ultralytics' preprocessing: ``LetterBox`` (``cv2.resize`` with
    ``INTER_LINEAR`` when the size changes, ``copyMakeBorder`` with ``pad_value``), then BGR->RGB
    (when ``bgr_to_rgb``), HWC->CHW and ``float() / 255`` (float32, true division). The resize
    reproduces OpenCV's 8-bit fixed-point bilinear arithmetic (11-bit weights, horizontal pass into
    ints, vertical pass ``((b0*(r0>>4))>>16) + ((b1*(r1>>4))>>16) + 2) >> 2``, verified against
    cv2 4.x/5.0). ``dtype`` float16 gives ``float16(v / 255)``, equal to torch's ``half() / 255``,
    and is faster; uint8 gives the raw pixels. With ``out`` (C-contiguous ``(3, h, w)`` array of one
    of those dtypes, e.g. one slot of a preallocated batch) the tensor is written there and ``out``
    is returned. The kernel releases the GIL.

    Example::

        >>> frame = np.zeros((720, 1280, 3), np.uint8)  # BGR, as cv2 reads it
        >>> batch = np.empty((2, 3, 640, 640), np.float32)
        >>> _, info = letterbox(frame, 640, out=batch[0])
        >>> info.pad_lt
        (0, 140)
    """
    image = _check_image(image)
    info = letterbox_geometry(image.shape[:2], new_shape, auto=auto, stride=stride, scaleup=scaleup)
    if not _is_int(pad_value) or not 0 <= int(pad_value) <= 255:
        raise InvalidInputError(f"pad_value must be an int in 0..255, got {pad_value!r}")
    pad = int(pad_value)
    oh, ow = info.output_hw
    if out is None:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise InvalidInputError(f"dtype must be float32, float16 or uint8, got {dtype!r}") from None
        if dt not in _OUT_DTYPES:
            raise InvalidInputError(f"dtype must be float32, float16 or uint8, got {dt}")
        out = np.empty((3, oh, ow), dtype=dt)
    else:
        if not isinstance(out, np.ndarray) or out.dtype not in _OUT_DTYPES:
            raise InvalidInputError("out must be a float32, float16 or uint8 numpy array")
        if out.shape != (3, oh, ow):
            raise InvalidInputError(f"out must have shape {(3, oh, ow)}, got {out.shape}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise InvalidInputError("out must be C-contiguous and writeable")
        if np.may_share_memory(out, image):  # both contiguous here: this is exact, not a guess
            raise InvalidInputError("out must not overlap the image (it would be overwritten while it is read)")
    plan = _plan(image.shape[0], image.shape[1], oh, ow, info.resized_wh, info.pad_lt) if _use_kernels() else None
    _fill(info, plan, image, out, _OTYPES[out.dtype.char], pad, bool(bgr_to_rgb))
    return out, info


class _Geometry(NamedTuple):
    """Everything the Predictor needs for one source image size, computed once: the letterbox
    layout, the kernel's plan (``None`` with the NumPy backend) and the :func:`_scale_row` that maps
    boxes back."""

    layout: LetterboxInfo
    plan: Any
    scale: np.ndarray


def _geometry(source_hw: tuple[int, int], new_shape: tuple[int, int], auto: bool, stride: int,
              kernels: bool) -> _Geometry:
    layout = letterbox_geometry(source_hw, new_shape, auto=auto, stride=stride)
    (h, w), (oh, ow) = layout.source_hw, layout.output_hw
    plan = _plan(h, w, oh, ow, layout.resized_wh, layout.pad_lt) if kernels else None
    return _Geometry(layout, plan, _scale_row(layout.output_hw, layout.source_hw))


def _fill(layout: LetterboxInfo, plan: Any, image: np.ndarray, out: np.ndarray, otype: int, pad: int,
          bgr_to_rgb: bool) -> None:
    """Letterbox ``image`` (C-contiguous uint8, of the layout's source size) into ``out``, any
    C-contiguous array holding one ``(3, h, w)`` tensor of the ``otype`` dtype (0 float32,
    1 float16, 2 uint8), e.g. a ``(1, 3, h, w)`` batch or one slot of a bigger one: with the
    kernel's ``plan`` of that layout, or with the NumPy reference when ``plan`` is None."""
    if plan is None:
        out3 = out.reshape(3, *layout.output_hw)
        _reference.letterbox_into(image, out3, layout.resized_wh, layout.pad_lt, pad, bgr_to_rgb)
    elif plan.run(image, out, otype, pad, bgr_to_rgb) != 0:
        raise MemoryError("letterbox: could not allocate two row buffers")


#: uint8 -> output element, as Ultralytics computes it: float32(v) / 255 (true division; the
#: float16 table equals torch's ``uint8.half().div_(255)``), as bit patterns for the kernel.
_LUT32 = (np.arange(256, dtype=np.float32) / np.float32(255)).view(np.uint32)
_LUT16 = (np.arange(256, dtype=np.float64) / 255).astype(np.float16).view(np.uint16)
_OTYPES = {"f": 0, "e": 1, "B": 2}


def _check_div255() -> bool:
    """The kernel's division-free ``v / 255`` (``v * HI + v * LO``, float32) is exact for every
    uint8 ``v``; this is the exhaustive check (also run by the tests)."""
    v = np.arange(256, dtype=np.float32)
    hi, lo = np.float32(float.fromhex("0x1.01p-8")), np.float32(float.fromhex("0x1.010102p-24"))
    return bool(np.array_equal(v * hi + v * lo, v / np.float32(255)))


_NO_TAPS = (np.zeros(1, np.int32),) * 4


@functools.lru_cache(maxsize=64)
def _plan(h: int, w: int, oh: int, ow: int, resized_wh: tuple[int, int], pad_lt: tuple[int, int]) -> Any:
    """The kernel's precomputed letterbox of one geometry (cached): tap tables, packed weights."""
    rw, rh = resized_wh
    if (h, w) == (rh, rw):
        xt = yt = _NO_TAPS
    else:
        xt = _taps(w, rw, True)
        yt = _taps(h, rh, False)
    return _k_letterbox.Plan(h, w, oh, ow, rw, rh, pad_lt[0], pad_lt[1], *xt, *yt, _LUT32, _LUT16)


def _taps(src: int, dst: int, clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Resize tap tables for one axis: offsets (x: times 3 channels) and weights, as int32."""
    s0, s1, w0, w1 = _reference.linear_taps(src, dst, clamp)
    if clamp:
        s0, s1 = s0 * 3, s1 * 3
    i32 = functools.partial(np.ascontiguousarray, dtype=np.int32)
    return i32(s0), i32(s1), i32(w0), i32(w1)


def _check_unit(value: float, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{what} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be a number, got {value!r}") from None
    except OverflowError:
        raise InvalidInputError(f"{what} must be finite, got {value!r}") from None
    if not math.isfinite(v):
        raise InvalidInputError(f"{what} must be finite, got {value!r}")
    return v


def _check_count(value: int, what: str) -> int:
    """An int >= 0 (not a bool); values beyond ``sys.maxsize`` mean 'no limit' and are clamped."""
    if isinstance(value, bool):
        raise InvalidInputError(f"{what} must be an int >= 0, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise InvalidInputError(f"{what} must be an int >= 0, got {value!r}") from None
    if v < 0:
        raise InvalidInputError(f"{what} must be an int >= 0, got {value!r}")
    return min(v, sys.maxsize)


@functools.lru_cache(maxsize=16)
def _all_classes(nc: int) -> np.ndarray:
    allowed = np.ones(nc, dtype=np.uint8)
    allowed.flags.writeable = False
    return allowed


def _check_classes(classes: Sequence[int] | None) -> np.ndarray | None:
    if classes is None:
        return None
    try:
        arr = np.asarray(list(classes) if not isinstance(classes, (int, np.integer)) else [classes])
    except TypeError:
        raise InvalidInputError(f"classes must be a sequence of ints, got {classes!r}") from None
    if arr.size and (arr.dtype.kind not in "iu"):
        raise InvalidInputError(f"classes must be a sequence of ints, got {classes!r}")
    return arr.astype(np.int64)


def yolo_postprocess(
    raw: np.ndarray,
    *,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    max_nms: int = 30000,
) -> list[np.ndarray]:
    """Decode raw YOLO outputs and run class-aware NMS, like Ultralytics' ``non_max_suppression``.

    ``raw``: ``[B, 4+nc, N]`` (cx, cy, w, h, then one score per class; no objectness; float16 is
    converted to float32). A box is a candidate when its best class score is ``> conf`` (compared in
    float32, as torch does; a NaN score anywhere in its column excludes it, as ``amax`` does); its
    class is the first best one. Boxes are offset by ``class * 7680`` in float32 (unless
    ``agnostic``) and a kept box suppresses another when their IoU is ``> iou``
    (``torchvision.ops.nms``). At most ``max_nms`` candidates (highest first) enter NMS and
    ``max_det`` detections are kept per image. Returns one ``(n, 6)`` float32 array per image,
    ``[x1, y1, x2, y2, confidence, class]``, highest confidence first: bit-identical to
    Ultralytics' ``non_max_suppression`` (single label). The kernel releases the GIL.
    """
    if not isinstance(raw, np.ndarray):
        raise InvalidInputError(f"raw must be a numpy array, got {type(raw).__name__}")
    if raw.ndim != 3 or raw.shape[1] < 5:
        raise InvalidInputError(f"raw must have shape (B, 4+nc, N) with nc >= 1, got {raw.shape}")
    if raw.dtype.kind != "f":
        raise InvalidInputError(f"raw must be a float array, got {raw.dtype}")
    raw = np.ascontiguousarray(raw, dtype=np.float32)
    conf = _check_unit(conf, "conf")
    iou = _check_unit(iou, "iou")
    max_det = _check_count(max_det, "max_det")
    max_nms = _check_count(max_nms, "max_nms")
    class_arr = _check_classes(classes)
    if not _use_kernels():
        return _reference.yolo_postprocess(raw, conf, iou, max_det, class_arr, bool(agnostic), max_nms)
    batch, channels, n = raw.shape
    rows = max(1, min(max_det, n))
    det = np.empty((batch, rows, 6), dtype=np.float32)
    counts = np.empty(batch, dtype=np.int64)  # the kernel sets every entry
    rc = _k_nms.yolo_postprocess(
        raw, conf, iou, max_det, _allowed(class_arr, channels - 4), bool(agnostic), max_nms, _reference.MAX_WH,
        det, counts,
    )
    if rc != 0:
        raise MemoryError("yolo_postprocess: out of memory")
    return [det[b, : counts[b]].copy() for b in range(batch)]


def _allowed(class_arr: np.ndarray | None, nc: int) -> np.ndarray:
    """The kernel's per-class uint8 mask for ``classes`` (``None``: every class)."""
    if class_arr is None:
        return _all_classes(nc)
    allowed = np.zeros(nc, dtype=np.uint8)
    allowed[class_arr[(class_arr >= 0) & (class_arr < nc)]] = 1
    return allowed


def _yolo_detections(
    raw: np.ndarray, conf: float, iou: float, max_det: int, class_arr: np.ndarray | None, agnostic: bool,
    max_nms: int, scale: np.ndarray, kernels: bool,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The Predictor's post-processing: :func:`yolo_postprocess` on validated arguments (``raw``
    C-contiguous float32) with each image's boxes mapped back by its ``(B, 12)`` ``scale`` row,
    straight into ``(xyxy, confidence, class_id)`` arrays per image."""
    if not kernels:
        dets = _reference.yolo_postprocess(raw, conf, iou, max_det, class_arr, agnostic, max_nms)
        out = []
        for det, row in zip(dets, scale):
            out.append((_scale_with(det[:, :4].copy(), row), det[:, 4].copy(), det[:, 5].astype(np.int64)))
        return out
    allowed = _allowed(class_arr, raw.shape[1] - 4)
    return _k_nms.yolo_detections(raw, conf, iou, max_det, allowed, agnostic, max_nms, _reference.MAX_WH, scale)


def _yolo_select(
    raw: np.ndarray, nc: int, conf: float, iou: float, max_det: int, class_arr: np.ndarray | None, agnostic: bool,
    max_nms: int, kernels: bool,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`yolo_postprocess` on the first ``4 + nc`` channels of ``[B, C, N]`` validated outputs
    (C-contiguous float32, C >= 4 + nc): per image the kept ``(n, 6)`` rows in tensor pixels and
    the ``(n,)`` int64 anchors (columns of ``raw``) they came from, for heads with channels after
    the class scores (segmentation coefficients, keypoints)."""
    if not kernels:
        return _reference.yolo_select(raw, nc, conf, iou, max_det, class_arr, agnostic, max_nms)
    batch, _, n = raw.shape
    rows = max(1, min(max_det, n))
    det = np.empty((batch, rows, 6), dtype=np.float32)
    anchors = np.empty((batch, rows), dtype=np.int64)
    counts = np.zeros(batch, dtype=np.int64)
    rc = _k_nms.yolo_postprocess(raw, conf, iou, max_det, _allowed(class_arr, nc), agnostic, max_nms,
                                 _reference.MAX_WH, det, counts, nc, anchors)
    if rc != 0:
        raise MemoryError("yolo_postprocess: out of memory")
    return [(det[b, : counts[b]], anchors[b, : counts[b]]) for b in range(batch)]


def _check_boxes_scores(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InvalidInputError(f"boxes must be a 2D array with shape (N, 4), got {boxes.shape}")
    if scores.shape != (boxes.shape[0],):
        raise InvalidInputError(f"scores must have shape ({boxes.shape[0]},), got {scores.shape}")
    if boxes.dtype.kind not in "fiu" or scores.dtype.kind not in "fiu":
        raise InvalidInputError(f"boxes and scores must be numeric, got {boxes.dtype} and {scores.dtype}")
    return np.ascontiguousarray(boxes, np.float32), np.ascontiguousarray(scores, np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Non-maximum suppression with ``torchvision.ops.nms`` semantics.

    ``boxes``: ``(N, 4)`` x1, y1, x2, y2; ``scores``: ``(N,)``. Boxes are visited by descending score
    (ties keep input order); a box is dropped when its IoU with a kept box is ``> iou_threshold``.
    Returns the kept indices (int64) by descending score.
    """
    boxes, scores = _check_boxes_scores(boxes, scores)
    thr = _check_threshold(iou_threshold)
    if not _use_kernels():
        return _reference.nms(boxes, scores, thr)
    n = boxes.shape[0]
    keep = np.empty(max(n, 1), dtype=np.int64)
    count = _k_nms.nms(boxes, scores, thr, n, keep)
    if count < 0:
        raise MemoryError("nms: out of memory")
    return keep[:count].copy()


def batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Per-class NMS with ``torchvision.ops.batched_nms`` semantics: boxes of different classes never
    suppress each other. Returns kept indices (int64) by descending score."""
    boxes, scores = _check_boxes_scores(boxes, scores)
    class_ids = np.asarray(class_ids)
    if class_ids.shape != (boxes.shape[0],) or class_ids.dtype.kind not in "iu":
        raise InvalidInputError(
            f"class_ids must be an integer array with shape ({boxes.shape[0]},), got {class_ids.dtype} {class_ids.shape}"
        )
    thr = _check_threshold(iou_threshold)
    if not _use_kernels():
        return _reference.batched_nms(boxes, scores, class_ids, thr)
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(class_ids.min()), int(class_ids.max())
    if hi - lo < 4 * n + 1024:  # dense ids by offset: increasing, no sort needed
        dense = (class_ids - lo).astype(np.int32)
        ncls = hi - lo + 1
    else:
        uniq, inverse = np.unique(class_ids, return_inverse=True)
        dense = inverse.astype(np.int32).reshape(-1)
        ncls = uniq.size
    use_offsets = n <= _reference.BATCHED_NMS_VANILLA_ABOVE
    if use_offsets:  # torchvision's coordinate trick, in float32 exactly as it computes it
        with np.errstate(invalid="ignore", over="ignore"):
            offsets = class_ids.astype(np.float32) * (boxes.max() + np.float32(1))
    else:
        offsets = _ONE_ZERO
    keep = np.empty(n, dtype=np.int64)
    count = _k_nms.batched_nms(boxes, scores, offsets, dense, ncls, use_offsets, thr, n, keep)
    if count < 0:
        raise MemoryError("batched_nms: out of memory")
    return keep[:count].copy()


_ONE_ZERO = np.zeros(1, dtype=np.float32)


def _check_threshold(value: float) -> float:
    """Any real number, as torchvision takes it (NaN and thresholds >= 1 suppress nothing); an
    int beyond float's range is +-inf, which compares the same way."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"iou_threshold must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"iou_threshold must be a number, got {value!r}") from None
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def scale_boxes(boxes: np.ndarray, tensor_hw: tuple[int, int], source_hw: tuple[int, int]) -> np.ndarray:
    """Map ``(n, 4)`` xyxy boxes from letterboxed-tensor pixels back to source-image pixels, clipped.

    Same arithmetic as Ultralytics' ``scale_boxes`` (per-axis gain and padding derived from the two
    shapes, float32). Returns a new float32 array.
    """
    try:
        out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"boxes must be numbers shaped (n, 4), got an error: {exc}") from None
    return _scale_with(out, _scale_row(_hw(tensor_hw, "tensor_hw"), _hw(source_hw, "source_hw")))


def _scale_with(out: np.ndarray, row: np.ndarray) -> np.ndarray:
    """``scale_boxes`` in place on float32 ``(n, 4)`` boxes with a :func:`_scale_row`."""
    out -= row[0:4]
    out /= row[4:8]
    np.maximum(out, np.float32(0), out=out)
    np.minimum(out, row[8:12], out=out)
    return out


def _scale_row(tensor_hw: tuple[int, int], source_hw: tuple[int, int]) -> np.ndarray:
    """The (padding[4], gain[4], clip bound[4]) float32 row that maps boxes of a letterboxed
    ``tensor_hw`` tensor back to a ``source_hw`` image (cached per geometry; read-only)."""
    return _scale_row_cached((int(tensor_hw[0]), int(tensor_hw[1])), (int(source_hw[0]), int(source_hw[1])))


@functools.lru_cache(maxsize=256)
def _scale_row_cached(tensor_hw: tuple[int, int], source_hw: tuple[int, int]) -> np.ndarray:
    th, tw = tensor_hw
    sh, sw = source_hw
    gain = min(th / sh, tw / sw)
    new_h, new_w = max(round(sh * gain), 1), max(round(sw * gain), 1)  # as LetterBox rounded them
    gain_y, gain_x = new_h / sh, new_w / sw
    pad_x = round((tw - new_w) / 2 - 0.1)
    pad_y = round((th - new_h) / 2 - 0.1)
    row = np.array([pad_x, pad_y, pad_x, pad_y, gain_x, gain_y, gain_x, gain_y, sw, sh, sw, sh], np.float32)
    row.setflags(write=False)
    return row


# Rotated boxes (oriented-box models): Ultralytics' probabilistic IoU and its rotated fast-NMS.
from ._rotated import batched_nms_rotated, nms_rotated, probiou  # noqa: E402  (they use the checks above)
