"""Ultralytics' array views of modelserve results: ``r.masks``, ``r.keypoints``, ``c.probs``.

:class:`Masks`, :class:`Keypoints` and :class:`Probs` are the result's own arrays
(``Detections.masks``, ``Detections.keypoints``, ``Classification.probs``: ndarrays, as before)
with Ultralytics' properties added (``r.masks.xy``, ``r.keypoints.xyn``, ``c.probs.top5``).
Whatever is computed from them (an index, a slice, arithmetic, a NumPy function) is a plain
ndarray, so ``r.masks[0]`` is one ``(H, W)`` mask, as in NumPy. :class:`ArrayField` is the
dataclass field that stores the plain array and reads it as its view.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar, overload

import numpy as np

from ._views import image_hw, image_scale, plain, readonly

__all__ = ["Masks", "Keypoints", "Probs", "MaskOutlines", "ArrayField", "keypoints_view", "probs_view", "masks_view"]


def _plain(value: Any) -> Any:
    """``value`` with every result array in it seen as a plain ndarray (other arrays untouched)."""
    return plain(value, _ResultArray)


class _ResultArray(np.ndarray):
    """A result's own ndarray with Ultralytics' properties: what is computed from it (indexing,
    ufuncs, NumPy functions) is a plain ndarray; ``bool()`` and ``len()`` count rows, as
    Ultralytics' ``if r.masks:`` expects. It remembers its image's ``orig_shape``."""

    _orig_shape: tuple[int, int] | None = None

    def __array_finalize__(self, obj: Any) -> None:
        self._orig_shape = getattr(obj, "_orig_shape", None)

    def __getitem__(self, key: Any) -> Any:
        return self.view(np.ndarray)[_plain(key)]

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        if out:
            kwargs["out"] = _plain(out)
        result = getattr(ufunc, method)(*_plain(inputs), **kwargs)
        if out:  # in place: hand back the caller's own arrays
            return out[0] if len(out) == 1 else out
        return result

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return func(*_plain(args), **_plain(kwargs))

    def __bool__(self) -> bool:
        return len(self) > 0

    def __reduce__(self) -> Any:  # pickles with its orig_shape
        return (_restore, (type(self), self.view(np.ndarray), self._orig_shape))

    @property
    def data(self) -> np.ndarray:  # type: ignore[override]
        """The values as a plain read-only ndarray (Ultralytics' ``.data``)."""
        return readonly(self)

    @property
    def orig_shape(self) -> tuple[int, int] | None:
        """The image's ``(height, width)``."""
        return self._orig_shape

    def cpu(self) -> Any:
        """This array (already NumPy on the CPU; for code written for Ultralytics)."""
        return self

    def numpy(self) -> Any:
        """This array (already NumPy; for code written for Ultralytics)."""
        return self

    def _image_scale(self) -> np.ndarray:
        return image_scale(self._orig_shape, 1)


def _restore(cls: type, arr: np.ndarray, orig_shape: tuple[int, int] | None) -> Any:
    out: Any = arr.view(cls)
    out._orig_shape = orig_shape
    return out


class Keypoints(_ResultArray):
    """``Detections.keypoints``: ``(n, K, D)`` float32 ``x, y[, confidence]`` in image pixels, with
    Ultralytics' ``xy`` ``(n, K, 2)`` (read-only), ``xyn`` (normalised), ``conf`` ``(n, K)`` (None
    for 2-D keypoints), ``has_visible``, ``data`` and ``orig_shape``."""

    @property
    def xy(self) -> np.ndarray:
        return readonly(self.view(np.ndarray)[..., :2])

    @property
    def xyn(self) -> np.ndarray:
        return self.view(np.ndarray)[..., :2] / self._image_scale()

    @property
    def conf(self) -> np.ndarray | None:
        return readonly(self.view(np.ndarray)[..., 2]) if self.has_visible else None

    @property
    def has_visible(self) -> bool:
        return self.shape[-1] == 3


class Probs(_ResultArray):
    """``Classification.probs``: ``(nc,)`` probabilities with Ultralytics' ``top1`` (int), ``top5``
    (list of ints, best first), ``top1conf`` (a float32 scalar), ``top5conf``, ``data``."""

    @property
    def top1(self) -> int:
        return int(np.argmax(self.view(np.ndarray)))

    @property
    def top5(self) -> list[int]:
        """The five best class ids, best first (ties keep the lower id first)."""
        return [int(i) for i in np.argsort(-self.view(np.ndarray), kind="stable")[:5]]

    @property
    def top1conf(self) -> Any:
        return self.view(np.ndarray)[self.top1]

    @property
    def top5conf(self) -> np.ndarray:
        return self.view(np.ndarray)[self.top5]


class MaskOutlines:
    """The polygons of a result's :class:`~modelserve._mask_crops.MaskCrops`, traced once, on first
    use, and shared by ``Detections.masks_xy`` and ``Detections.masks.xy``."""

    __slots__ = ("crops", "_polygons")

    def __init__(self, crops: Any) -> None:
        self.crops = crops
        self._polygons: list[np.ndarray] | None = None

    def polygons(self) -> list[np.ndarray]:
        if self._polygons is None:
            self._polygons = self.crops.polygons()
        return self._polygons


class Masks(_ResultArray):
    """``Detections.masks``: ``(n, H, W)`` bool masks in image pixels, with Ultralytics' ``xy``
    (each mask's polygon, ``(k, 2)`` float32 pixels), ``xyn`` (normalised), ``data`` and
    ``orig_shape``, equal to Ultralytics' with ``retina_masks=True``. The polygons are the model's
    masks' outlines: writing into the array does not change them, and a copy of the array has none."""

    _outlines: MaskOutlines | None = None

    def __array_finalize__(self, obj: Any) -> None:
        super().__array_finalize__(obj)
        self._outlines = None  # a copy or reshape is not the result's own masks

    def __reduce__(self) -> Any:  # a pickled mask stack comes back as a plain array
        return self.view(np.ndarray).__reduce__()

    def _polygons(self) -> list[np.ndarray]:
        if self._outlines is None:
            raise AttributeError("this array was copied from Detections.masks and has no outlines: "
                                 "read .xy and .xyn on the result's own r.masks (or r.masks_xy)")
        return self._outlines.polygons()

    @property
    def xy(self) -> list[np.ndarray]:
        return self._polygons()

    @property
    def xyn(self) -> list[np.ndarray]:
        scale = self._image_scale()
        return [p / scale for p in self._polygons()]


def keypoints_view(arr: np.ndarray, orig_shape: Any) -> Keypoints:
    """``arr`` seen as :class:`Keypoints` of an ``orig_shape`` image (no copy)."""
    return _restore(Keypoints, np.asarray(arr), image_hw(orig_shape))


def probs_view(arr: np.ndarray, orig_shape: Any) -> Probs:
    """``arr`` seen as :class:`Probs` (no copy)."""
    return _restore(Probs, np.asarray(arr), image_hw(orig_shape))


def masks_view(full: np.ndarray, outlines: MaskOutlines, orig_shape: Any) -> Masks:
    """The ``(n, H, W)`` bool stack ``full`` seen as :class:`Masks` whose polygons ``outlines`` traces."""
    out = _restore(Masks, full, image_hw(orig_shape))
    out._outlines = outlines
    return out


V = TypeVar("V")


class ArrayField(Generic[V]):
    """A dataclass field that stores a plain ndarray (or None) and reads it as a view made by
    ``view(array, owner.orig_shape)``: ``Detections.keypoints`` reads as :class:`Keypoints`.
    ``required`` fields have no default."""

    def __init__(self, view: Callable[[np.ndarray, Any], Any], required: bool = False) -> None:
        self._view = view
        self._required = required
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: Any) -> None: ...

    @overload
    def __get__(self, obj: object, owner: Any) -> V: ...

    def __get__(self, obj: object | None, owner: Any) -> Any:
        if obj is None:  # the class's default (dataclasses ask): None, or none at all
            if self._required:
                raise AttributeError(self._name)
            return None
        value = obj.__dict__.get(self._name)
        return None if value is None else self._view(value, getattr(obj, "orig_shape", (0, 0)))

    def __set__(self, obj: object, value: Any) -> None:
        obj.__dict__[self._name] = value
