"""Engines are found through entry points, listed by ``list_engines`` and chosen by ``auto``."""

from __future__ import annotations

import dataclasses
import importlib.metadata

import pytest

import modelserve as ms
from modelserve import _engine_catalog as reg
from modelserve.engines import OnnxRuntimeEngine, OpenVINOEngine, TensorRTEngine


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_builtins_are_registered_as_entry_points():
    # setup.py declares them like any plugin; the installed metadata must carry all three
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=reg.ENTRY_POINT_GROUP)}
    assert eps["onnxruntime"] == "modelserve.engines._onnxruntime:OnnxRuntimeEngine"
    assert eps["openvino"] == "modelserve.engines._openvino:OpenVINOEngine"
    assert eps["tensorrt"] == "modelserve.engines.tensorrt:TensorRTEngine"


@pytest.mark.parametrize(
    "name, cls",
    [("onnxruntime", OnnxRuntimeEngine), ("ORT", OnnxRuntimeEngine), ("openvino", OpenVINOEngine), ("ov", OpenVINOEngine),
     ("tensorrt", TensorRTEngine), ("trt", TensorRTEngine)],
)
def test_engine_class_by_name_and_alias(name, cls):
    assert reg.engine_class(name) is cls


def test_unknown_engine_lists_known_ones():
    with pytest.raises(ms.EngineUnavailableError, match=r"unknown engine 'nope'; known engines: \['onnxruntime', 'openvino', 'tensorrt'"):
        reg.engine_class("nope")


def test_list_engines_reports_every_builtin():
    infos = {e.name: e for e in reg.list_engines()}
    assert [e.name for e in reg.list_engines()][:3] == ["onnxruntime", "openvino", "tensorrt"]
    ort = infos["onnxruntime"]
    assert ort.available and ort.origin == "builtin" and "cpu" in ort.devices and ort.reason is None
    import onnxruntime

    assert ort.version == onnxruntime.__version__
    with pytest.raises(dataclasses.FrozenInstanceError):
        ort.name = "x"  # frozen
    trt = infos["tensorrt"]
    if not _has("tensorrt"):
        assert not trt.available and trt.version is None and trt.devices == ()
        assert trt.reason == "tensorrt not installed: pip install modelserve[tensorrt]"
    ov = infos["openvino"]
    if _has("openvino"):
        assert ov.available and "cpu" in ov.devices
    else:
        assert ov.reason == "openvino not installed: pip install modelserve[openvino]"


@pytest.mark.parametrize(
    "path, engine, device, expected",
    [
        ("m.xml", "auto", "cpu", OpenVINOEngine),
        ("m.engine", "auto", "cuda", TensorRTEngine),
        ("m.PLAN", "auto", "cuda:1", TensorRTEngine),
        ("m.onnx", "onnxruntime", "cpu", OnnxRuntimeEngine),  # explicit wins over everything
        ("m.xml", "onnxruntime", "cpu", OnnxRuntimeEngine),
        ("m.onnx", OnnxRuntimeEngine, "cpu", OnnxRuntimeEngine),
        ("m.onnx", "auto", "tensorrt", OnnxRuntimeEngine),  # ONNX Runtime's execution providers
        ("m.onnx", "auto", "openvino:GPU", OnnxRuntimeEngine),
    ],
)
def test_choice_by_name_and_file_type(path, engine, device, expected):
    assert reg.choose_engine(path, engine, device) is expected


def test_auto_on_cpu_follows_the_static_preference(monkeypatch):
    # onnxruntime first (not beaten by openvino on this CPU, benchmarks/RESULTS.md), then openvino
    assert reg.AUTO_PREFERENCE["cpu"] == ("onnxruntime", "openvino")
    assert reg.choose_engine("m.onnx", "auto", "cpu") is OnnxRuntimeEngine
    assert reg.explain_choice("m.onnx") == "onnxruntime: first engine in the 'cpu' preference ['onnxruntime', 'openvino'] that can use 'cpu'"
    if _has("openvino"):  # without onnxruntime, openvino takes over, and the explanation says why
        monkeypatch.setattr(OnnxRuntimeEngine, "availability", classmethod(lambda cls: (False, "onnxruntime not installed")))
        assert reg.choose_engine("m.onnx", "auto", "cpu") is OpenVINOEngine
        assert "(skipped onnxruntime: onnxruntime not installed)" in reg.explain_choice("m.onnx")


