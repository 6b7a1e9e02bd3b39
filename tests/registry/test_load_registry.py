"""ms.load with registry references: aliases, locks, integrity, and the engine artifact cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

import modelserve as ms


@pytest.fixture()
def reg(tmp_path, detector_path):
    r = ms.Registry(tmp_path / "registry")
    r.register("det", detector_path, alias="prod")
    return r


def test_load_by_alias_and_version_gives_the_file_results(reg, detector_path, bgr):
    img = bgr("astronaut.png")
    want = ms.load(detector_path).predict(img)
    for ref in ("det@prod", "det:1", "det", f"det@{reg.resolve('det:1').digest}"):
        got = ms.load(ref, registry=reg).predict(img)
        assert got.class_id.tolist() == want.class_id.tolist() and len(got) >= 1
        np.testing.assert_array_equal(got.xyxy, want.xyxy)


def test_default_registry_from_env(tmp_path, detector_path, monkeypatch):
    monkeypatch.setenv("MODELSERVE_HOME", str(tmp_path / "home"))
    ms.Registry().register("det", detector_path, alias="prod")
    p = ms.load("det@prod")
    assert p.names[1] == "FACE_FEMALE"


def test_lock_pins_version_after_alias_moves(reg, tmp_path, fixed_detector_path):
    lock = tmp_path / "modelserve.lock"
    reg.write_lock(["det@prod"], lock)
    reg.register("det", fixed_detector_path, alias="prod")  # version 2, alias moves
    assert not ms.load("det@prod", registry=reg).dynamic  # unlocked: the new fixed-shape version
    assert ms.load("det@prod", registry=reg, lock=lock).dynamic  # locked: still version 1
    with pytest.raises(ms.PinMismatchError):
        ms.load("det:2", registry=reg, lock=lock)


def test_tampered_file_is_refused(reg):
    path = reg.resolve("det:1").path
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ms.IntegrityError):
        ms.load("det@prod", registry=reg)


def test_unknown_reference(reg):
    with pytest.raises(ms.ModelNotFoundError):
        ms.load("nosuch@prod", registry=reg)


def test_openvino_cache_lives_in_the_registry_and_goes_with_gc(reg, bgr, fixed_detector_path):
    pytest.importorskip("openvino")
    digest = reg.resolve("det:1").digest
    p = ms.load("det@prod", registry=reg, engine="openvino")
    assert len(p.predict(bgr("astronaut.png"))) >= 1
    p.close()
    cache = reg.root / "artifacts" / digest.split(":", 1)[1]
    cached = [f for _, _, files in os.walk(cache) for f in files]
    assert cached, "OpenVINO wrote no compiled-model cache into the registry's artifact area"
    # A second load reuses the cache (OpenVINO reads it instead of compiling again).
    ms.load("det@prod", registry=reg, engine="openvino").close()
    assert sorted(f for _, _, files in os.walk(cache) for f in files) == sorted(cached)
    # Once version 1 is deleted, gc removes its cache with it.
    reg.register("det", fixed_detector_path, alias="prod")
    reg.delete_version("det:1")
    reg.gc(min_age_s=0)
    assert not cache.exists()


def test_read_only_registry_gives_no_cache(reg):
    ro = ms.Registry(reg.root, read_only=True)
    assert ro.engine_cache_dir(reg.resolve("det:1").digest, {"engine": "openvino"}) is None
