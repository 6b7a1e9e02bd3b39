"""Ultralytics' row views of modelserve results: ``r.boxes`` and ``r.obb``.

Code written for Ultralytics' ``Results`` reads the same values here under the same names
(``r.boxes.xyxy``, ``r.boxes.xywhn``, ``r.obb.xyxyxyxy``, ...); the values are NumPy arrays on the
CPU, never torch tensors. :class:`Boxes` and :class:`OBB` are small read-only objects over a
result's arrays, indexed and iterated as Ultralytics' are (``boxes[i]`` is a one-box
:class:`Boxes`). The array views (``r.masks.xy``, ``r.keypoints.xyn``, ``c.probs.top5``) are in
:mod:`modelserve._view_arrays`.

Arrays a view returns that share memory with the result (``boxes.xyxy``, ``obb.xywhr``) are
read-only; computed ones (``xywh``, ``xyxyn``, ...) are new arrays.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ._errors import InvalidInputError

__all__ = ["Boxes", "OBB", "xywhr_corners", "image_hw", "image_scale", "readonly", "plain"]


def xywhr_corners(xywhr: np.ndarray) -> np.ndarray:
    """Ultralytics' ``xywhr2xyxyxyxy`` in float32: centre +- half-size vectors rotated by the angle."""
    x = np.asarray(xywhr, dtype=np.float32)
    ctr = x[..., :2]
    w, h, a = x[..., 2:3], x[..., 3:4], x[..., 4:5]
    cos, sin = np.cos(a), np.sin(a)
    vec1 = np.concatenate([w / 2 * cos, w / 2 * sin], -1)
    vec2 = np.concatenate([-h / 2 * sin, h / 2 * cos], -1)
    return np.stack([ctr + vec1 + vec2, ctr + vec1 - vec2, ctr - vec1 - vec2, ctr - vec1 + vec2], -2)


def readonly(arr: np.ndarray) -> np.ndarray:
    """``arr`` as a plain read-only ndarray view (no copy)."""
    out = np.asarray(arr).view(np.ndarray)
    out.flags.writeable = False
    return out


def image_hw(orig_shape: Any) -> tuple[int, int] | None:
    """``orig_shape`` as two Python ints, or None when it is not two positive ints."""
    try:
        h, w = (int(v) for v in orig_shape)
    except (TypeError, ValueError, OverflowError):
        return None
    return (h, w) if h > 0 and w > 0 else None


def image_scale(orig_shape: Any, per_point: int) -> np.ndarray:
    """float32 ``[w, h] * per_point``, refusing results that do not know their image's size."""
    hw = image_hw(orig_shape)
    if hw is None:
        raise InvalidInputError(f"normalised coordinates need the image size, but these results have "
                                f"orig_shape {orig_shape!r}")
    return np.array([hw[1], hw[0]] * per_point, dtype=np.float32)


def _rows(n: int, index: Any) -> np.ndarray:
    """The row numbers ``index`` selects among ``n`` (an int selects one row, as Ultralytics' do)."""
    if isinstance(index, (bool, np.bool_)):
        raise IndexError("a bool is not an index: use a boolean mask with one value per row")
    rows = np.atleast_1d(np.arange(n)[plain(index)])
    if rows.ndim != 1:
        raise IndexError(f"expected an int, a slice, an index array or a boolean mask of rows, got {index!r}")
    return rows


