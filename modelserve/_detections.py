"""Detection results: aligned numpy arrays, easy to filter, iterate and serialise."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, NamedTuple, overload

import numpy as np

from ._errors import InvalidInputError
from ._result_base import ResultBase
from ._tables import (
    csv_text,
    dataframe,
    detection_columns,
    detection_rows,
    finite_json,
    json_options,
    summary_options,
)
from ._view_arrays import ArrayField, Keypoints, MaskOutlines, Masks, keypoints_view, masks_view
from ._views import OBB, Boxes, xywhr_corners

__all__ = ["Detection", "Detections"]


#: Ultralytics ``Results`` attributes that a single :class:`Detection` is not, with where its own
#: values are: ported code asking a Detection for one of them took ``predict(image)`` (one
#: image's Detections) for Ultralytics' list of results.
_WHOLE_RESULT = {
    "boxes": " Its own box is .xyxy.", "masks": " Its own mask is .mask (and .mask_crop, .polygon).",
    "keypoints": " Its own keypoints are .kpts.", "obb": " Its own rotated box is .xywhr (and .corners).",
    **dict.fromkeys(["probs", "names", "speed", "plot", "show", "save", "save_txt", "save_crop", "summary", "verbose",
                     "to_dict", "to_json", "to_csv", "to_df", "path", "orig_img", "cpu", "numpy", "cuda", "to", "new",
                     "update", "masks_xy", "masks_xyn", "class_names"], ""),
}


class _DetectionRow(NamedTuple):
    xyxy: np.ndarray
    confidence: float
    class_id: int
    class_name: str


class Detection(_DetectionRow):
    """One detection, as ``r[i]`` and iterating over :class:`Detections` give it.

    A tuple ``(xyxy, confidence, class_id, class_name)`` (``xyxy``: ``(4,)`` float32 pixels), with
    the task's values as attributes, each None for models of other tasks:

    * ``kpts``: ``(K, D)`` keypoints (pose; row ``i`` of ``Detections.keypoints``)
    * ``xywhr`` ``(5,)`` and ``corners`` ``(4, 2)``: the rotated box (oriented-box models)
    * ``mask_crop``: ``(bool crop, (x0, y0))`` (segmentation), ``mask``: the ``(H, W)`` bool mask,
      ``polygon``: its ``(k, 2)`` float32 outline
    * ``orig_shape``: the image's ``(height, width)``

    Ultralytics' names for a whole result (``boxes``, ``masks``, ``keypoints``, ``probs``, ``obb``,
    ``names``, ``plot``, ...) raise an AttributeError that says so: ``predict(image)`` returns that
    image's :class:`Detections`, not a list, so Ultralytics code's ``results[0].boxes`` fails
    loudly here instead of reading the first detection.
    """

    kpts: np.ndarray | None = None
    xywhr: np.ndarray | None = None
    mask_crop: tuple[np.ndarray, tuple[int, int]] | None = None
    orig_shape: tuple[int, int] = (0, 0)

    def __new__(cls, xyxy: np.ndarray, confidence: float, class_id: int, class_name: str, *,
                kpts: np.ndarray | None = None, xywhr: np.ndarray | None = None,
                mask_crop: tuple[np.ndarray, tuple[int, int]] | None = None,
                orig_shape: tuple[int, int] = (0, 0)) -> "Detection":
        self = super().__new__(cls, xyxy, confidence, class_id, class_name)
        self.__dict__.update(kpts=kpts, xywhr=xywhr, mask_crop=mask_crop, orig_shape=orig_shape)
        return self

    @property
    def corners(self) -> np.ndarray | None:
        """The rotated box's ``(4, 2)`` corner points (Ultralytics' ``xyxyxyxy``), else None."""
        return None if self.xywhr is None else xywhr_corners(self.xywhr)

    @property
    def mask(self) -> np.ndarray | None:
        """The ``(H, W)`` bool mask in image pixels (segmentation models), else None."""
        if self.mask_crop is None:
            return None
        crop, (x0, y0) = self.mask_crop
        out = np.zeros(tuple(self.orig_shape), dtype=bool)
        out[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        return out

    @property
    def polygon(self) -> np.ndarray | None:
        """The mask's ``(k, 2)`` float32 outline, as Ultralytics' ``masks.xy[i]``, else None."""
        if self.mask_crop is None:
            return None
        poly = self.__dict__.get("_polygon")
        if poly is None:
            from ._contours import mask_polygon

            poly = self.__dict__["_polygon"] = mask_polygon(*self.mask_crop)
        return poly

    def __getattr__(self, name: str) -> Any:
        if name in _WHOLE_RESULT:
            raise AttributeError(
                f"'Detection' object has no attribute {name!r}: a Detection is one detection. predict() on one "
                f"image returns that image's Detections, not a list of results as Ultralytics' predict does: "
                f"where Ultralytics code says results[0].{name}, use r.{name} on the Detections (r = p.predict(image)); "
                f"r[i] and iterating over r give single detections.{_WHOLE_RESULT[name]}")
        raise AttributeError(f"'Detection' object has no attribute {name!r}")


@dataclass(frozen=True, eq=False)
class Detections(ResultBase):
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

    Ultralytics' names read the same values: ``boxes`` (:class:`~modelserve._views.Boxes`:
    ``xyxy``, ``xywh``, ``xyxyn``, ``xywhn``, ``conf``, ``cls``, ``data``), ``obb``, and on the
    arrays themselves ``masks.xy`` / ``masks.xyn``, ``keypoints.xy`` / ``xyn`` / ``conf``;
    ``summary()``, ``to_json(schema="ultralytics")``, ``to_csv()``, ``to_df()``.

    One image, one result: ``predict(image)`` returns this object, where Ultralytics returns a list
    of ``Results``. ``len(d)`` counts detections; ``d[i]`` (an int) and iteration give single
    :class:`Detection` rows, and a slice, an index array or a boolean mask (``d[d.confidence > 0.5]``)
    gives a new :class:`Detections`, as for numpy arrays. Ultralytics code's ``results[0].boxes``
    therefore raises an AttributeError that says to use ``r.boxes``, instead of reading one box.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    names: Mapping[int, str] = field(default_factory=dict)
    orig_shape: tuple[int, int] = (0, 0)
    speed: Mapping[str, float] = field(default_factory=dict)
    keypoints: ArrayField[Keypoints | None] = ArrayField(keypoints_view)
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
        for key in ("keypoints", "xywhr"):
            arr = self.__dict__[key]
            if arr is not None:
                try:
                    arr = np.asarray(arr, dtype=np.float32).view(np.ndarray)
                except (TypeError, ValueError) as exc:
                    raise InvalidInputError(f"{key} must be numbers; got an error: {exc}") from None
                if arr.ndim == 0 or len(arr) != len(cls):
                    raise InvalidInputError(f"{key} must have one row per detection ({len(cls)}), got shape {arr.shape}")
                object.__setattr__(self, key, arr)
        xywhr, kpts = self.__dict__["xywhr"], self.__dict__["keypoints"]
        if xywhr is not None and xywhr.shape[1:] != (5,):
            raise InvalidInputError(f"xywhr must be shaped (n, 5), got {xywhr.shape}")
        if kpts is not None and (kpts.ndim != 3 or kpts.shape[2] not in (2, 3)):
            raise InvalidInputError(f"keypoints must be shaped (n, K, 2 or 3), got {kpts.shape}")
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
    def boxes(self) -> Boxes:
        """Ultralytics' ``Results.boxes``: ``xyxy``, ``xywh``, ``xyxyn``, ``xywhn``, ``conf``,
        ``cls``, ``data``; ``len``, indexing and iteration give one-box views."""
        return Boxes(self.xyxy, self.confidence, self.class_id, self.orig_shape)

    @property
    def obb(self) -> OBB | None:
        """Oriented-box models: Ultralytics' ``Results.obb`` (``xywhr``, ``xyxyxyxy``,
        ``xyxyxyxyn``, ``xyxy``, ``conf``, ``cls``, ``data``), else None."""
        if self.xywhr is None:
            return None
        return OBB(self.xywhr, self.confidence, self.class_id, self.orig_shape)

    def _outlines(self) -> MaskOutlines:
        outlines = self.__dict__.get("_mask_outlines")
        if outlines is None:
            outlines = self.__dict__["_mask_outlines"] = MaskOutlines(self.mask_crops)
        return outlines

    @property
    def masks(self) -> Masks | None:
        """``(n, H, W)`` bool masks in original-image pixels (segmentation models), else None; the
        array also has Ultralytics' ``xy``, ``xyn`` (the polygons) and ``data``."""
        if self.mask_crops is None:
            return None
        full = self.__dict__.get("_masks_full")
        if full is None:
            full = self.mask_crops.full()
            self.__dict__["_masks_full"] = full
        return masks_view(full, self._outlines(), self.orig_shape)

    @property
    def masks_xy(self) -> list[np.ndarray] | None:
        """Segmentation models: each mask's polygon, ``(k, 2)`` float32 ``x, y`` in original-image
        pixels, equal to Ultralytics' ``Results.masks.xy`` (computed on first access from the
        per-box crops), else None."""
        if self.mask_crops is None:
            return None
        return self._outlines().polygons()

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

    def _row(self, i: int) -> Detection:
        c = int(self.class_id[i])
        kpts, xywhr = self.__dict__["keypoints"], self.xywhr
        return Detection(self.xyxy[i], float(self.confidence[i]), c, self.names.get(c, str(c)),
                         kpts=None if kpts is None else kpts[i], xywhr=None if xywhr is None else xywhr[i],
                         mask_crop=None if self.mask_crops is None else self.mask_crops[i], orig_shape=self.orig_shape)

    def __iter__(self) -> Iterator[Detection]:
        for i in range(len(self)):
            yield self._row(i)

    @overload
    def __getitem__(self, index: int | np.integer) -> Detection: ...

    @overload
    def __getitem__(self, index: Any) -> "Detections": ...

    def __getitem__(self, index: Any) -> "Detection | Detections":
        """``d[i]``: detection ``i`` (a :class:`Detection`); a slice, an index array or a boolean
        mask: those detections, as :class:`Detections`."""
        n = len(self)
        if isinstance(index, (bool, np.bool_)):
            raise InvalidInputError("a single bool is not an index: use a boolean mask with one value per detection")
        if isinstance(index, (int, np.integer)):
            if not -n <= int(index) < n:
                raise InvalidInputError(f"index {int(index)} is out of range for {n} detections")
            return self._row(int(index) % n)
        idx = np.asarray(index) if not isinstance(index, slice) else index
        if isinstance(idx, np.ndarray) and idx.dtype == bool and idx.shape != (n,):
            raise InvalidInputError(f"boolean mask must have shape ({n},), got {idx.shape}")
        kpts = self.__dict__["keypoints"]
        try:
            sub = Detections(
                self.xyxy[idx], self.confidence[idx], self.class_id[idx], self.names, self.orig_shape, self.speed,
                None if kpts is None else kpts[idx],
                None if self.xywhr is None else self.xywhr[idx],
                None if self.mask_crops is None else self.mask_crops.select(np.arange(n)[idx]),
            )
        except IndexError as exc:
            raise InvalidInputError(f"bad index for {n} detections: {exc}") from exc
        for key in ("origin", "_image"):  # a filtered result still came from the same image
            if key in self.__dict__:
                object.__setattr__(sub, key, self.__dict__[key])
        return sub

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
            **({"origin": self.origin.to_dict()} if self.origin is not None else {}),
        }

    def _task_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        kpts = self.__dict__["keypoints"]
        if kpts is not None:
            extra["keypoints"] = kpts.tolist()
        if self.xywhr is not None:
            extra["xywhr"] = self.xywhr.tolist()
            extra["corners"] = xywhr_corners(self.xywhr).tolist()
        if self.mask_crops is not None:
            extra["mask_areas"] = [int(a) for a in self.mask_crops.area()]
            extra["polygons"] = [p.tolist() for p in self.masks_xy or []]
        return extra

    def summary(self, normalize: bool = False, decimals: int = 5) -> list[dict[str, Any]]:
        """Ultralytics' ``Results.summary(normalize, decimals)``: one dict per detection, ``name``,
        ``class``, ``confidence``, ``box`` (``x1, y1, x2, y2``; the 4 corners ``x1 .. y4`` for
        oriented boxes), ``segments`` (``x``, ``y`` lists) and ``keypoints`` (``x``, ``y``,
        ``visible``) when the model has them; ``normalize`` divides coordinates by the image's size."""
        normalize, decimals = summary_options(normalize, decimals)
        kpts = self.__dict__["keypoints"]
        points = self.xyxy if self.xywhr is None else xywhr_corners(self.xywhr)
        return detection_rows(points, self.confidence, self.class_id, self.names, self.orig_shape, self.masks_xy,
                              kpts, normalize, decimals)

    def _columns(self) -> list[str]:
        kpts = self.__dict__["keypoints"]
        return detection_columns(2 if self.xywhr is None else 4, self.mask_crops is not None,
                                 None if kpts is None else kpts.shape[2])

    def to_csv(self, normalize: bool = False, decimals: int = 5) -> str:
        """:meth:`summary` as CSV text: a header, then one line per detection, one column per value
        (``name, class, confidence, box_x1, box_y1, ...``; polygons and keypoints as JSON arrays)."""
        return csv_text(self.summary(normalize, decimals), self._columns())

    def to_df(self, normalize: bool = False, decimals: int = 5) -> Any:
        """:meth:`summary` as a DataFrame with :meth:`to_csv`'s columns: pandas if installed, else
        polars (``ImportError`` naming ``pip install pandas`` when neither is)."""
        return dataframe(self.summary(normalize, decimals), self._columns())

    def to_json(self, *, schema: str = "modelserve", normalize: bool | None = None, decimals: int | None = None,
                **kwargs: Any) -> str:
        """A strict JSON string (``kwargs`` go to :func:`json.dumps`): :meth:`to_dict` by default;
        with ``schema="ultralytics"``, Ultralytics' ``Results.to_json(normalize, decimals)``
        (:meth:`summary`'s list; ``normalize`` False and ``decimals`` 5 unless given).

        Non-finite numbers (NaN or infinite coordinates, which a model can output) are written as
        ``null``: ``NaN`` and ``Infinity`` are not JSON, and strict parsers reject them.
        """
        options = json_options(schema, normalize, decimals)
        kwargs.setdefault("allow_nan", False)
        data: Any = self.to_dict() if options is None else self.summary(*options)
        return json.dumps(finite_json(data), **kwargs)

    def __repr__(self) -> str:
        shown = ", ".join(f"{d.class_name} {d.confidence:.2f}" for d in map(self._row, range(min(5, len(self)))))
        more = ", ..." if len(self) > 5 else ""
        return f"Detections(n={len(self)}, orig_shape={self.orig_shape}, [{shown}{more}])"
