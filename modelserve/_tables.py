"""Results as tables: Ultralytics' ``Results.summary()`` rows, CSV text and DataFrames.

:func:`detection_rows` and :func:`classification_rows` build the rows of Ultralytics'
``summary(normalize, decimals)`` with its arithmetic (Python ``round`` for boxes and confidences,
NumPy's for polygons and keypoints), so ``json.dumps`` of them reads as Ultralytics' ``to_json()``.
:func:`csv_text` and :func:`dataframe` flatten those rows into one column per value
(``box_x1``, ..., ``segments_x``): lists (polygons, keypoints) stay lists in a DataFrame and are
written as JSON arrays in CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

from ._checks import is_int
from ._errors import InvalidInputError
from ._views import image_hw

__all__ = ["summary_options", "detection_rows", "classification_rows", "detection_columns", "CLASSIFY_COLUMNS",
           "csv_text", "dataframe", "finite_json", "json_options"]

CLASSIFY_COLUMNS = ["name", "class", "confidence"]
SCHEMAS = ("modelserve", "ultralytics")


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float inside dicts and lists replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_json(v) for v in value]
    return value


def summary_options(normalize: Any, decimals: Any) -> tuple[bool, int]:
    """``normalize`` (a bool) and ``decimals`` (an int in -20..20), checked."""
    if not isinstance(normalize, (bool, np.bool_)):
        raise InvalidInputError(f"normalize must be True or False, got {normalize!r}")
    if not is_int(decimals) or not -20 <= int(decimals) <= 20:
        raise InvalidInputError(f"decimals must be an int in -20..20, got {decimals!r}")
    return bool(normalize), int(decimals)


def json_options(schema: Any, normalize: Any, decimals: Any) -> tuple[bool, int] | None:
    """``to_json``'s choice: None for modelserve's schema, else Ultralytics' summary options."""
    if schema not in SCHEMAS:
        raise InvalidInputError(f"schema must be one of {', '.join(map(repr, SCHEMAS))}, got {schema!r}")
    if schema == "modelserve":
        if normalize is not None or decimals is not None:
            raise InvalidInputError("normalize and decimals shape Ultralytics' summary: pass schema='ultralytics'")
        return None
    return summary_options(False if normalize is None else normalize, 5 if decimals is None else decimals)


def _size(orig_shape: Any, normalize: bool) -> tuple[int, int]:
    if not normalize:
        return 1, 1
    hw = image_hw(orig_shape)
    if hw is None:
        raise InvalidInputError(f"normalize=True needs the image size, but these results have orig_shape {orig_shape!r}")
    return hw


def _name(names: Mapping[int, str], c: int) -> str:
    return names.get(c, str(c))


def detection_rows(points: np.ndarray, confidence: np.ndarray, class_id: np.ndarray, names: Mapping[int, str],
                   orig_shape: Any, polygons: Sequence[np.ndarray] | None, keypoints: np.ndarray | None,
                   normalize: bool, decimals: int) -> list[dict[str, Any]]:
    """Ultralytics' ``summary()`` rows: ``points`` ``(n, P, 2)`` are the box corners (2 for boxes,
    4 for rotated boxes), ``polygons`` the masks' outlines, ``keypoints`` ``(n, K, D)``."""
    h, w = _size(orig_shape, normalize)
    if not len(confidence):
        return []
    coords = np.asarray(points, dtype=np.float32).reshape(len(confidence), -1, 2).tolist()
    confs = np.asarray(confidence, dtype=np.float32).tolist()
    rows = []
    for i, c in enumerate(int(v) for v in class_id):
        box = {}
        for j, (x, y) in enumerate(coords[i]):
            box[f"x{j + 1}"] = round(x / w, decimals)
            box[f"y{j + 1}"] = round(y / h, decimals)
        row: dict[str, Any] = {"name": _name(names, c), "class": c, "confidence": round(confs[i], decimals), "box": box}
        if polygons is not None:
            p = polygons[i]
            row["segments"] = {"x": (p[:, 0] / w).astype(float).round(decimals).tolist(),
                               "y": (p[:, 1] / h).astype(float).round(decimals).tolist()}
        if keypoints is not None:
            k = np.asarray(keypoints[i])
            row["keypoints"] = {"x": (k[:, 0] / w).astype(float).round(decimals).tolist(),
                                "y": (k[:, 1] / h).astype(float).round(decimals).tolist()}
            if k.shape[1] == 3:
                row["keypoints"]["visible"] = k[:, 2].astype(float).round(decimals).tolist()
        rows.append(row)
    return rows


def classification_rows(probs: np.ndarray, top5: list[int], names: Mapping[int, str], decimals: int) -> list[dict]:
    """Ultralytics' ``summary()`` of a classification: the five best classes, best first."""
    confs = np.asarray(probs)[top5].tolist()
    return [{"name": _name(names, c), "class": c, "confidence": round(conf, decimals)} for c, conf in zip(top5, confs)]


def detection_columns(points: int, segments: bool, keypoint_dims: int | None) -> list[str]:
    """The flat columns of :func:`detection_rows`: ``points`` corners per box."""
    cols = ["name", "class", "confidence"] + [f"box_{a}{j}" for j in range(1, points + 1) for a in "xy"]
    if segments:
        cols += ["segments_x", "segments_y"]
    if keypoint_dims is not None:
        cols += ["keypoints_x", "keypoints_y"] + (["keypoints_visible"] if keypoint_dims == 3 else [])
    return cols


def _flat(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update({f"{key}_{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def csv_text(rows: Sequence[Mapping[str, Any]], columns: list[str]) -> str:
    """CSV (``\\n`` line ends) with a header of ``columns``, one line per row, lists as JSON arrays."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        flat = _flat(row)
        writer.writerow([json.dumps(finite_json(v)) if isinstance(v, list) else v for v in (flat[c] for c in columns)])
    return buf.getvalue()


def _kind(column: str) -> str:
    if column == "name":
        return "str"
    if column == "class":
        return "int"
    return "list" if column.startswith(("segments_", "keypoints_")) else "float"


def dataframe(rows: Sequence[Mapping[str, Any]], columns: list[str]) -> Any:
    """A pandas DataFrame (else, when pandas is missing, a polars one) with one row per row."""
    data: dict[str, list[Any]] = {c: [] for c in columns}
    for row in rows:
        flat = _flat(row)
        for c in columns:
            data[c].append(flat[c])
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None:
        kinds = {"int": "int64", "float": "float64"}
        return pd.DataFrame({c: pd.Series(v, dtype=kinds.get(_kind(c))) for c, v in data.items()}, columns=columns)
    try:
        import polars as pl
    except ImportError:
        raise ImportError("to_df() needs pandas (or polars): pip install pandas") from None
    types: dict[str, Any] = {"str": pl.String, "int": pl.Int64, "float": pl.Float64, "list": pl.List(pl.Float64)}
    return pl.DataFrame(data, schema={c: types[_kind(c)] for c in columns})
