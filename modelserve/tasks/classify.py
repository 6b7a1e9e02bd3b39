"""Classification: Ultralytics ``-cls`` models, ``[B, nc]`` probabilities, with Ultralytics'
classification preprocessing (Pillow bilinear resize of the short side, centre crop, RGB, /255)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from PIL import Image as PILImage

from .. import _letterbox
from .._errors import InvalidInputError, ModelLoadError
from .._metadata import ModelInfo
from .._result_base import ResultBase
from .._tables import (
    CLASSIFY_COLUMNS,
    classification_rows,
    csv_text,
    dataframe,
    finite_json,
    json_options,
    summary_options,
)
from .._view_arrays import ArrayField, Probs, probs_view
from .base import Head, Shape, as_f32, fmt

__all__ = ["Classification", "ClassifyHead"]


@dataclass(frozen=True, eq=False)
class Classification(ResultBase):
    """One image's class probabilities.

    * ``probs``: ``(nc,)`` float32, as the model gives them (softmax); the array also has
      Ultralytics' ``probs.top1``, ``top5``, ``top1conf``, ``top5conf`` and ``data``
    * ``top1`` / ``top5``: class ids, best first (``top5`` has ``min(5, nc)`` ids)
    * ``top1conf`` / ``top5conf``, ``top1_name`` / ``top5_names``
    * ``names``, ``orig_shape``, ``speed``: as for :class:`Detections`
    * ``summary()``, ``to_json(schema="ultralytics")``, ``to_csv()``, ``to_df()``: the five best
      classes as Ultralytics' ``Results`` gives them
    """

    probs: ArrayField[Probs] = ArrayField(probs_view, required=True)
    names: Mapping[int, str] = field(default_factory=dict)
    orig_shape: tuple[int, int] = (0, 0)
    speed: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        probs = np.asarray(self.__dict__["probs"]).view(np.ndarray)
        if probs.ndim != 1 or probs.dtype.kind not in "fiu":
            raise InvalidInputError(f"probs must be a 1-D array of numbers, got {probs.dtype} shaped {probs.shape}")
        object.__setattr__(self, "probs", probs)

    @property
    def top5(self) -> list[int]:
        """The five best class ids, best first (Ultralytics' ``(-probs).argsort(0)[:5]``)."""
        return self.probs.top5

    @property
    def top1(self) -> int:
        return int(np.argmax(self.__dict__["probs"]))

    @property
    def top1conf(self) -> float:
        return float(self.__dict__["probs"][self.top1])

    @property
    def top5conf(self) -> np.ndarray:
        return self.__dict__["probs"][self.top5]

    @property
    def top1_name(self) -> str:
        return self.names.get(self.top1, str(self.top1))

    @property
    def top5_names(self) -> list[str]:
        return [self.names.get(i, str(i)) for i in self.top5]

    def to_dict(self) -> dict[str, Any]:
        probs = self.__dict__["probs"]
        return {
            "orig_shape": [int(v) for v in self.orig_shape],
            "top5": [{"class_id": i, "class_name": self.names.get(i, str(i)), "confidence": float(probs[i])}
                     for i in self.top5],
            "probs": [float(p) for p in probs],
            "speed": {k: float(v) for k, v in self.speed.items()},
            **({"origin": self.origin.to_dict()} if self.origin is not None else {}),
        }

    def summary(self, normalize: bool = False, decimals: int = 5) -> list[dict[str, Any]]:
        """Ultralytics' ``Results.summary()`` of a classification: ``name``, ``class`` and
        ``confidence`` of the five best classes, best first (``normalize`` changes nothing)."""
        _, decimals = summary_options(normalize, decimals)
        return classification_rows(self.__dict__["probs"], self.top5, self.names, decimals)

    def to_csv(self, normalize: bool = False, decimals: int = 5) -> str:
        """:meth:`summary` as CSV text: ``name,class,confidence``, then one line per class."""
        return csv_text(self.summary(normalize, decimals), CLASSIFY_COLUMNS)

    def to_df(self, normalize: bool = False, decimals: int = 5) -> Any:
        """:meth:`summary` as a DataFrame: pandas if installed, else polars."""
        return dataframe(self.summary(normalize, decimals), CLASSIFY_COLUMNS)

    def to_json(self, *, schema: str = "modelserve", normalize: bool | None = None, decimals: int | None = None,
                **kwargs: Any) -> str:
        """A strict JSON string: :meth:`to_dict` by default; with ``schema="ultralytics"``,
        Ultralytics' ``Results.to_json()`` (:meth:`summary`'s list)."""
        options = json_options(schema, normalize, decimals)
        kwargs.setdefault("allow_nan", False)
        data: Any = self.to_dict() if options is None else self.summary(*options)
        return json.dumps(finite_json(data), **kwargs)

    def __repr__(self) -> str:
        probs = self.__dict__["probs"]
        best = ", ".join(f"{self.names.get(i, str(i))} {probs[i]:.2f}" for i in self.top5)
        return f"Classification(orig_shape={self.orig_shape}, top5=[{best}])"


class _CropGeometry(NamedTuple):
    """Ultralytics' classify_transforms for one source size: Resize(short side), CenterCrop."""

    resized_wh: tuple[int, int]
    crop_lt: tuple[int, int]
    output_hw: tuple[int, int]
    layout: Any  # identity letterbox of the crop (the kernel's HWC uint8 -> CHW float /255 pass)
    plan: Any


class ClassifyHead(Head):
    task = "classify"
    layout = "probabilities"

    @classmethod
    def from_model(cls, info: ModelInfo, shapes: Sequence[Shape]) -> "ClassifyHead":
        nc = len(info.names)
        if len(shapes) != 1 or len(shapes[0]) != 2 or shapes[0][1] not in (None, nc):
            raise ModelLoadError(f"expected one classifier output [batch, {nc}] for this model's {nc} class names, "
                                 f"got {', '.join(fmt(s) for s in shapes)}")
        return cls(info, [0])

    def ranks(self) -> tuple[int, ...]:
        return (2,)

    scaled_input = False  # the crop reads the image's own pixels: never a scaled decode

    def geometry(self, source_hw: tuple[int, int], imgsz: tuple[int, int], dynamic: bool, stride: int,
                 pixels_hw: tuple[int, int] | None = None) -> Any:
        h, w = source_hw
        th, tw = imgsz
        if th == tw:  # torchvision Resize(int): the short side to the size, the long one int(size * long / short)
            if w <= h:
                rw, rh = th, int(th * h / w)
            else:
                rw, rh = int(th * w / h), th
        else:  # Resize((h, w)): exactly that size
            rw, rh = tw, th
        top, left = int(round((rh - th) / 2.0)), int(round((rw - tw) / 2.0))  # torchvision CenterCrop
        layout = _letterbox.letterbox_geometry((th, tw), (th, tw))
        plan = _letterbox.kernel_plan(th, tw, th, tw, (tw, th), (0, 0)) if self.kernels else None
        return _CropGeometry((rw, rh), (left, top), (th, tw), layout, plan)

    def fill(self, pixels: np.ndarray, bgr: bool, geometry: Any, out: np.ndarray, otype: int) -> None:
        rw, rh = geometry.resized_wh
        left, top = geometry.crop_lt
        th, tw = geometry.output_hw
        img = PILImage.fromarray(pixels)
        if img.size != (rw, rh):
            img = img.resize((rw, rh), PILImage.Resampling.BILINEAR)
        if left < 0 or top < 0:  # the crop is larger than the resized image: torchvision pads with 0
            canvas = PILImage.new(img.mode, (max(rw, tw), max(rh, th)))
            canvas.paste(img, (max(-left, 0), max(-top, 0)))
            img, left, top = canvas, max(left, 0), max(top, 0)
        crop = np.ascontiguousarray(np.asarray(img.crop((left, top, left + tw, top + th))))
        _letterbox.fill(geometry.layout, geometry.plan, crop, out, otype, 0, bgr)

    def decode(self, outs: Sequence[np.ndarray], opts: Any, images: Sequence[Any],
               geometries: Sequence[Any]) -> list[Classification]:
        raw = as_f32(outs[0])
        if raw.shape[1] != self.nc:
            raise ModelLoadError(f"expected classifier outputs [batch, {self.nc}], got {list(raw.shape)}")
        results = []
        for probs, image in zip(raw, images):
            total = float(probs.sum(dtype=np.float64))
            if not (probs.min() >= 0.0 and probs.max() <= 1.0 and abs(total - 1.0) <= 1e-3):
                raise ModelLoadError(f"the classifier gave scores in [{float(probs.min()):g}, {float(probs.max()):g}] "
                                     f"summing to {total:g}: not softmax probabilities (export with Ultralytics, "
                                     "whose classifiers end in a softmax)")
            results.append(Classification(probs.copy(), self.names, image.pixels.shape[:2]))
        return results
