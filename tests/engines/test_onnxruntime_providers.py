"""ONNX Runtime's execution providers are chosen by ``device``, never by silent fallback."""

from __future__ import annotations

import pytest

import modelserve as ms

ort = pytest.importorskip("onnxruntime")
from modelserve.engines import OnnxRuntimeEngine  # noqa: E402
from modelserve.engines._onnxruntime import parse_device, provider_list  # noqa: E402


@pytest.mark.parametrize(
    "device, expected",
    [("cpu", ("cpu", 0)), ("CUDA", ("cuda", 0)), ("cuda:2", ("cuda", 2)), ("tensorrt", ("tensorrt", 0)),
     ("tensorrt:1", ("tensorrt", 1)), ("openvino", ("openvino", "CPU")), ("openvino:gpu", ("openvino", "GPU")),
     ("openvino:NPU", ("openvino", "NPU"))],
)
def test_parse_device(device, expected):
    assert parse_device(device) == expected


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tensorrt:a", "openvino:TPU", "cpu:0", "", "cuda:\u00b2"])
def test_bad_devices(device):
    with pytest.raises(ms.InvalidInputError, match="device must be"):
        parse_device(device)


def test_provider_lists():
    assert provider_list("cpu", 0, {}) == [("CPUExecutionProvider", {})]
    assert provider_list("cuda", 1, {"provider_options": {"gpu_mem_limit": 1}}) == [
        ("CUDAExecutionProvider", {"device_id": 1, "gpu_mem_limit": 1})]
    trt = provider_list("tensorrt", 0, {"fp16": True})
    assert trt == [("TensorrtExecutionProvider", {"device_id": 0, "trt_fp16_enable": True}),
                   ("CUDAExecutionProvider", {"device_id": 0})]
    assert provider_list("openvino", "GPU", {"fp16": False}) == [
        ("OpenVINOExecutionProvider", {"device_type": "GPU", "precision": "FP32"})]
    with pytest.raises(ms.InvalidInputError, match="fp16 and cache_dir apply"):
        provider_list("cpu", 0, {"fp16": True})


def test_cache_dir_for_tensorrt_provider(tmp_path):
    ((name, opts), _) = provider_list("tensorrt", 0, {"cache_dir": tmp_path / "trt"})
    assert opts["trt_engine_cache_enable"] and opts["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert (tmp_path / "trt").is_dir()


@pytest.mark.parametrize(
    "device, provider, extra",
    [("cuda", "CUDAExecutionProvider", "modelserve[onnxruntime-gpu]"),
     ("tensorrt", "TensorrtExecutionProvider", "modelserve[onnxruntime-gpu]"),
     ("openvino", "OpenVINOExecutionProvider", "modelserve[onnxruntime-openvino]")],
)
def test_missing_provider_raises_naming_the_extra(detector_path, device, provider, extra):
    if provider in ort.get_available_providers():
        pytest.skip(f"this onnxruntime has {provider}")
    import re

    with pytest.raises(ms.EngineUnavailableError, match=f"needs onnxruntime's {provider}.*{re.escape(extra)}"):
        OnnxRuntimeEngine(str(detector_path), device=device)


def test_available_devices_follow_the_providers():
    devices = OnnxRuntimeEngine.available_devices()
    assert devices[0] == "cpu"
    assert ("cuda" in devices) == ("CUDAExecutionProvider" in ort.get_available_providers())
    assert ("tensorrt" in devices) == ("TensorrtExecutionProvider" in ort.get_available_providers())


@pytest.mark.gpu
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_gpu_providers_match_cpu(detector_path, bgr, device):
    provider = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[device]
    if provider not in ort.get_available_providers():
        pytest.skip(f"needs onnxruntime-gpu with {provider} and an NVIDIA GPU")
    with ms.load(detector_path, engine="onnxruntime", device=device) as p, ms.load(detector_path, engine="onnxruntime") as ref:
        a, b = p.predict(bgr("bus.jpg")), ref.predict(bgr("bus.jpg"))
    assert a.class_id.tolist() == b.class_id.tolist()
