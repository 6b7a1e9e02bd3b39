"""Letterbox (Ultralytics' ``LetterBox`` preprocessing, exactly) and its inverse for boxes.

:func:`letterbox_geometry` computes an image's layout in the model input; :func:`letterbox` fills a
tensor with it; :func:`scale_boxes` maps boxes back. The Predictor and the task heads use the
split forms computed once per image size: :func:`geometry` (layout, kernel plan and the
:func:`scale_row` of one size), :func:`fill` and :func:`scale_with`. The pixels are written by the
GIL-releasing kernel ``modelserve._kernels._letterbox``, or by :mod:`modelserve._numpy_ops` when
:func:`modelserve._backend.use_kernels` says so; both are bit-identical to OpenCV's resize.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np

from . import _checks, _numpy_ops
from ._backend import use_kernels
from ._errors import InvalidInputError

try:
    from ._kernels import _letterbox as _k_letterbox
except ImportError:  # extension not built
    _k_letterbox = None  # type: ignore[assignment]

__all__ = [
    "LetterboxInfo", "letterbox_geometry", "letterbox", "scale_boxes", "Geometry", "geometry", "fill", "kernel_plan",
    "scale_row", "scale_with", "OTYPES", "PAD_VALUE",
]

#: Ultralytics' letterbox padding grey.
PAD_VALUE = 114


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
    h, w = _checks.image_hw(source_hw, "source_hw")
    nh, nw = _checks.pair(new_shape, "new_shape")
    stride = _checks.stride(stride)
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
    pad_value: int = PAD_VALUE,
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
    if not _checks.is_int(pad_value) or not 0 <= int(pad_value) <= 255:
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
    kplan = kernel_plan(image.shape[0], image.shape[1], oh, ow, info.resized_wh, info.pad_lt) if use_kernels() else None
    fill(info, kplan, image, out, OTYPES[out.dtype.char], pad, bool(bgr_to_rgb))
    return out, info


class Geometry(NamedTuple):
    """Everything the Predictor needs for one source image size, computed once: the letterbox
    layout, the kernel's plan (``None`` with the NumPy backend) and the :func:`scale_row` that maps
    boxes back."""

    layout: LetterboxInfo
    plan: Any
    scale: np.ndarray


def geometry(source_hw: tuple[int, int], new_shape: tuple[int, int], auto: bool, stride: int,
             kernels: bool, pixels_hw: tuple[int, int] | None = None) -> Geometry:
    """The :class:`Geometry` of one source size (``kernels``: whether to build the kernel's plan).
    ``pixels_hw``: the size of the pixels actually letterboxed when they are a scaled decode of a
    ``source_hw`` image: the layout and the box scaling stay ``source_hw``'s, the plan resizes
    from ``pixels_hw``."""
    layout = letterbox_geometry(source_hw, new_shape, auto=auto, stride=stride)
    (h, w), (oh, ow) = pixels_hw or layout.source_hw, layout.output_hw
    plan = kernel_plan(h, w, oh, ow, layout.resized_wh, layout.pad_lt) if kernels else None
    return Geometry(layout, plan, scale_row(layout.output_hw, layout.source_hw))


def fill(layout: LetterboxInfo, plan: Any, image: np.ndarray, out: np.ndarray, otype: int, pad: int,
         bgr_to_rgb: bool) -> None:
    """Letterbox ``image`` (C-contiguous uint8, of the layout's source size) into ``out``, any
    C-contiguous array holding one ``(3, h, w)`` tensor of the ``otype`` dtype (0 float32,
    1 float16, 2 uint8), e.g. a ``(1, 3, h, w)`` batch or one slot of a bigger one: with the
    kernel's ``plan`` of that layout, or with the NumPy reference when ``plan`` is None."""
    if plan is None:
        out3 = out.reshape(3, *layout.output_hw)
        _numpy_ops.letterbox_into(image, out3, layout.resized_wh, layout.pad_lt, pad, bgr_to_rgb)
    elif plan.run(image, out, otype, pad, bgr_to_rgb) != 0:
        raise MemoryError("letterbox: could not allocate two row buffers")


#: uint8 -> output element, as Ultralytics computes it: float32(v) / 255 (true division; the
#: float16 table equals torch's ``uint8.half().div_(255)``), as bit patterns for the kernel.
_LUT32 = (np.arange(256, dtype=np.float32) / np.float32(255)).view(np.uint32)
_LUT16 = (np.arange(256, dtype=np.float64) / 255).astype(np.float16).view(np.uint16)
OTYPES = {"f": 0, "e": 1, "B": 2}


def _check_div255() -> bool:
    """The kernel's division-free ``v / 255`` (``v * HI + v * LO``, float32) is exact for every
    uint8 ``v``; this is the exhaustive check (also run by the tests)."""
    v = np.arange(256, dtype=np.float32)
    hi, lo = np.float32(float.fromhex("0x1.01p-8")), np.float32(float.fromhex("0x1.010102p-24"))
    return bool(np.array_equal(v * hi + v * lo, v / np.float32(255)))


_NO_TAPS = (np.zeros(1, np.int32),) * 4


@functools.lru_cache(maxsize=64)
def kernel_plan(h: int, w: int, oh: int, ow: int, resized_wh: tuple[int, int], pad_lt: tuple[int, int]) -> Any:
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
    s0, s1, w0, w1 = _numpy_ops.linear_taps(src, dst, clamp)
    if clamp:
        s0, s1 = s0 * 3, s1 * 3
    i32 = functools.partial(np.ascontiguousarray, dtype=np.int32)
    return i32(s0), i32(s1), i32(w0), i32(w1)


def scale_boxes(boxes: np.ndarray, tensor_hw: tuple[int, int], source_hw: tuple[int, int]) -> np.ndarray:
    """Map ``(n, 4)`` xyxy boxes from letterboxed-tensor pixels back to source-image pixels, clipped.

    Same arithmetic as Ultralytics' ``scale_boxes`` (per-axis gain and padding derived from the two
    shapes, float32). Returns a new float32 array.
    """
    try:
        out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"boxes must be numbers shaped (n, 4), got an error: {exc}") from None
    return scale_with(out, scale_row(_checks.image_hw(tensor_hw, "tensor_hw"), _checks.image_hw(source_hw, "source_hw")))


def scale_with(out: np.ndarray, row: np.ndarray) -> np.ndarray:
    """``scale_boxes`` in place on float32 ``(n, 4)`` boxes with a :func:`scale_row`."""
    out -= row[0:4]
    out /= row[4:8]
    np.maximum(out, np.float32(0), out=out)
    np.minimum(out, row[8:12], out=out)
    return out


def scale_row(tensor_hw: tuple[int, int], source_hw: tuple[int, int]) -> np.ndarray:
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


