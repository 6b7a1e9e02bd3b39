"""Fixtures of the source tests: the photos at one size, and real videos made from them once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import assets

from .support import PHOTOS, SIZE, encode


@pytest.fixture(scope="session")
def rgb_photos() -> list[np.ndarray]:
    """The photos as RGB arrays of one size (a video's frames share one)."""
    from PIL import Image

    out = []
    for name in PHOTOS:
        try:
            path = assets.photo(name)
        except assets.AssetUnavailable as exc:
            pytest.skip(str(exc))
        out.append(np.asarray(Image.open(path).convert("RGB").resize(SIZE[::-1], Image.BILINEAR)))
    return out


@pytest.fixture(scope="session")
def clip(tmp_path_factory, rgb_photos):
    """``clip(name, n=..., codec=..., pix_fmt=..., rotation=...)`` -> path of a real video, made once."""
    made: dict = {}
    root = tmp_path_factory.mktemp("clips")

    def make(name: str, n: int = 20, **kwargs) -> Path:
        key = (name, n, tuple(sorted(kwargs.items())))
        if key not in made:
            made[key] = encode(root / f"{len(made)}-{name}", rgb_photos, n, **kwargs)
        return made[key]

    return make


