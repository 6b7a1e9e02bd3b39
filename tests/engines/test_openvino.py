"""The OpenVINO adapter honours the engine contract on the real detector, from ONNX and from IR."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import modelserve as ms

ov = pytest.importorskip("openvino", reason="openvino not installed: pip install modelserve[openvino]")
from modelserve.engines import OnnxRuntimeEngine, OpenVINOEngine  # noqa: E402
from modelserve.engines._openvino import parse_device, read_ultralytics_yaml  # noqa: E402


@pytest.fixture(scope="module")
def ov_engine(detector_path):
    with OpenVINOEngine(str(detector_path)) as eng:
        yield eng


@pytest.fixture(scope="module")
def ir_path(detector_path, tmp_path_factory):
    """A real OpenVINO IR of the detector, as ``openvino.convert_model`` + ``save_model`` make it."""
    out = tmp_path_factory.mktemp("ir") / "320n.xml"
    ov.save_model(ov.convert_model(str(detector_path)), str(out), compress_to_fp16=False)
    return out


def _x(batch=2, h=320, w=256):
    return np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32)


def test_specs_and_metadata(ov_engine):
    assert ov_engine.name == "openvino" and ov_engine.device == "cpu" and ov_engine.execution_devices == ("CPU",)
    assert ov_engine.inputs == (ms.TensorSpec("images", (None, 3, None, None), np.dtype(np.float32)),)
    assert ov_engine.outputs[0].name == "output0" and ov_engine.outputs[0].shape[:2] == (None, 22)
    assert ov_engine.metadata["stride"] == "32" and "FACE_FEMALE" in ov_engine.metadata["names"]


def test_same_numbers_as_onnxruntime(ov_engine, detector_path):
    x = _x()
    (got,) = ov_engine.run({"images": x})
    (want,) = OnnxRuntimeEngine(str(detector_path)).run({"images": x})
    assert got.shape == want.shape == (2, 22, 40 * 32 + 20 * 16 + 10 * 8)
    # f32 on both: box coordinates (pixels) agree to ~1e-4, class scores far closer
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-5)


def test_one_infer_request_per_concurrent_caller(detector_path):
    eng = OpenVINOEngine(str(detector_path), num_requests=3)
    x = _x(1, 192, 192)
    (want,) = eng.run({"images": x})
    barrier = threading.Barrier(3)

    def work(i):
        barrier.wait()
        return [eng.run({"images": x})[0] for _ in range(3)]

    with ThreadPoolExecutor(3) as pool:
        results = [o for outs in pool.map(work, range(3)) for o in outs]
    for o in results:
        np.testing.assert_array_equal(o, want)
    assert 1 <= eng._pool.created <= 3  # requests are created on demand, never more than num_requests
    requests = {id(r) for r in eng._pool._all}
    assert len(requests) == eng._pool.created  # distinct requests, never one shared
    eng.close()
    eng.close()
    with pytest.raises(ms.ModelserveError, match="closed"):
        eng.run({"images": x})


def test_ir_loads_with_metadata_and_same_numbers(ir_path, ov_engine):
    with OpenVINOEngine(str(ir_path)) as eng:
        assert eng.metadata["names"] == ov_engine.metadata["names"] and eng.metadata["imgsz"] == "[320, 320]"
        x = _x(1)
        np.testing.assert_array_equal(eng.run({"images": x})[0], ov_engine.run({"images": x})[0])


def test_ir_through_load_auto_predicts(ir_path, detector_path, bgr):
    with ms.load(ir_path) as p_ir, ms.load(detector_path, engine="onnxruntime") as p_ort:
        assert p_ir.engine.name == "openvino" and p_ir.imgsz == (320, 320)
        a, b = p_ir.predict(bgr("bus.jpg")), p_ort.predict(bgr("bus.jpg"))
    assert a.class_id.tolist() == b.class_id.tolist() and len(a) > 0
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-3)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.05)


def test_ir_with_ultralytics_metadata_yaml(ir_path, tmp_path, detector_path):
    # An Ultralytics export: names in metadata.yaml next to the .xml (here: no rt_info metadata)
    bare = tmp_path / "model.xml"
    ov.save_model(ov.Core().read_model(str(ir_path)), str(bare))
    model = ov.Core().read_model(str(bare))
    (tmp_path / "metadata.yaml").write_text(
        "description: Ultralytics YOLOv8n model\nauthor: Ultralytics\ndate: '2024-06-29T12:33:11'\n"
        "stride: 32\ntask: detect\nbatch: 1\nimgsz:\n- 320\n- 320\nnames:\n  0: first\n  1: 'second one'\n"
    )
    assert model.has_rt_info(["framework"])  # save_model keeps the ONNX metadata; yaml only fills gaps
    with OpenVINOEngine(str(bare)) as eng:
        assert "FACE_FEMALE" in eng.metadata["names"]


def test_read_ultralytics_yaml_without_pyyaml(monkeypatch):
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda n, *a, **k: (_ for _ in ()).throw(ImportError()) if n == "yaml" else real_import(n, *a, **k))
    text = "author: Ultralytics\nstride: 32\nimgsz:\n- 640\n- 480\nnames:\n  0: person\n  1: 'traffic light'\nend2end: false\n"
    meta = read_ultralytics_yaml(text)
    assert meta["stride"] == "32" and meta["imgsz"] == "[640, 480]" and meta["author"] == "Ultralytics"
    assert meta["names"] == "{0: 'person', 1: 'traffic light'}" and meta["end2end"] == "False"
    from modelserve._metadata import parse_metadata

    info = parse_metadata(meta)
    assert info.names == {0: "person", 1: "traffic light"} and info.imgsz == (640, 480)


@pytest.mark.parametrize(
    "device, expected",
    [("cpu", "CPU"), ("GPU", "GPU"), ("gpu:1", "GPU.1"), ("npu", "NPU"), ("auto", "AUTO"), ("cuda", ms.InvalidInputError), ("gpu:x", ms.InvalidInputError),
     ("gpu:\u00b2", ms.InvalidInputError)],
)
def test_parse_device(device, expected):
    if isinstance(expected, str):
        assert parse_device(device) == expected
    else:
        with pytest.raises(expected, match="device must be"):
            parse_device(device)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"device": "npu"}, ms.EngineUnavailableError, "sees no NPU device"),
        ({"device": "gpu:3"}, ms.EngineUnavailableError, "sees no GPU.3 device"),
        ({"performance_hint": "fast"}, ms.InvalidInputError, "performance_hint"),
        ({"precision": "int4"}, ms.InvalidInputError, "precision"),
        ({"num_requests": 0}, ms.InvalidInputError, "num_requests"),
        ({"threads": 2}, ms.InvalidInputError, "unknown openvino options"),
        ({"config": "x"}, ms.InvalidInputError, "config must be"),
    ],
)
def test_bad_arguments(detector_path, kwargs, exc, match):
    if "device" in kwargs and kwargs["device"].split(":")[0].upper() in {d.split(".")[0] for d in ov.Core().available_devices}:
        pytest.skip(f"this machine has {kwargs['device']}")
    with pytest.raises(exc, match=match):
        OpenVINOEngine(str(detector_path), **kwargs)


def test_bad_files(tmp_path, ir_path):
    with pytest.raises(ms.ModelLoadError, match="not found"):
        OpenVINOEngine(str(tmp_path / "missing.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model" * 20)
    with pytest.raises(ms.ModelLoadError, match="openvino cannot load"):
        OpenVINOEngine(str(bad))
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(ir_path.read_bytes())
    with pytest.raises(ms.ModelLoadError, match="no weights file"):
        OpenVINOEngine(str(lonely))


def test_bad_feeds(ov_engine):
    with pytest.raises(ms.InvalidInputError, match="openvino rejected"):
        ov_engine.run({"images": np.zeros((1, 4, 64, 64), np.float32)})
    with pytest.raises(ms.InvalidInputError, match="float32"):
        ov_engine.run({"images": np.zeros((1, 3, 64, 64), np.float64)})
    with pytest.raises(ms.InvalidInputError, match="expects inputs"):
        ov_engine.run({"x": np.zeros((1, 3, 64, 64), np.float32)})


def test_throughput_hint_and_cache_dir(detector_path, tmp_path):
    cache = tmp_path / "ovcache"
    with OpenVINOEngine(str(detector_path), performance_hint="throughput", cache_dir=str(cache), num_threads=1) as eng:
        assert "THROUGHPUT" in str(eng._compiled.get_property("PERFORMANCE_HINT"))
        assert eng.run({"images": _x(1, 64, 64)})[0].shape[1] == 22
    assert any(cache.iterdir())  # OpenVINO wrote its compiled-model cache there


def test_availability_and_devices():
    ok, version = OpenVINOEngine.availability()
    assert ok and version == ov.__version__.split("-")[0]
    assert "cpu" in OpenVINOEngine.available_devices() and "auto" in OpenVINOEngine.available_devices()


def test_auto_device_keeps_the_precision(ov_engine):
    """device="auto" hands the precision (f32 by default) to the device AUTO picks: its numbers are
    the CPU's f32 numbers, not those of the CPU's own default (bf16 on CPUs with AVX512-BF16/AMX)."""
    x = _x(1)
    (want,) = ov_engine.run({"images": x})
    with OpenVINOEngine(ov_engine.path, device="auto") as auto:
        assert auto.execution_devices == ("CPU",)
        (got,) = auto.run({"images": x})
    np.testing.assert_array_equal(got, want)
    with OpenVINOEngine(ov_engine.path, device="auto", precision="default") as auto_default, \
            OpenVINOEngine(ov_engine.path, precision="default") as cpu_default:
        np.testing.assert_array_equal(auto_default.run({"images": x})[0], cpu_default.run({"images": x})[0])
