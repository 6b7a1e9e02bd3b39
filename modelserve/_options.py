"""The per-call options of a prediction: thresholds, detection limit, class filter."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _checks
from ._errors import InvalidInputError

__all__ = ["PredictOptions"]


@dataclass(frozen=True)
class PredictOptions:
    """Detection thresholds; ``Predictor`` holds defaults and each call may override them."""

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    classes: Sequence[int] | None = None
    agnostic: bool = False
    multi_label: bool = False

    def __post_init__(self) -> None:
        for key in ("conf", "iou"):
            value = getattr(self, key)
            try:
                unit = _checks.finite(value, key)  # a real number (numpy scalars too), finite
            except InvalidInputError:
                unit = math.nan
            if not 0.0 <= unit <= 1.0:
                raise InvalidInputError(f"{key} must be a number in [0, 1], got {value!r}")
            object.__setattr__(self, key, unit)
        # an int >= 0 (numpy ints too); beyond sys.maxsize means no limit and is clamped
        object.__setattr__(self, "max_det", _checks.count(self.max_det, "max_det"))
        if self.classes is not None:
            classes = (self.classes,) if isinstance(self.classes, (int, np.integer)) else self.classes
            try:
                values = tuple(int(c) for c in classes if isinstance(c, (int, np.integer)) and not isinstance(c, bool))
            except TypeError:
                values = ()
            if not isinstance(classes, (list, tuple, set, frozenset, np.ndarray)) or len(values) != len(classes):
                raise InvalidInputError(f"classes must be a list of class ids (ints), got {self.classes!r}")
            object.__setattr__(self, "classes", values)
        for key in ("agnostic", "multi_label"):
            if not isinstance(getattr(self, key), (bool, np.bool_)):
                raise InvalidInputError(f"{key} must be a bool, got {getattr(self, key)!r}")

    @functools.cached_property
    def class_array(self) -> np.ndarray | None:
        """``classes`` as the int64 array the kernels take (``None``: every class)."""
        return _checks.classes(self.classes)

    def merged(self, **overrides: Any) -> "PredictOptions":
        """A copy with the non-None ``overrides`` applied."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if not values:
            return self
        base = {k: getattr(self, k) for k in ("conf", "iou", "max_det", "classes", "agnostic", "multi_label")}
        base.update(values)
        return PredictOptions(**base)
