"""Detections equal Ultralytics' own predictions on the same model and the same decoded photo.

The goldens (tests/goldens/detector.json) were made by tests/goldens/make_goldens.py with
``ultralytics.YOLO(model).predict(array)``. Same classes in the same order, IoU > 0.99 per box,
confidence within 1e-3.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import modelserve as ms

GOLDENS = json.loads((Path(__file__).resolve().parents[1] / "goldens" / "detector.json").read_text())
CASES = GOLDENS["cases"]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 2], b[:, 2])
    y2 = np.minimum(a[:, 3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def assert_matches_golden(result: ms.Detections, case: dict) -> None:
    want_cls = np.asarray(case["class_id"], dtype=np.int64)
    want_conf = np.asarray(case["confidence"], dtype=np.float32)
    want_xyxy = np.asarray(case["xyxy"], dtype=np.float32).reshape(-1, 4)
    assert result.class_id.tolist() == want_cls.tolist(), (result, case)
    np.testing.assert_allclose(result.confidence, want_conf, atol=1e-3)
    if len(want_xyxy):
        assert _iou(result.xyxy, want_xyxy).min() > 0.99


def _case_id(case: dict) -> str:
    opts = ",".join(f"{k}={v}" for k, v in case["options"].items())
    return f"{case['model']}-{case['photo']}-{opts or 'defaults'}"


def test_goldens_cover_enough_detections():
    # The comparison is only meaningful if the goldens hold real detections of several classes.
    total = sum(len(c["class_id"]) for c in CASES)
    classes = {c for case in CASES for c in case["class_id"]}
    assert total >= 100 and len(classes) >= 5


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_ultralytics(case, detector_path, fixed_detector_path, bgr):
    path = detector_path if case["model"] == "dynamic" else fixed_detector_path
    opts = dict(case["options"])
    imgsz = opts.pop("imgsz", None)
    with ms.load(path, imgsz=imgsz) as p:
        result = p.predict(bgr(case["photo"]), **opts)
    assert result.orig_shape == bgr(case["photo"]).shape[:2]
    assert_matches_golden(result, case)


def test_load_time_defaults_equal_call_overrides(detector_path, bgr):
    case = next(c for c in CASES if c["options"] == {"conf": 0.05, "agnostic": True})
    with ms.load(detector_path, conf=0.05, agnostic=True) as p:
        assert_matches_golden(p.predict(bgr(case["photo"])), case)
