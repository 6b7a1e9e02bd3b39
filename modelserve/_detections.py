"""Detection results: aligned numpy arrays, easy to filter, iterate and serialise."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np

from ._errors import InvalidInputError

__all__ = ["Detection", "Detections"]


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float inside dicts and lists replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def xywhr_corners(xywhr: np.ndarray) -> np.ndarray:
    """Ultralytics' ``xywhr2xyxyxyxy`` in float32: centre +- half-size vectors rotated by the angle."""
    x = np.asarray(xywhr, dtype=np.float32)
    ctr = x[..., :2]
    w, h, a = x[..., 2:3], x[..., 3:4], x[..., 4:5]
    cos, sin = np.cos(a), np.sin(a)
    vec1 = np.concatenate([w / 2 * cos, w / 2 * sin], -1)
    vec2 = np.concatenate([-h / 2 * sin, h / 2 * cos], -1)
    return np.stack([ctr + vec1 + vec2, ctr + vec1 - vec2, ctr - vec1 - vec2, ctr - vec1 + vec2], -2)


class Detection(NamedTuple):
    """One detection, as yielded by iterating over :class:`Detections`."""

    xyxy: np.ndarray
    confidence: float
    class_id: int
    class_name: str


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections for one image, in original-image pixels, highest confidence first.

    * ``xyxy``: ``(n, 4)`` float32 boxes ``x1, y1, x2, y2``
    * ``confidence``: ``(n,)`` float32
    * ``class_id``: ``(n,)`` int64
    * ``names``: the model's class names, ``{class id: name}``
    * ``orig_shape``: the image's ``(height, width)``
    * ``keypoints``: pose models: ``(n, K, 3)`` float32 ``x, y, confidence`` (``(n, K, 2)`` for 2-D
      keypoint models) in original-image pixels, else None
    * ``xywhr``: oriented-box models: ``(n, 5)`` float32 centre, size and angle in radians (as
      Ultralytics regularises it), else None; ``corners`` gives the 4 corner points and ``xyxy``
      holds their axis-aligned bounds
    * ``masks``: segmentation models: ``(n, H, W)`` bool masks in original-image pixels (built on
      first access from per-box crops: ``n * H * W`` bytes; use ``mask_crop(i)`` or the polygons
      ``masks_xy`` to stay small), else None
    * ``speed``: milliseconds spent per stage for this image (``preprocess``, ``inference``,
      ``postprocess``), batch stages divided evenly among its images, as Ultralytics reports them;
      ``preprocess`` includes decoding when the image was passed as a path or bytes (a JPEG of
      1080x810 takes ~10 ms to decode; pass decoded arrays to time letterboxing alone)

    ``len(d)``, iteration (:class:`Detection` tuples) and indexing with an int, a slice, an index
    array or a boolean mask (``d[d.confidence > 0.5]``) work as for numpy arrays.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    names: Mapping[int, str] = field(default_factory=dict)
    orig_shape: tuple[int, int] = (0, 0)
    speed: Mapping[str, float] = field(default_factory=dict)
    keypoints: np.ndarray | None = None
    xywhr: np.ndarray | None = None
    mask_crops: Any = None

    def __post_init__(self) -> None:
        try:
            xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
            conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
            cls = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInputError(f"xyxy must be numbers shaped (n, 4), confidence (n,) and class_id (n,) "
                                    f"integers; got an error: {exc}") from None
        if not (len(xyxy) == len(conf) == len(cls)):
            raise InvalidInputError(
                f"xyxy, confidence and class_id must have the same length, got {len(xyxy)}, {len(conf)}, {len(cls)}"
            )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cls)
        for key, arr in (("keypoints", self.keypoints), ("xywhr", self.xywhr)):
            if arr is not None:
                arr = np.asarray(arr, dtype=np.float32)
                if len(arr) != len(cls):
                    raise InvalidInputError(f"{key} must have one row per detection ({len(cls)}), got {len(arr)}")
                object.__setattr__(self, key, arr)
        if self.xywhr is not None and self.xywhr.shape[1:] != (5,):
            raise InvalidInputError(f"xywhr must be shaped (n, 5), got {self.xywhr.shape}")
        if self.keypoints is not None and (self.keypoints.ndim != 3 or self.keypoints.shape[2] not in (2, 3)):
            raise InvalidInputError(f"keypoints must be shaped (n, K, 2 or 3), got {self.keypoints.shape}")
        if self.mask_crops is not None and len(self.mask_crops) != len(cls):
            raise InvalidInputError(f"mask_crops must have one mask per detection ({len(cls)})")

    @classmethod
    def _trusted(cls, xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray,
                 names: Mapping[int, str], orig_shape: tuple[int, int], *, keypoints: np.ndarray | None = None,
                 xywhr: np.ndarray | None = None, mask_crops: Any = None) -> "Detections":
        """From arrays that already have the right dtypes and shapes (the Predictor's hot path,
        skipping the conversions and checks of ``__init__``)."""
        obj = object.__new__(cls)
        obj.__dict__.update(xyxy=xyxy, confidence=confidence, class_id=class_id, names=names,
                            orig_shape=orig_shape, speed={}, keypoints=keypoints, xywhr=xywhr,
                            mask_crops=mask_crops)
        return obj

    @classmethod
    def _from_rows(cls, rows: np.ndarray, names: Mapping[int, str], orig_shape: tuple[int, int]) -> "Detections":
        """From float32 ``(n, 6)`` rows ``[x1, y1, x2, y2, conf, class]`` in image pixels (trusted)."""
        return cls._trusted(rows[:, :4].copy(), rows[:, 4].copy(), rows[:, 5].astype(np.int64), names, orig_shape)

    @classmethod
    def empty(cls, names: Mapping[int, str] | None = None, orig_shape: tuple[int, int] = (0, 0)) -> "Detections":
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), names or {}, orig_shape)

    @property
    def masks(self) -> np.ndarray | None:
        """``(n, H, W)`` bool masks in original-image pixels (segmentation models), else None."""
        if self.mask_crops is None:
            return None
        full = self.__dict__.get("_masks_full")
        if full is None:
            full = self.mask_crops.full()
            self.__dict__["_masks_full"] = full
        return full

    @property
    def masks_xy(self) -> list[np.ndarray] | None:
        """Segmentation models: each mask's polygon, ``(k, 2)`` float32 ``x, y`` in original-image
        pixels, equal to Ultralytics' ``Results.masks.xy`` (computed on first access from the
        per-box crops), else None."""
        if self.mask_crops is None:
            return None
        polys = self.__dict__.get("_masks_xy")
        if polys is None:
            polys = self.mask_crops.polygons()
            self.__dict__["_masks_xy"] = polys
        return polys

    @property
    def masks_xyn(self) -> list[np.ndarray] | None:
        """:attr:`masks_xy` divided by the image's width and height (Ultralytics' ``masks.xyn``)."""
        polys = self.masks_xy
        if polys is None:
            return None
        h, w = self.orig_shape
        scale = np.array([w, h], dtype=np.float32)
        return [p / scale for p in polys]

    def mask_crop(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        """Mask ``i`` inside its box only: ``(bool crop, (x0, y0))``, its top-left corner in the image."""
        if self.mask_crops is None:
            raise InvalidInputError("these detections have no masks (not a segmentation model)")
        return self.mask_crops[int(i)]

    @property
    def corners(self) -> np.ndarray | None:
        """Oriented boxes' corner points ``(n, 4, 2)`` (Ultralytics' ``xyxyxyxy``), else None."""
        return None if self.xywhr is None else xywhr_corners(self.xywhr)

    @property
    def class_names(self) -> list[str]:
        """The class name of each detection, aligned with ``class_id``."""
        return [self.names.get(int(c), str(int(c))) for c in self.class_id]

    def __len__(self) -> int:
        return len(self.class_id)

    def __iter__(self) -> Iterator[Detection]:
        for i in range(len(self)):
            c = int(self.class_id[i])
            yield Detection(self.xyxy[i], float(self.confidence[i]), c, self.names.get(c, str(c)))

    def __getitem__(self, index: Any) -> "Detections":
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        idx = np.asarray(index) if not isinstance(index, slice) else index
        if isinstance(idx, np.ndarray) and idx.dtype == bool and idx.shape != (len(self),):
            raise InvalidInputError(f"boolean mask must have shape ({len(self)},), got {idx.shape}")
        try:
            return Detections(
                self.xyxy[idx], self.confidence[idx], self.class_id[idx], self.names, self.orig_shape, self.speed,
                None if self.keypoints is None else self.keypoints[idx],
                None if self.xywhr is None else self.xywhr[idx],
                None if self.mask_crops is None else self.mask_crops.select(np.arange(len(self))[idx]),
            )
        except IndexError as exc:
            raise InvalidInputError(f"bad index for {len(self)} detections: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types: ``{"detections": [{"xyxy", "confidence", "class_id", "class_name"}], ...}``."""
        return {
            "orig_shape": [int(v) for v in self.orig_shape],
            "detections": [
                {
                    "xyxy": [float(v) for v in d.xyxy],
                    "confidence": d.confidence,
                    "class_id": d.class_id,
                    "class_name": d.class_name,
                }
                for d in self
            ],
            **self._task_dict(),
            "speed": {k: float(v) for k, v in self.speed.items()},
        }

    def _task_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.keypoints is not None:
            extra["keypoints"] = self.keypoints.tolist()
        if self.xywhr is not None:
            extra["xywhr"] = self.xywhr.tolist()
            extra["corners"] = xywhr_corners(self.xywhr).tolist()
        if self.mask_crops is not None:
            extra["mask_areas"] = [int(a) for a in self.mask_crops.area()]
            extra["polygons"] = [p.tolist() for p in self.masks_xy or []]
        return extra

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as a strict JSON string (``kwargs`` go to :func:`json.dumps`).

        Non-finite numbers (NaN or infinite coordinates, which a model can output) are written as
        ``null``: ``NaN`` and ``Infinity`` are not JSON, and strict parsers reject them.
        """
        kwargs.setdefault("allow_nan", False)
        return json.dumps(_finite(self.to_dict()), **kwargs)

    def __repr__(self) -> str:
        shown = ", ".join(f"{d.class_name} {d.confidence:.2f}" for d in list(self)[:5])
        more = ", ..." if len(self) > 5 else ""
        return f"Detections(n={len(self)}, orig_shape={self.orig_shape}, [{shown}{more}])"
