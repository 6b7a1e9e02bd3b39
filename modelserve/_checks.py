"""Argument checks shared by the whole package: each returns the clean value or raises
:class:`~modelserve.InvalidInputError` saying what was expected and what arrived.

They never use ``assert`` (stripped by ``python -O``) and never coerce silently: ``"64"`` is not
64, ``True`` is not 1 and ``320.7`` is not 320.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
from typing import Any, Sequence

import numpy as np

from ._errors import InvalidInputError

__all__ = [
    "MAX_IMGSZ", "is_int", "pair", "image_hw", "stride", "finite", "count", "positive_int", "classes",
    "threshold", "round_up",
]

#: The largest tensor side (height or width) modelserve letterboxes into: ``imgsz``, a model's
#: input size and stride, and ``letterbox``'s ``new_shape`` beyond it are refused
#: (a 3 x 8192 x 8192 float32 tensor is already 805 MB).
MAX_IMGSZ = 8192


def is_int(value: object) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def pair(value: int | Sequence[int], what: str, limit: int = MAX_IMGSZ) -> tuple[int, int]:
    """``value`` as ``(height, width)``: an int, or a list, tuple or 1-D array of one or two ints,
    each in ``1..limit``. Anything else (strings, bools, floats, NaN) is refused: ``"64"``
    must not become ``(6, 4)`` nor ``320.7`` silently ``320``."""
    if is_int(value):
        hw = (int(value), int(value))  # type: ignore[arg-type]
    elif (isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)) \
            and len(value) in (1, 2) and all(is_int(v) for v in value):
        hw = (int(value[0]), int(value[-1]))
    else:
        raise InvalidInputError(f"{what} must be an int or (height, width) of ints, got {value!r}")
    if hw[0] < 1 or hw[1] < 1:
        raise InvalidInputError(f"{what} must be positive, got {value!r}")
    if hw[0] > limit or hw[1] > limit:
        raise InvalidInputError(f"{what} must be at most {limit} (ops.MAX_IMGSZ) on each side, got {value!r}")
    return hw


def image_hw(value: object, what: str) -> tuple[int, int]:
    """An image's ``(height, width)``: two ints >= 1 (no upper bound: images may be large)."""
    if not isinstance(value, (tuple, list, np.ndarray)) or len(value) != 2 or not all(is_int(v) for v in value):
        raise InvalidInputError(f"{what} must be (height, width) of ints, got {value!r}")
    h, w = int(value[0]), int(value[1])
    if h < 1 or w < 1:
        raise InvalidInputError(f"{what} must be positive (a non-zero size), got height={h}, width={w}")
    return h, w


def stride(value: object) -> int:
    """A letterbox stride: an int in ``1..MAX_IMGSZ``."""
    if not is_int(value) or not 1 <= int(value) <= MAX_IMGSZ:  # type: ignore[call-overload]
        raise InvalidInputError(f"stride must be an int in 1..{MAX_IMGSZ}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def finite(value: float, what: str) -> float:
    """A finite real number (not a bool), as a float."""
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


def count(value: int, what: str) -> int:
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


def positive_int(value: Any, what: str) -> int:
    """An int >= 1 (Python or numpy, not a bool)."""
    if not is_int(value) or value < 1:
        raise InvalidInputError(f"{what} must be an int >= 1, got {value!r}")
    return int(value)


def classes(value: Sequence[int] | int | None) -> np.ndarray | None:
    """A class filter: None (every class), an int, or a sequence of ints, as an int64 array."""
    if value is None:
        return None
    try:
        arr = np.asarray(list(value) if not isinstance(value, (int, np.integer)) else [value])
    except TypeError:
        raise InvalidInputError(f"classes must be a sequence of ints, got {value!r}") from None
    if arr.size and (arr.dtype.kind not in "iu"):
        raise InvalidInputError(f"classes must be a sequence of ints, got {value!r}")
    return arr.astype(np.int64)


def threshold(value: float, what: str = "iou_threshold") -> float:
    """Any real number, as torchvision takes it (NaN and thresholds >= 1 suppress nothing); an
    int beyond float's range is +-inf, which compares the same way."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be a number, got {value!r}") from None
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is >= ``value``, and at least ``multiple``."""
    return max(-(-int(value) // multiple) * multiple, multiple)
