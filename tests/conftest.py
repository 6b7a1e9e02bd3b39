"""Shared fixtures: the real detector, its fixed-shape variant, real photos."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests import assets  # not `import assets` from tests/ on sys.path: tests/triton would shadow the triton package


def _need(fn, *args):
    """The asset, or a skip when its package is missing; under CI (``CI`` set) a missing asset
    fails the test, so a green CI run always compared against the real models and photos."""
    try:
        return fn(*args)
    except assets.AssetUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"test asset unavailable under CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def detector_path() -> Path:
    return _need(assets.detector_path)


@pytest.fixture(scope="session")
def fixed_detector_path() -> Path:
    return _need(assets.fixed_detector_path)


@pytest.fixture(scope="session")
def photo():
    """``photo(name)`` -> path of a real photo (skimage data or Ultralytics' bus/zidane)."""
    return lambda name: _need(assets.photo, name)


@pytest.fixture(scope="session")
def bgr():
    """``bgr(name)`` -> the photo decoded by modelserve, as an OpenCV-style BGR uint8 array."""
    from modelserve._images import load_image

    def load(name: str) -> np.ndarray:
        img = load_image(str(_need(assets.photo, name)))
        return img.pixels if img.bgr else np.ascontiguousarray(img.pixels[..., ::-1])

    return load


@pytest.fixture(scope="session")
def predictor(detector_path):
    import modelserve as ms

    with ms.load(detector_path) as p:
        yield p


@pytest.fixture(scope="session")
def fixed_predictor(fixed_detector_path):
    import modelserve as ms

    with ms.load(fixed_detector_path) as p:
        yield p
