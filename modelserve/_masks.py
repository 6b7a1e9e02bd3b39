"""Segmentation masks exactly as Ultralytics 8.4.190 computes them with ``retina_masks=True``,
computed only inside each detection's box.

Ultralytics (``SegmentationPredictor.construct_result``): boxes are first scaled to the original
image (``ops.scale_boxes``), then ``ops.process_mask_native(proto, coeffs, boxes, orig_hw)``:

1. ``logits = coeffs @ protos`` (float32, ``(n, mh * mw)``);
2. an upsample by ``f = 4 // gcd(4, pad | pad // 2)`` with ``pad = (4mh - max(round(H g), 1)) |
   (4mw - max(round(W g), 1))``, ``g = min(4mh / H, 4mw / W)`` (1, 2 or 4: the smallest that puts
   the letterbox padding on whole pixels), ``F.interpolate(scale_factor=f, mode="bilinear")``,
   whose source index uses ``scale = 1 / f``;
3. ``scale_masks``: with ``g = min(uh / H, uw / W)`` at the upsampled size ``(uh, uw)``, crop
   rows ``top = round(pad_h - 0.1) : top + max(round(H g), 1)`` (and columns likewise, Python
   slice clamping), then ``F.interpolate(size=(H, W), mode="bilinear", align_corners=False)``
   (``scale = float(in) / out`` in float32, ``src = max(scale * (dst + 0.5) - 0.5, 0)``,
   ``i0 = min(floor(src), in - 1)``, ``i1 = i0 + (i0 < in - 1)``, ``l1 = clamp(src - i0, 0, 1)``,
   ``l0 = 1 - l1``, value ``(x00 l0w + x01 l1w) l0h + (x10 l0w + x11 l1w) l1h`` in float32); when
   ``(uh, uw) == (H, W)`` the upsampled logits are used as they are;
4. ``> 0``, then ``crop_mask``: columns ``c`` with ``x1 <= c < x2`` and rows ``r`` with
   ``y1 <= r < y2`` (compared in float32), i.e. the integer range ``ceil(x1) .. ceil(x2) - 1``;
   NaN coordinates keep nothing.

The predictor then drops detections whose mask is empty (``masks.amax((-2, -1)) > 0``):
:meth:`MaskCrops.nonempty` gives that selection.

Here each mask is computed only on the pixels of its box crop, from only the prototype pixels
that crop needs: work and memory follow the boxes' areas, never ``n * H * W``. The bilinear
arithmetic is torch's, bit for bit; the logits are accumulated in double (torch's sgemm sums in
float32 in an unspecified order), so a pixel whose interpolated logit is within a few ulps of 0
may differ. ``tensor_hw`` must be ``4 * (mh, mw)``: Ultralytics derives the padding from the
prototype size, not from the tensor.

The Cython kernel (``modelserve._kernels._masks``) runs without the GIL; the NumPy reference below
runs when :func:`modelserve.ops.backend` reports ``"numpy"``. Both give identical masks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _checks
from ._backend import use_kernels
from ._errors import InvalidInputError
from ._mask_crops import MaskCrops

try:
    from ._kernels import _masks as _k_masks
except ImportError:  # extension not built
    _k_masks = None  # type: ignore[assignment]

__all__ = ["MaskCrops", "process_masks", "mask_geometry"]

_F = np.float32
_EMPTY = np.zeros((0, 0), dtype=bool)
_EMPTY.flags.writeable = False


# ---------------------------------------------------------------------------------------------
# geometry


def mask_geometry(proto_hw: tuple[int, int], orig_hw: tuple[int, int]) -> dict[str, Any]:
    """Ultralytics' ``process_mask_native`` / ``scale_masks`` geometry (Python ``round``, as
    there): the upsample factor ``f``, the upsampled size ``(uh, uw)``, the crop of its padding
    ``top, left, bh, bw`` and ``direct`` (the upsampled logits are already the image size)."""
    mh, mw = proto_hw
    h, w = orig_hw
    gain = min(4 * mh / h, 4 * mw / w)
    pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
    f = 4 // math.gcd(4, pad | pad // 2)
    uh, uw = f * mh, f * mw
    if (uh, uw) == (h, w):
        return dict(f=f, uh=uh, uw=uw, top=0, left=0, bh=h, bw=w, direct=True)
    g = min(uh / h, uw / w)
    pad_w, pad_h = (uw - max(round(w * g), 1)) / 2, (uh - max(round(h * g), 1)) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    bottom, right = top + max(round(h * g), 1), left + max(round(w * g), 1)
    # masks[..., top:bottom, left:right]: Python slice clamping (top, left >= 0 here)
    bh = len(range(uh)[top:bottom])
    bw = len(range(uw)[left:right])
    return dict(f=f, uh=uh, uw=uw, top=top, left=left, bh=bh, bw=bw, direct=False)


def _taps(in_size: int, out_size: int, scale: np.float32, offset: int = 0) -> tuple[np.ndarray, ...]:
    """torch's ``align_corners=False`` linear taps for every output index: ``i0, i1`` (int32,
    plus ``offset``) and weights ``l0, l1`` (float32), as ``compute_source_index_and_lambda``."""
    dst = np.arange(out_size, dtype=_F)
    if in_size == out_size:
        i0 = np.arange(out_size, dtype=np.int64)
        i1 = i0.copy()
        l0 = np.ones(out_size, _F)
        l1 = np.zeros(out_size, _F)
    else:
        src = scale * (dst + _F(0.5)) - _F(0.5)
        src = np.where(src < 0, _F(0), src).astype(_F)
        i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        l1 = np.minimum(np.maximum(src - i0.astype(_F), _F(0)), _F(1)).astype(_F)
        i1 = i0 + (i0 < in_size - 1)
        l0 = (_F(1) - l1).astype(_F)
    return ((i0 + offset).astype(np.int32), (i1 + offset).astype(np.int32), l0, l1)


def _box_bounds(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """``(n, 4)`` int64 ``x0, y0, x1, y1`` pixel ranges that ``crop_mask`` keeps (``x1 <= x0``
    or ``y1 <= y0``: nothing)."""
    with np.errstate(invalid="ignore"):
        lo = np.ceil(boxes[:, :2].astype(np.float64))
        hi = np.ceil(boxes[:, 2:].astype(np.float64))
    nan = np.isnan(boxes).any(axis=1)
    lim = np.array([w, h], np.float64)
    lo = np.clip(np.nan_to_num(lo, nan=0.0), 0, lim)
    hi = np.clip(np.nan_to_num(hi, nan=0.0), 0, lim)
    b = np.concatenate([lo, hi], axis=1).astype(np.int64)
    b[nan] = 0
    empty = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    b[empty] = 0
    return b


class _Plan:
    """Everything that depends only on ``(proto_hw, orig_hw)``: geometry and tap tables."""

    __slots__ = ("geo", "t1y", "t1x", "t2y", "t2x")

    def __init__(self, proto_hw: tuple[int, int], orig_hw: tuple[int, int]) -> None:
        mh, mw = proto_hw
        h, w = orig_hw
        geo = mask_geometry(proto_hw, orig_hw)
        self.geo = geo
        f = geo["f"]
        s1 = _F(1.0 / f)  # torch: static_cast<float>(1.0 / scale_factor)
        self.t1y = _taps(mh, geo["uh"], s1)
        self.t1x = _taps(mw, geo["uw"], s1)
        if geo["direct"]:
            self.t2y = _taps(h, h, _F(1))
            self.t2x = _taps(w, w, _F(1))
        else:
            bh, bw = geo["bh"], geo["bw"]
            self.t2y = _taps(bh, h, _F(_F(bh) / _F(h)), geo["top"])
            self.t2x = _taps(bw, w, _F(_F(bw) / _F(w)), geo["left"])


_PLANS: dict[tuple[int, int, int, int], _Plan] = {}


def _plan(proto_hw: tuple[int, int], orig_hw: tuple[int, int]) -> _Plan:
    key = (*proto_hw, *orig_hw)
    p = _PLANS.get(key)
    if p is None:
        if len(_PLANS) > 64:
            _PLANS.clear()
        p = _PLANS[key] = _Plan(proto_hw, orig_hw)
    return p


# ---------------------------------------------------------------------------------------------
# NumPy reference


def _logits_rect(coef: np.ndarray, protos: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """``coef @ protos[:, r0:r1, c0:c1]`` accumulated in double, one channel after another (as the
    kernel), rounded to float32."""
    acc = np.zeros((r1 - r0, c1 - c0), np.float64)
    for k in range(protos.shape[0]):
        acc += np.float64(coef[k]) * protos[k, r0:r1, c0:c1].astype(np.float64)  # products in double, as C
    return acc.astype(_F)


def _resample(src: np.ndarray, base_r: int, base_c: int, ty: tuple, tx: tuple) -> np.ndarray:
    """Bilinear rows ``ty`` x columns ``tx`` (taps into the full image; ``src`` holds its pixels
    from ``(base_r, base_c)``): ``(a l0w + b l1w) l0h + (c l0w + d l1w) l1h`` in float32."""
    y0, y1, h0, h1 = ty
    x0, x1, w0, w1 = tx
    rows = np.arange(min(y0.min(), y1.min()), max(y0.max(), y1.max()) + 1)
    hz = src[rows - base_r][:, x0 - base_c] * w0 + src[rows - base_r][:, x1 - base_c] * w1  # width pass
    r0 = rows[0]
    return hz[y0 - r0] * h0[:, None] + hz[y1 - r0] * h1[:, None]


def _numpy_assemble(coeffs: np.ndarray, protos: np.ndarray, bounds: np.ndarray, plan: _Plan) -> list[np.ndarray]:
    geo = plan.geo
    f, direct = geo["f"], geo["direct"]
    out = []
    for i, (x0, y0, x1, y1) in enumerate(bounds):
        if x1 <= x0 or y1 <= y0:
            out.append(_EMPTY)
            continue
        # rows/columns of the upsampled logits this crop needs
        if direct:
            ur0, ur1, uc0, uc1 = y0, y1 - 1, x0, x1 - 1
        else:
            ur0, ur1 = int(plan.t2y[0][y0]), int(plan.t2y[1][y1 - 1])
            uc0, uc1 = int(plan.t2x[0][x0]), int(plan.t2x[1][x1 - 1])
        if f > 1:
            pr0, pr1 = int(plan.t1y[0][ur0]), int(plan.t1y[1][ur1])
            pc0, pc1 = int(plan.t1x[0][uc0]), int(plan.t1x[1][uc1])
        else:
            pr0, pr1, pc0, pc1 = ur0, ur1, uc0, uc1
        lg = _logits_rect(coeffs[i], protos, pr0, pr1 + 1, pc0, pc1 + 1)
        if f > 1:
            ty = tuple(t[ur0 : ur1 + 1] for t in plan.t1y)
            tx = tuple(t[uc0 : uc1 + 1] for t in plan.t1x)
            up = _resample(lg, pr0, pc0, ty, tx)
        else:
            up = lg
        if direct:
            vals = up
        else:
            ty = tuple(t[y0:y1] for t in plan.t2y)
            tx = tuple(t[x0:x1] for t in plan.t2x)
            vals = _resample(up, ur0, uc0, ty, tx)
        crop = np.ascontiguousarray(vals > 0)
        crop.flags.writeable = False
        out.append(crop)
    return out


# ---------------------------------------------------------------------------------------------
# public entry point


def _f32_array(a: Any, what: str, ndim: int) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise InvalidInputError(f"{what} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise InvalidInputError(f"{what} must be float32, got {a.dtype}")
    if a.ndim != ndim:
        raise InvalidInputError(f"{what} must be {ndim}-D, got shape {a.shape}")
    return np.ascontiguousarray(a)


def process_masks(coeffs: np.ndarray, protos: np.ndarray, boxes_xyxy: np.ndarray, tensor_hw: tuple[int, int],
                  orig_hw: tuple[int, int]) -> MaskCrops:
    """Ultralytics' ``retina_masks=True`` masks of ``n`` detections, per box crop.

    ``coeffs`` ``(n, c)`` float32 mask coefficients, ``protos`` ``(c, mh, mw)`` float32 prototypes,
    ``boxes_xyxy`` ``(n, 4)`` float32 boxes in original-image pixels (already scaled back from the
    letterbox, as Ultralytics does before ``process_mask_native``), ``tensor_hw`` the letterboxed
    input's ``(h, w)`` (must be ``(4 mh, 4 mw)``), ``orig_hw`` the original image's ``(H, W)``.
    Never modifies its inputs. Raises :class:`~modelserve.InvalidInputError` on bad shapes/dtypes.
    """
    coeffs = _f32_array(coeffs, "coeffs", 2)
    protos = _f32_array(protos, "protos", 3)
    boxes = _f32_array(boxes_xyxy, "boxes_xyxy", 2)
    th, tw = _checks.image_hw(tensor_hw, "tensor_hw")
    h, w = _checks.image_hw(orig_hw, "orig_hw")
    n, c = coeffs.shape
    pc, mh, mw = protos.shape
    if pc != c:
        raise InvalidInputError(f"coeffs has {c} mask coefficients but protos has {pc} prototypes")
    if c < 1 or mh < 1 or mw < 1:
        raise InvalidInputError(f"protos must be non-empty, got shape {protos.shape}")
    if boxes.shape != (n, 4):
        raise InvalidInputError(f"boxes_xyxy must have shape ({n}, 4), got {boxes.shape}")
    if (th, tw) != (4 * mh, 4 * mw):
        raise InvalidInputError(
            f"tensor_hw {(th, tw)} does not match the prototypes {mh}x{mw}: Ultralytics' masks need a stride-4 "
            f"prototype grid, tensor_hw == (4 * mh, 4 * mw) == {(4 * mh, 4 * mw)}")
    if h * w > 1 << 31:
        raise InvalidInputError(f"orig_hw {(h, w)} is too large for masks")
    if n == 0:
        return MaskCrops._trusted((), np.zeros((0, 2), np.int64), (h, w))
    plan = _plan((mh, mw), (h, w))
    bounds = _box_bounds(boxes, h, w)
    offsets = np.ascontiguousarray(bounds[:, :2])
    if use_kernels() and _k_masks is not None:
        geo = plan.geo
        areas = (bounds[:, 2] - bounds[:, 0]) * (bounds[:, 3] - bounds[:, 1])
        starts = np.zeros(n + 1, np.int64)
        np.cumsum(areas, out=starts[1:])
        buf = np.empty(int(starts[-1]), dtype=np.uint8)
        rc = _k_masks.assemble(coeffs, protos, bounds, starts, buf, geo["f"], bool(geo["direct"]),
                               *plan.t1y, *plan.t1x, *plan.t2y, *plan.t2x)
        if rc != 0:
            raise MemoryError("modelserve masks kernel: out of memory")
        flat = buf.view(bool)
        flat.flags.writeable = False
        crops = tuple(
            flat[starts[i] : starts[i + 1]].reshape(y1 - y0, x1 - x0) if areas[i] else _EMPTY
            for i, (x0, y0, x1, y1) in enumerate(bounds)
        )
    else:
        crops = tuple(_numpy_assemble(coeffs, protos, bounds, plan))
    return MaskCrops._trusted(crops, offsets, (h, w))