class _Rows:
    """What :class:`Boxes` and :class:`OBB` share: aligned rows, ``len``, indexing, iteration."""

    __slots__ = ("_coords", "_conf", "_cls", "_orig_shape")
    _coords: np.ndarray
    _conf: np.ndarray
    _cls: np.ndarray
    _orig_shape: Any

    def __init__(self, coords: np.ndarray, conf: np.ndarray, cls: np.ndarray, orig_shape: Any) -> None:
        object.__setattr__(self, "_coords", readonly(coords))
        object.__setattr__(self, "_conf", readonly(conf))
        object.__setattr__(self, "_cls", readonly(cls))
        object.__setattr__(self, "_orig_shape", image_hw(orig_shape) or orig_shape)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    @property
    def data(self) -> np.ndarray:
        """Ultralytics' raw rows: the coordinates, then ``conf`` and ``cls``, float32."""
        n, width = self.shape
        return np.concatenate([self._coords.reshape(n, width - 2), self._conf.reshape(n, 1), self.cls.reshape(n, 1)], 1)

    @property
    def conf(self) -> np.ndarray:
        """``(n,)`` float32 confidences (read-only)."""
        return self._conf

    @property
    def cls(self) -> np.ndarray:
        """``(n,)`` class ids as float32, as Ultralytics gives them (``Detections.class_id`` has int64)."""
        return self._cls.astype(np.float32)

    @property
    def id(self) -> None:
        """Track ids: None (modelserve does not track)."""
        return None

    @property
    def is_track(self) -> bool:
        return False

    @property
    def orig_shape(self) -> Any:
        """The image's ``(height, width)``."""
        return self._orig_shape

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of :attr:`data`."""
        return (len(self._conf), int(np.prod(self._coords.shape[1:], dtype=np.int64)) + 2)

    def cpu(self) -> Any:
        """This view (already NumPy on the CPU; for code written for Ultralytics)."""
        return self

    def numpy(self) -> Any:
        """This view (already NumPy; for code written for Ultralytics)."""
        return self

    def __len__(self) -> int:
        return len(self._conf)

    def __getitem__(self, index: Any) -> Any:
        """The rows ``index`` selects (an int, slice, index array or boolean mask), as a view of the
        same type: ``boxes[0]`` is a one-box view, as in Ultralytics."""
        rows = _rows(len(self), index)
        return type(self)(self._coords[rows], self._conf[rows], self._cls[rows], self._orig_shape)

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, orig_shape={self._orig_shape})"


class Boxes(_Rows):
    """Ultralytics' ``Results.boxes``: ``xyxy``, ``xywh``, ``xyxyn``, ``xywhn`` ``(n, 4)`` float32,
    ``conf``, ``cls`` ``(n,)`` float32, ``data`` ``(n, 6)`` rows ``x1, y1, x2, y2, conf, cls``,
    ``orig_shape``, ``id`` (None) and ``is_track`` (False). ``len``, indexing and iteration give
    one-box :class:`Boxes`, as Ultralytics' do. For oriented-box models these are the corners'
    axis-aligned bounds (``r.obb`` has the rotated boxes)."""

    __slots__ = ()

    @property
    def xyxy(self) -> np.ndarray:
        """``(n, 4)`` float32 ``x1, y1, x2, y2`` in image pixels (read-only)."""
        return self._coords

    @property
    def xywh(self) -> np.ndarray:
        """``(n, 4)`` float32 centre ``x, y``, width, height (Ultralytics' ``xyxy2xywh``)."""
        x = self._coords
        out = np.empty_like(x)
        out[:, 0] = (x[:, 0] + x[:, 2]) / 2
        out[:, 1] = (x[:, 1] + x[:, 3]) / 2
        out[:, 2] = x[:, 2] - x[:, 0]
        out[:, 3] = x[:, 3] - x[:, 1]
        return out

    @property
    def xyxyn(self) -> np.ndarray:
        """:attr:`xyxy` divided by the image's width and height."""
        return self._coords / image_scale(self._orig_shape, 2)

    @property
    def xywhn(self) -> np.ndarray:
        """:attr:`xywh` divided by the image's width and height."""
        return self.xywh / image_scale(self._orig_shape, 2)


class OBB(_Rows):
    """Ultralytics' ``Results.obb``: ``xywhr`` ``(n, 5)`` float32 (centre, size, angle in radians),
    ``xyxyxyxy`` ``(n, 4, 2)`` corners, ``xyxyxyxyn`` (normalised), ``xyxy`` ``(n, 4)`` their
    axis-aligned bounds, ``conf``, ``cls``, ``data`` ``(n, 7)`` rows ``x, y, w, h, r, conf, cls``,
    ``orig_shape``, ``id`` (None), ``is_track`` (False); indexed and iterated like :class:`Boxes`."""

    __slots__ = ()

    @property
    def xywhr(self) -> np.ndarray:
        """``(n, 5)`` float32 centre ``x, y``, width, height, angle (read-only)."""
        return self._coords

    @property
    def xyxyxyxy(self) -> np.ndarray:
        """``(n, 4, 2)`` float32 corner points (Ultralytics' ``xywhr2xyxyxyxy``)."""
        return xywhr_corners(self._coords)

    @property
    def xyxyxyxyn(self) -> np.ndarray:
        """:attr:`xyxyxyxy` divided by the image's width and height."""
        return self.xyxyxyxy / image_scale(self._orig_shape, 1)

    @property
    def xyxy(self) -> np.ndarray:
        """``(n, 4)`` float32 axis-aligned bounds of the corners."""
        c = self.xyxyxyxy
        x, y = c[..., 0], c[..., 1]
        return np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], -1)


def plain(value: Any, kind: type = np.ndarray) -> Any:
    """``value`` with every ``kind`` array (inside tuples, lists and dicts too) seen as a plain ndarray."""
    if isinstance(value, kind) and type(value) is not np.ndarray:
        return value.view(np.ndarray)  # type: ignore[attr-defined]
    if isinstance(value, (tuple, list)):
        return type(value)(plain(v, kind) for v in value)
    if isinstance(value, dict):
        return {k: plain(v, kind) for k, v in value.items()}
    return value
