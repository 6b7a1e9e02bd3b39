"""Segmentation masks as Ultralytics' ``retina_masks=True`` path computes them, per box crop.

Ultralytics (8.4, ``ops.process_mask_native``): mask logits ``coeffs @ protos`` at prototype
resolution; a bilinear upsample by ``f`` (1, 2 or 4: the smallest that puts the letterbox padding
on whole pixels); ``scale_masks``: crop the padding and bilinear-resize (``align_corners=False``)
to the original image; ``crop_mask``: zero outside each box (columns ``x1 <= c < x2``, rows
``y1 <= r < y2``, compared in float32); ``> 0``. Here only the pixels inside each box are
computed (work and memory follow the boxes' areas, not ``n * H * W``), with the same float32
arithmetic in the same order (width pass, then height pass, as torch's bilinear kernel sums).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["MaskCrops", "process_masks"]

_F = np.float32


class MaskCrops:
    """Per detection, its bool mask inside its box (``crops[i]``, top-left at ``offsets[i]``)."""

    def __init__(self, crops: list[np.ndarray], offsets: np.ndarray, orig_hw: tuple[int, int]) -> None:
        self.crops = crops
        self.offsets = offsets  # (n, 2) int64 x0, y0
        self.orig_hw = orig_hw

    def __len__(self) -> int:
        return len(self.crops)

    def full(self) -> np.ndarray:
        """``(n, H, W)`` bool masks (``n * H * W`` bytes)."""
        h, w = self.orig_hw
        out = np.zeros((len(self.crops), h, w), dtype=bool)
        for i, (crop, (x0, y0)) in enumerate(zip(self.crops, self.offsets)):
            out[i, y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        return out

    def crop(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        x0, y0 = self.offsets[i]
        return self.crops[i], (int(x0), int(y0))

    def area(self) -> np.ndarray:
        return np.array([int(c.sum()) for c in self.crops], dtype=np.int64)

    def nonempty(self) -> np.ndarray:
        return np.array([bool(c.any()) for c in self.crops], dtype=bool)

    def select(self, idx: Any) -> "MaskCrops":
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        return MaskCrops([self.crops[i] for i in idx], self.offsets[idx], self.orig_hw)


def _taps(in_size: int, out_idx: np.ndarray, scale: np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torch's ``align_corners=False`` linear source indices and weights for output indices."""
    src = (out_idx.astype(_F) + _F(0.5)) * scale - _F(0.5)
    src = np.maximum(src, _F(0))
    i0 = src.astype(np.int64)
    i0 = np.minimum(i0, in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    l1 = (src - i0.astype(_F)).astype(_F)
    l0 = (_F(1) - l1).astype(_F)
    return i0, i1, l0, l1


def _bilinear(img: np.ndarray, ys: tuple, xs: tuple) -> np.ndarray:
    """Rows ``ys`` and columns ``xs`` (tap tuples) of a bilinear resize of ``img`` (float32 2-D):
    ``h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)``."""
    y0, y1, h0, h1 = ys
    x0, x1, w0, w1 = xs
    top = w0 * img[y0][:, x0] + w1 * img[y0][:, x1]
    bottom = w0 * img[y1][:, x0] + w1 * img[y1][:, x1]
    return h0[:, None] * top + h1[:, None] * bottom


def process_masks(coeffs: np.ndarray, protos: np.ndarray, boxes_xyxy: np.ndarray, tensor_hw: tuple[int, int],
                  orig_hw: tuple[int, int]) -> MaskCrops:
    """Masks of ``n`` detections: ``coeffs`` ``(n, c)``, ``protos`` ``(c, mh, mw)`` float32,
    ``boxes_xyxy`` ``(n, 4)`` in original-image pixels. ``tensor_hw`` is unused by Ultralytics'
    formula (it derives the padding from the prototype size) and kept for the caller's clarity."""
    h, w = int(orig_hw[0]), int(orig_hw[1])
    c, mh, mw = protos.shape
    n = len(coeffs)
    if n == 0:
        return MaskCrops([], np.zeros((0, 2), np.int64), (h, w))
    logits = (coeffs.astype(_F) @ protos.reshape(c, -1).astype(_F)).reshape(n, mh, mw)
    gain = min(4 * mh / h, 4 * mw / w)
    pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
    f = 4 // math.gcd(4, pad | pad // 2)
    uh, uw = f * mh, f * mw  # the upsampled prototype size
    if (uh, uw) == (h, w):
        crop_t = crop_l = 0
        bh, bw = h, w
        direct = True
    else:
        g = min(uh / h, uw / w)
        pad_w, pad_h = (uw - max(round(w * g), 1)) / 2, (uh - max(round(h * g), 1)) / 2
        crop_t, crop_l = round(pad_h - 0.1), round(pad_w - 0.1)
        bh = max(round(h * g), 1)
        bw = max(round(w * g), 1)
        bh = min(crop_t + bh, uh) - crop_t
        bw = min(crop_l + bw, uw) - crop_l
        direct = False
    s1 = _F(1.0 / f)
    s2y, s2x = _F(_F(bh) / _F(h)), _F(_F(bw) / _F(w))
    box = np.asarray(boxes_xyxy, dtype=_F)
    with np.errstate(invalid="ignore"):
        lo = np.ceil(box[:, :2])
        hi = np.ceil(box[:, 2:])
    crops: list[np.ndarray] = []
    offsets = np.zeros((n, 2), np.int64)
    for i in range(n):
        x0 = int(np.clip(np.nan_to_num(lo[i, 0], nan=w), 0, w))
        y0 = int(np.clip(np.nan_to_num(lo[i, 1], nan=h), 0, h))
        x1 = int(np.clip(np.nan_to_num(hi[i, 0], nan=0), 0, w))
        y1 = int(np.clip(np.nan_to_num(hi[i, 1], nan=0), 0, h))
        offsets[i] = (x0, y0)
        if x1 <= x0 or y1 <= y0:
            crops.append(np.zeros((0, 0), bool))
            continue
        ys, xs = np.arange(y0, y1), np.arange(x0, x1)
        if direct and f == 1:
            vals = logits[i][y0:y1, x0:x1]
        else:
            if direct:  # the upsampled prototypes are the image: no second resize
                ry, rx = ys, xs
            else:
                ty = _taps(bh, ys, s2y)
                tx = _taps(bw, xs, s2x)
                ry = np.unique(np.concatenate([ty[0], ty[1]])) + crop_t
                rx = np.unique(np.concatenate([tx[0], tx[1]])) + crop_l
            if f > 1:
                up = _bilinear(logits[i], _taps(mh, ry, s1), _taps(mw, rx, s1))
            else:
                up = logits[i][ry][:, rx]
            if direct:
                vals = up
            else:
                # map the needed rows/columns of the cropped intermediate into `up`'s compact index
                iy = np.searchsorted(ry, np.arange(bh) + crop_t)
                ix = np.searchsorted(rx, np.arange(bw) + crop_l)
                ty = (iy[np.minimum(ty[0], bh - 1)], iy[np.minimum(ty[1], bh - 1)], ty[2], ty[3])
                tx = (ix[np.minimum(tx[0], bw - 1)], ix[np.minimum(tx[1], bw - 1)], tx[2], tx[3])
                vals = _bilinear(up, ty, tx)
        crops.append(np.ascontiguousarray(vals > 0))
    return MaskCrops(crops, offsets, (h, w))
