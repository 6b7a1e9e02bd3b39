"""Fixtures of the plotting tests: the real models (detector and task models), loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelserve as ms

TASK_MODELS = Path(__file__).resolve().parents[1] / "goldens" / "tasks" / "models"


@pytest.fixture(scope="session")
def predictor_of(detector_path):
    """``predictor_of(name)``: a Predictor of ``"detector"`` or a task model (``seg``, ``pose``, ``obb``, ``cls``)."""
    loaded: dict = {}

    def get(name: str):
        if name not in loaded:
            path = detector_path if name == "detector" else TASK_MODELS / f"{name}.onnx"
            if not path.is_file():
                pytest.skip(f"{path} is missing")
            loaded[name] = ms.load(path)
        return loaded[name]

    yield get
    for p in loaded.values():
        p.close()
