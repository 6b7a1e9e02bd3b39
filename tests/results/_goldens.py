"""Ultralytics' answers for the task models (``tests/goldens/tasks/``) as modelserve results.

:func:`golden_result` builds a :class:`~modelserve.Detections` (or :class:`~modelserve.Classification`)
from a case's golden arrays, so the views' arithmetic can be compared bit for bit with what
Ultralytics computed from the same numbers; :func:`cases` lists the cases of a model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np

import modelserve as ms
from modelserve._mask_crops import MaskCrops

HERE = Path(__file__).resolve().parents[1] / "goldens" / "tasks"
PHOTOS = ["bus.jpg", "zidane.jpg", "astronaut.png", "chelsea.png"]
OPTION_CASE = "bus.jpg|conf=0.1,iou=0.5,max_det=5,agnostic"
OPTIONS = {"conf": 0.1, "iou": 0.5, "max_det": 5, "agnostic": True}


def manifest() -> dict:
    path = HERE / "goldens.json"
    return json.loads(path.read_text()) if path.is_file() else {"models": {}}


MODELS = sorted(m for m in manifest().get("models", {}) if (HERE / f"{m}.npz").is_file()
                and (HERE / "models" / f"{m}.onnx").is_file())


def task_of(model: str) -> str:
    return manifest()["models"][model]["task"]


def cases(model: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(golden key, photo, predict options)`` of each case of ``model``."""
    for photo in PHOTOS:
        yield photo, photo, {}
    if task_of(model) != "classify":
        yield OPTION_CASE, "bus.jpg", OPTIONS


def polygons(g: Any, key: str, name: str = "polygons") -> list[np.ndarray]:
    sizes = g[f"{key}:polygon_sizes"]
    return list(np.split(g[f"{key}:{name}"], np.cumsum(sizes)[:-1])) if len(sizes) else []


def masks(g: Any, key: str) -> np.ndarray:
    shape = tuple(int(v) for v in g[f"{key}:masks_shape"])
    return np.unpackbits(g[f"{key}:masks"])[: int(np.prod(shape))].reshape(shape).astype(bool)


def golden_result(task: str, g: Any, key: str, names: dict, hw: tuple[int, int]) -> Any:
    """The case's golden arrays as a modelserve result of an ``hw`` image."""
    if task == "classify":
        return ms.Classification(g[f"{key}:probs"], names, hw)
    conf, cls = g[f"{key}:conf"], g[f"{key}:cls"]
    kwargs: dict[str, Any] = {}
    if task == "obb":
        xywhr = g[f"{key}:xywhr"]
        kwargs["xywhr"] = xywhr
        xyxy = np.concatenate([g[f"{key}:corners"].min(1), g[f"{key}:corners"].max(1)], 1) if len(xywhr) else np.zeros((0, 4))
    else:
        xyxy = g[f"{key}:xyxy"]
    if task == "pose":
        kwargs["keypoints"] = g[f"{key}:keypoints"]
    if task == "segment":
        kwargs["mask_crops"] = MaskCrops(list(masks(g, key)), np.zeros((len(conf), 2), np.int64), hw)
    return ms.Detections(xyxy, conf, cls, names, hw, **kwargs)


def assert_tree_close(a, b, atol: float, path: str = "") -> None:
    """``a`` equals ``b`` (nested dicts and lists), floats within ``atol``."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and list(a) == list(b), path
        for k in b:
            assert_tree_close(a[k], b[k], atol, f"{path}.{k}")
    elif isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_close(x, y, atol, f"{path}[{i}]")
    elif isinstance(b, float):
        assert isinstance(a, float) and math.isclose(a, b, rel_tol=0, abs_tol=atol), (path, a, b)
    else:
        assert type(a) is type(b) and a == b, (path, a, b)
