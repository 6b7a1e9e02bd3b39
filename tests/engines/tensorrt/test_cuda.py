"""The CUDA device name, and the builder's timing cache falling back when TensorRT rejects the
stored one (no GPU)."""

from __future__ import annotations

import importlib.util
import logging
import sys

import pytest

import modelserve as ms
from modelserve.engines.tensorrt.cuda import attach_timing_cache, cuda_index, import_runtime, save_timing_cache

from .trt_fakes import FakeConfig


@pytest.mark.parametrize("device, expected", [("cuda", 0), ("CUDA:3", 3)])
def test_parse_device(device, expected):
    assert cuda_index(device) == expected


@pytest.mark.parametrize("device", ["cpu", "gpu", "cuda:", "tensorrt", "cuda:\u00b2", "cuda:-1", "cuda:1.5"])
def test_bad_device(device):
    with pytest.raises(ms.InvalidInputError, match="device must be 'cuda' or 'cuda:N' for tensorrt"):
        cuda_index(device)


def test_a_tensorrt_folder_on_sys_path_is_not_tensorrt(tmp_path, monkeypatch):
    # e.g. a plan cache called "tensorrt" beside a script: it imports as an empty namespace package
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    (tmp_path / "tensorrt").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    try:
        with pytest.raises(ms.EngineUnavailableError, match=r"^tensorrt not installed: pip install modelserve\[tensorrt\]$"):
            import_runtime()
    finally:
        sys.modules.pop("tensorrt", None)


@pytest.mark.parametrize("bad", ["raise", "none", "mismatch"])
def test_unusable_timing_cache_falls_back_to_an_empty_one(bad, caplog):
    config = FakeConfig(bad=bad)
    with caplog.at_level(logging.WARNING, logger="modelserve.tensorrt"):
        assert attach_timing_cache(config, b"garbage", "/c/timing.cache") is True
    assert config.attached is not None and config.attached.data == b""  # a fresh cache is attached
    assert "timing cache /c/timing.cache is unusable" in caplog.text


def test_good_timing_cache_is_used_and_saved(tmp_path):
    config = FakeConfig()
    assert attach_timing_cache(config, b"STORED", "x") is True and config.attached.data == b"STORED"
    path = tmp_path / "timing.cache"
    assert save_timing_cache(config, str(path)) is True and path.read_bytes() == b"TCACHE"


def test_no_timing_cache_at_all_means_nothing_is_saved(tmp_path, caplog):
    config = FakeConfig(bad="raise", empty_fails=True)
    with caplog.at_level(logging.WARNING, logger="modelserve.tensorrt"):
        assert attach_timing_cache(config, b"garbage", "x") is False
    assert "building without one" in caplog.text
    empty = FakeConfig(serialized=b"")
    attach_timing_cache(empty, b"", "x")
    assert save_timing_cache(empty, str(tmp_path / "t.cache")) is False and not list(tmp_path.iterdir())
