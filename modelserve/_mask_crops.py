"""Segmentation masks held per box crop: small where full-image masks would be huge.

300 full-resolution masks of a 4K image are 2.5 GB; the same masks cropped to their boxes are
usually a few MB. :class:`MaskCrops` keeps each detection's mask as a bool crop plus its offset
and builds full masks (``full``, ``mask``), areas and polygons only when asked.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterator

import numpy as np

from ._errors import InvalidInputError

__all__ = ["MaskCrops"]


class MaskCrops:
    """Per detection, a bool mask of its box crop and the crop's ``(x0, y0)`` top-left offset in
    an ``orig_hw`` image. Immutable (the crop arrays are read-only); indexing with an int gives
    ``(crop, (x0, y0))``, with a slice, an index array or a bool mask a new :class:`MaskCrops`."""

    __slots__ = ("_crops", "_offsets", "_orig_hw")
    _crops: tuple[np.ndarray, ...]
    _offsets: np.ndarray
    _orig_hw: tuple[int, int]

    def __init__(self, crops: Any, offsets: Any, orig_hw: tuple[int, int]) -> None:
        crops = tuple(crops)
        offs = np.array(offsets, dtype=np.int64).reshape(-1, 2)
        if len(offs) != len(crops):
            raise InvalidInputError(f"MaskCrops: {len(crops)} crops but {len(offs)} offsets")
        h, w = int(orig_hw[0]), int(orig_hw[1])
        for c, (x0, y0) in zip(crops, offs):
            if not isinstance(c, np.ndarray) or c.dtype != bool or c.ndim != 2:
                raise InvalidInputError("MaskCrops: every crop must be a 2-D bool array")
            if c.size and (x0 < 0 or y0 < 0 or x0 + c.shape[1] > w or y0 + c.shape[0] > h):
                raise InvalidInputError(f"MaskCrops: crop at {(x0, y0)} of shape {c.shape} is outside {h}x{w}")
            if c.flags.writeable:
                c.flags.writeable = False
        offs.flags.writeable = False
        object.__setattr__(self, "_crops", crops)
        object.__setattr__(self, "_offsets", offs)
        object.__setattr__(self, "_orig_hw", (h, w))

    @classmethod
    def _trusted(cls, crops: tuple, offsets: np.ndarray, orig_hw: tuple[int, int]) -> "MaskCrops":
        self = object.__new__(cls)
        offsets.flags.writeable = False
        object.__setattr__(self, "_crops", crops)
        object.__setattr__(self, "_offsets", offsets)
        object.__setattr__(self, "_orig_hw", orig_hw)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("MaskCrops is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("MaskCrops is immutable")

    def __reduce__(self) -> Any:  # pickle and deepcopy through __init__ (the slots cannot be set)
        return (MaskCrops, (list(self._crops), self._offsets, self._orig_hw))

    @property
    def crops(self) -> tuple[np.ndarray, ...]:
        """The bool crop of each detection (``(0, 0)`` when its box holds no pixel)."""
        return self._crops

    @property
    def offsets(self) -> np.ndarray:
        """``(n, 2)`` int64 ``(x0, y0)`` of each crop's top-left pixel (read-only)."""
        return self._offsets

    @property
    def orig_hw(self) -> tuple[int, int]:
        return self._orig_hw

    def __len__(self) -> int:
        return len(self._crops)

    def __iter__(self) -> Iterator[tuple[np.ndarray, tuple[int, int]]]:
        for i in range(len(self._crops)):
            yield self[i]

    def __repr__(self) -> str:
        return f"MaskCrops(n={len(self)}, orig_hw={self._orig_hw})"

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, numbers.Integral) and not isinstance(key, (bool, np.bool_)):
            i = int(key)
            n = len(self._crops)
            if not -n <= i < n:
                raise IndexError(f"MaskCrops index {i} out of range for {n} masks")
            x0, y0 = self._offsets[i]
            return self._crops[i], (int(x0), int(y0))
        if isinstance(key, slice):
            return self.select(np.arange(len(self._crops))[key])
        return self.select(key)

    def select(self, idx: Any) -> "MaskCrops":
        """The masks at ``idx`` (int indices, negative allowed, or a bool mask of length ``n``),
        in that order."""
        n = len(self._crops)
        arr = np.asarray(idx)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise InvalidInputError(f"MaskCrops.select: bool mask of shape {arr.shape}, expected ({n},)")
            arr = np.flatnonzero(arr)
        elif arr.size == 0:
            arr = np.zeros(0, np.int64)
        elif not np.issubdtype(arr.dtype, np.integer):
            raise InvalidInputError(f"MaskCrops.select: indices must be integers or a bool mask, got {arr.dtype}")
        arr = arr.astype(np.int64).reshape(-1)
        if arr.size and (arr.min() < -n or arr.max() >= n):
            raise IndexError(f"MaskCrops.select: index out of range for {n} masks")
        arr = np.where(arr < 0, arr + n, arr)
        return MaskCrops._trusted(tuple(self._crops[i] for i in arr), self._offsets[arr].copy(), self._orig_hw)

    def full(self) -> np.ndarray:
        """``(n, H, W)`` bool masks (``n * H * W`` bytes), as Ultralytics' ``Results.masks.data``."""
        h, w = self._orig_hw
        out = np.zeros((len(self._crops), h, w), dtype=bool)
        for i, (crop, (x0, y0)) in enumerate(zip(self._crops, self._offsets)):
            if crop.size:
                out[i, y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        return out

    def mask(self, i: int) -> np.ndarray:
        """The ``(H, W)`` bool mask of detection ``i``."""
        crop, (x0, y0) = self[i]
        out = np.zeros(self._orig_hw, dtype=bool)
        out[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        return out

    def area(self) -> np.ndarray:
        """``(n,)`` int64 pixel count of each mask."""
        return np.array([int(np.count_nonzero(c)) for c in self._crops], dtype=np.int64)

    def nonempty(self) -> np.ndarray:
        """``(n,)`` bool: the detections Ultralytics keeps (a mask with at least one pixel)."""
        return np.array([bool(c.any()) for c in self._crops], dtype=bool)

    def polygons(self) -> list[np.ndarray]:
        """Each mask's outline, as Ultralytics' ``Results.masks.xy`` gives it: ``(k, 2)`` float32
        ``x, y`` image pixels (OpenCV's external contours, several merged into one as Ultralytics
        merges them; ``(0, 2)`` for an empty mask), traced on the box crop, never a full mask."""
        from ._contours import mask_polygon

        return [mask_polygon(c, (int(x0), int(y0))) for c, (x0, y0) in zip(self._crops, self._offsets)]