def test_auto_skips_engines_that_do_not_take_the_options():
    assert reg.choose_engine("m.onnx", "auto", "cpu", options=["intra_op_threads"]) is OnnxRuntimeEngine
    if _has("openvino"):
        assert reg.choose_engine("m.onnx", "auto", "cpu", options=["performance_hint"]) is OpenVINOEngine
        why = reg.explain_choice("m.onnx", options=["performance_hint"])
        assert "skipped onnxruntime: does not take engine_options ['performance_hint']" in why


def test_auto_load_uses_the_choice(detector_path):
    with ms.load(detector_path, engine_options={"intra_op_threads": 1}) as p:
        assert p.engine.name == "onnxruntime"
    with ms.load(detector_path) as p:
        assert p.engine.name == reg.choose_engine(str(detector_path)).name
    if _has("openvino"):
        with ms.load(detector_path, engine_options={"performance_hint": "throughput"}) as p:
            assert p.engine.name == "openvino"


def test_auto_without_a_fitting_engine_says_why_for_each(detector_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ms.EngineUnavailableError) as info:
        reg.open_engine(str(detector_path), device="cuda")
    msg = str(info.value)
    assert "CUDAExecutionProvider" in msg and "pip install modelserve[onnxruntime-gpu]" in msg
    if not _has("tensorrt"):
        assert "tensorrt: tensorrt not installed: pip install modelserve[tensorrt]" in msg
    assert "no engine fits; onnxruntime will say why" in reg.explain_choice(str(detector_path), device="cuda")


@pytest.mark.parametrize(
    "path, device, exc, match",
    [
        ("m.tflite", "cpu", ms.EngineUnavailableError, "no engine handles '.tflite' files"),
        ("m.onnx", "tpu", ms.InvalidInputError, "device must be one of"),
        ("m.onnx", "cpu", ms.InvalidInputError, "engine must be a name"),
    ],
)
def test_choice_errors(path, device, exc, match):
    engine = int if match.startswith("engine must") else "auto"
    with pytest.raises(exc, match=match):
        reg.choose_engine(path, engine, device)


class _EP:
    """Stands in for importlib.metadata.EntryPoint."""

    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value


def test_plugins_cannot_take_builtin_names_and_bad_plugins_are_reported(monkeypatch):
    fake = [
        _EP("onnxruntime", "modelserve.engines._onnxruntime:OnnxRuntimeEngine"),
        _EP("onnxruntime", "evil_pkg:Engine"),  # a plugin claiming a built-in's name
        _EP("ghost", "no_such_module_xyz:Engine"),
        _EP("notengine", "collections:OrderedDict"),
    ]
    monkeypatch.setattr(reg.importlib.metadata, "entry_points", lambda group: list(fake) if group == reg.ENTRY_POINT_GROUP else [])
    assert reg.engine_class("onnxruntime") is OnnxRuntimeEngine
    # built-ins missing from entry points (a source tree never installed) are still known
    assert reg.engine_class("openvino") is OpenVINOEngine
    infos = reg.list_engines()
    names = [(e.name, e.origin) for e in infos]
    assert names[:3] == [("onnxruntime", "builtin"), ("openvino", "builtin"), ("tensorrt", "builtin")]
    by_target = {e.target: e for e in infos}
    assert by_target["evil_pkg:Engine"].reason == "name 'onnxruntime' is taken by modelserve.engines._onnxruntime:OnnxRuntimeEngine"
    ghost = by_target["no_such_module_xyz:Engine"]
    assert not ghost.available and ghost.origin == "plugin" and "cannot import engine" in ghost.reason
    assert "is not a modelserve Engine subclass" in by_target["collections:OrderedDict"].reason
    with pytest.raises(ms.EngineUnavailableError, match="cannot import engine no_such_module_xyz:Engine"):
        reg.engine_class("ghost")


def test_the_engines_package_is_callable():
    # ms.engines() must keep working after modelserve.engines (the subpackage) has been imported
    import modelserve.engines as engines_pkg

    assert [e.name for e in engines_pkg()] == [e.name for e in reg.list_engines()]
    assert engines_pkg.OnnxRuntimeEngine is OnnxRuntimeEngine


def test_list_engines_is_public_and_the_callable_package_agrees():
    import modelserve as ms

    names = [e.name for e in ms.list_engines()]
    assert {"onnxruntime", "openvino", "tensorrt"} <= set(names)
    assert [e.name for e in ms.engines()] == names
