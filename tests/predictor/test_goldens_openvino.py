"""The golden tests (tests/predictor/test_goldens.py) on OpenVINO (CPU), named explicitly: it must give
Ultralytics' detections like ONNX Runtime does. test_goldens.py runs ``auto``, which is ONNX
Runtime on the CPU (``AUTO_PREFERENCE["cpu"]``), so the two modules together cover both engines."""

from __future__ import annotations

import pytest

import modelserve as ms

from .test_goldens import CASES, _case_id, assert_matches_golden

ENGINES = [
    pytest.param("openvino", marks=pytest.mark.skipif(
        __import__("importlib.util").util.find_spec("openvino") is None,
        reason="openvino not installed: pip install modelserve[openvino]")),
]


@pytest.fixture(scope="module")
def predictors(detector_path, fixed_detector_path):
    """One Predictor per (engine, model, imgsz), shared by the cases of this module."""
    cache: dict[tuple, ms.Predictor] = {}

    def get(engine: str, model: str, imgsz):
        key = (engine, model, imgsz)
        if key not in cache:
            path = detector_path if model == "dynamic" else fixed_detector_path
            cache[key] = ms.load(path, engine=engine, imgsz=imgsz)
        return cache[key]

    yield get
    for p in cache.values():
        p.close()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_ultralytics(engine, case, predictors, bgr):
    opts = dict(case["options"])
    p = predictors(engine, case["model"], opts.pop("imgsz", None))
    assert p.engine.name == engine and p.engine.device == "cpu"
    assert_matches_golden(p.predict(bgr(case["photo"]), **opts), case)
