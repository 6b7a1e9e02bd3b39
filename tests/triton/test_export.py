"""``modelserve export triton``: a Triton model repository for the real detector, checked with Triton's
own config schema, the OpenVINO IR against ONNX Runtime, and the Python-backend pipeline (run against
a stand-in of ``triton_python_backend_utils``; Triton itself is not run here) against ``predict``."""

from __future__ import annotations

import filecmp
import importlib.util
import json
import sys

import numpy as np
import pytest
from google.protobuf import json_format, text_format

import modelserve as ms
from modelserve.cli import main
from modelserve.triton import TritonExportError, export_repository

from . import pb_utils_stub

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="pip install tritonclient[grpc]")

VERSION = "3"  # a registry version other than Triton's default 1, so the folder name is read from the registry


def parse(path):
    """A config.pbtxt parsed with Triton's schema (text_format refuses unknown fields and bad values)."""
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def registry(detector_path, tmp_path_factory):
    reg = ms.Registry(tmp_path_factory.mktemp("triton-registry"))
    reg.register("det", detector_path, version=VERSION, alias="prod")
    return reg


@pytest.fixture(scope="module")
def engine_specs(detector_path):
    with ms.load(detector_path) as p:
        return p.engine.inputs, p.engine.outputs


BATCHING = ms.Batching(max_batch_size=8, max_delay_ms=2.5, max_queue_size=40, timeout_ms=750,
                       max_concurrent_batches=2)


@pytest.fixture(scope="module")
def repo(registry, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton-repo") / "models"
    assert export_repository("det@prod", out, registry=registry, batching=BATCHING) == out
    return out


def _types(config):
    return {t.name: (model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in (*config.input, *config.output)}


def test_model_config_maps_batching_instances_and_tensors(repo, engine_specs):
    config = parse(repo / "det" / "config.pbtxt")
    assert config.name == "det" and config.backend == "onnxruntime" and config.default_model_filename == "model.onnx"
    assert config.max_batch_size == BATCHING.max_batch_size
    db = config.dynamic_batching
    assert list(db.preferred_batch_size) == [BATCHING.max_batch_size]
    assert db.max_queue_delay_microseconds == 2500
    policy = db.default_queue_policy
    assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    assert policy.default_timeout_microseconds == 750_000 and policy.allow_timeout_override
    assert policy.max_queue_size == BATCHING.queue_bound == 40
    (group,) = config.instance_group
    assert group.count == BATCHING.max_concurrent_batches and group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    inputs, outputs = engine_specs
    want = {t.name: ("TYPE_FP32", [-1 if d is None else d for d in t.shape[1:]]) for t in (*inputs, *outputs)}
    assert _types(config) == want  # names, types and dims without the batch dim, as the model declares them


def test_model_bytes_are_the_registry_blob(repo, registry):
    mv = registry.resolve("det@prod")
    assert sorted(p.name for p in (repo / "det").iterdir()) == [VERSION, "config.pbtxt"]
    assert filecmp.cmp(repo / "det" / VERSION / "model.onnx", mv.path, shallow=False)
    assert filecmp.cmp(repo / "det_pipeline" / VERSION / "model.onnx", mv.path, shallow=False)


def test_pipeline_config(repo):
    config = parse(repo / "det_pipeline" / "config.pbtxt")
    assert config.backend == "python" and config.max_batch_size == BATCHING.max_batch_size
    assert config.dynamic_batching.default_queue_policy.max_queue_size == BATCHING.queue_bound
    assert _types(config) == {
        "image": ("TYPE_STRING", [1]), "conf": ("TYPE_FP32", [1]), "iou": ("TYPE_FP32", [1]),
        "boxes": ("TYPE_FP32", [-1, 4]), "scores": ("TYPE_FP32", [-1]), "class_ids": ("TYPE_INT64", [-1]),
        "counts": ("TYPE_INT64", [1]), "json": ("TYPE_STRING", [1]),
    }
    assert [i.name for i in config.input if i.optional] == ["conf", "iou"]
    assert config.parameters["modelserve_model_file"].string_value == "model.onnx"
    assert (repo / "det_pipeline" / VERSION / "model.py").is_file()


def test_without_batching_the_batch_dim_stays(registry, tmp_path, engine_specs):
    out = export_repository("det@prod", tmp_path / "m", registry=registry, device="cuda:1", instances=3)
    config = parse(out / "det" / "config.pbtxt")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    inputs, _ = engine_specs
    assert list(config.input[0].dims) == [-1 if d is None else d for d in inputs[0].shape]
    (group,) = config.instance_group
    assert (group.count, group.kind, list(group.gpus)) == (3, model_config_pb2.ModelInstanceGroup.KIND_GPU, [1])
    pipe = parse(out / "det_pipeline" / "config.pbtxt")
    assert _types(pipe)["image"] == ("TYPE_STRING", [-1]) and _types(pipe)["boxes"] == ("TYPE_FP32", [-1, -1, 4])


def test_openvino_ir_gives_onnxruntime_outputs(registry, tmp_path, bgr, detector_path):
    ov = pytest.importorskip("openvino")
    out = export_repository("det@prod", tmp_path / "m", registry=registry, format="openvino",
                            batching=BATCHING, pipeline=False)
    config = parse(out / "det" / "config.pbtxt")
    assert config.backend == "openvino" and config.default_model_filename == "model.xml"
    assert sorted(p.name for p in (out / "det" / VERSION).iterdir()) == ["model.bin", "model.xml"]
    assert not (out / "det_pipeline").exists()
    tensor, _ = ms.ops.letterbox(bgr("bus.jpg"), 320, auto=True)  # the rect letterbox the Predictor feeds it
    x = tensor[None]
    compiled = ov.Core().compile_model(str(out / "det" / VERSION / "model.xml"), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled({"images": x})[compiled.output(0)]
    with ms.load(detector_path, engine="onnxruntime") as p:
        (want,) = p.engine.run({"images": x})
    assert got.shape == want.shape and got.shape[1] == 22
    # Both FP32 (the IR keeps FP32 weights): box channels are pixels up to 320 and agree to ~1e-4,
    # class scores far closer; the same bound as tests/engines/test_openvino.py.
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-5)


def test_plan_from_the_registry_cache(registry, tmp_path):
    from modelserve.engines.tensorrt.plan_cache import write_plan

    mv = registry.resolve("det@prod")
    with pytest.raises(ms.EngineUnavailableError, match="GPU"):
        export_repository("det@prod", tmp_path / "a", registry=registry, format="plan")  # device cpu
    with pytest.raises(ms.EngineUnavailableError, match="no TensorRT plan"):
        export_repository("det@prod", tmp_path / "b", registry=registry, format="plan", device="cuda:0")
    assert not (tmp_path / "b").exists()  # a refused export leaves no folder behind
    # A plan cached the way modelserve's TensorRT engine caches one (its own writer, its sidecar
    # format); the bytes stand in for a real plan, which only a GPU host can build.
    cache = registry.engine_cache_dir(mv.digest, {"engine": "tensorrt", "device": "cuda:0"})
    key = {"onnx_sha256": "x", "tensorrt": "10.0", "gpu": "test", "precision": "fp32",
           "profile": {"images": [[1, 3, 32, 32], [4, 3, 320, 320], [4, 3, 320, 320]]}}
    sidecar = {"inputs": [{"name": "images", "dims": ["batch", 3, "h", "w"], "dtype": "float32"}],
               "outputs": [{"name": "output0", "dims": ["batch", 22, "anchors"], "dtype": "float32"}]}
    plan = write_plan(str(cache), key, b"plan bytes", sidecar)
    out = export_repository("det@prod", tmp_path / "c", registry=registry, format="plan", device="cuda:0",
                            batching=BATCHING, pipeline=False)
    config = parse(out / "det" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert filecmp.cmp(out / "det" / VERSION / "model.plan", plan, shallow=False)
    assert config.max_batch_size == 4  # the profile's top, below Batching.max_batch_size=8
    assert _types(config) == {"images": ("TYPE_FP32", [3, -1, -1]), "output0": ("TYPE_FP32", [22, -1])}


def _initialised(folder, version, monkeypatch):
    """An exported model.py, initialised as Triton's Python backend would (config JSON, folders)."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils_stub)
    spec = importlib.util.spec_from_file_location("exported_triton_model", folder / version / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = json_format.MessageToJson(parse(folder / "config.pbtxt"), preserving_proto_field_name=True)
    model = module.TritonPythonModel()
    model.initialize({"model_config": config, "model_instance_kind": "CPU", "model_instance_device_id": "0",
                      "model_repository": str(folder), "model_version": version, "model_name": folder.name})
    return model


@pytest.fixture()
def pipeline_model(repo, monkeypatch):
    model = _initialised(repo / "det_pipeline", VERSION, monkeypatch)
    yield model
    model.finalize()


def _images(*data):
    arr = np.empty((len(data), 1), dtype=object)
    arr[:, 0] = data
    return arr


def _check(response, results):
    assert not response.has_error(), response.error().message()
    t = {x.name(): x.as_numpy() for x in response.output_tensors()}
    assert list(t) == ["boxes", "scores", "class_ids", "counts", "json"]
    assert t["counts"].shape == (len(results), 1) and t["json"].shape == (len(results), 1)
    for i, r in enumerate(results):
        n = len(r)
        assert t["counts"][i, 0] == n
        np.testing.assert_array_equal(t["boxes"][i, :n], r.xyxy)
        np.testing.assert_array_equal(t["scores"][i, :n], r.confidence)
        np.testing.assert_array_equal(t["class_ids"][i, :n], r.class_id)
        assert (t["class_ids"][i, n:] == -1).all()
        got, expected = json.loads(t["json"][i, 0]), json.loads(r.to_json())
        for volatile in ("speed", "origin"):  # timings, and the image's position in its call
            got.pop(volatile), expected.pop(volatile)
        assert got == expected
    assert t["boxes"].dtype == np.float32 and t["class_ids"].dtype == np.int64


def test_pipeline_gives_predict_detections(pipeline_model, photo, detector_path):
    bus, zidane = photo("bus.jpg").read_bytes(), photo("zidane.jpg").read_bytes()
    stub = pb_utils_stub
    requests = [
        stub.Request({"image": _images(bus)}),
        stub.Request({"image": _images(zidane, bus)}, {"conf": 0.05}),  # this detector finds little on zidane
        stub.Request({"image": _images(bus)}, {"conf": 0.4, "classes": "0,3"}),
        stub.Request({"image": _images(b"not an image")}, {"max_det": 5}),
        stub.Request({"image": _images(zidane), "conf": np.array([[2.0**-6]], np.float32)}),  # exact in FP32
        stub.Request({"image": _images(zidane)}),  # runs in one predict call with request 0 (same options)
        stub.Request({"image": _images(bus)}, {"max_det": 5}),  # its neighbour's bad image must not fail it
    ]
    responses = pipeline_model.execute(requests)
    assert len(responses) == len(requests)
    with ms.load(detector_path) as p:
        want = [[p.predict(bus)], [p.predict(zidane, conf=0.05), p.predict(bus, conf=0.05)],
                [p.predict(bus, conf=0.4, classes=[0, 3])], None, [p.predict(zidane, conf=2.0**-6)],
                [p.predict(zidane)], [p.predict(bus, max_det=5)]]
    assert all(len(r) for i in (0, 1, 4, 6) for r in want[i])  # real detections to compare, padding in request 1
    assert len(want[1][0]) != len(want[1][1]) and len(want[5][0]) == 0  # and an image with none
    for response, results in zip(responses, want):
        if results is not None:
            _check(response, results)
    assert responses[3].has_error() and "image" in responses[3].error().message().lower()
    assert not responses[3].output_tensors()


def test_pipeline_refuses_bad_options_per_request(pipeline_model, photo):
    bus = photo("bus.jpg").read_bytes()
    stub = pb_utils_stub
    responses = pipeline_model.execute([
        stub.Request({"image": _images(bus)}, {"classes": "person"}),
        stub.Request({"conf": np.array([[0.5]], np.float32)}),
        stub.Request({"image": _images(bus)}),
    ])
    assert "classes" in responses[0].error().message()
    assert "image" in responses[1].error().message()
    assert not responses[2].has_error()


def test_refusals(registry, tmp_path, detector_path):
    with pytest.raises(ms.InvalidInputError, match="format"):
        export_repository("det@prod", tmp_path / "a", registry=registry, format="torchscript")
    with pytest.raises(ms.InvalidInputError, match="device"):
        export_repository("det@prod", tmp_path / "a", registry=registry, device="tpu")
    with pytest.raises(ms.InvalidInputError, match="block"):
        export_repository("det@prod", tmp_path / "a", registry=registry, batching=ms.Batching(on_full="block"))
    with pytest.raises(ms.ModelNotFoundError):
        export_repository("nope@prod", tmp_path / "a", registry=registry)
    registry.register("labelled", detector_path, version="v2")
    with pytest.raises(TritonExportError, match="--version"):
        export_repository("labelled:v2", tmp_path / "a", registry=registry)
    out = export_repository("labelled:v2", tmp_path / "a", registry=registry, version=7, pipeline=False)
    assert (out / "labelled" / "7" / "model.onnx").is_file()
    xml = tmp_path / "model.xml"
    xml.write_text("<net/>")
    with pytest.raises(TritonExportError, match="ONNX"):
        export_repository(xml, tmp_path / "b")
    # a file path: its stem as the name, version 1
    out = export_repository(detector_path, tmp_path / "c", pipeline=False)
    assert parse(out / detector_path.stem / "config.pbtxt").name == detector_path.stem
    assert (out / detector_path.stem / "1" / "model.onnx").is_file()


def test_cli(registry, tmp_path, capsys):
    out = tmp_path / "repo"
    root = str(registry.root)
    assert main(["export", "triton", "det@prod", str(out), "--root", root, "--max-batch-size", "4",
                 "--max-delay-ms", "1", "--instances", "2"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    config = parse(out / "det" / "config.pbtxt")
    assert config.max_batch_size == 4 and config.dynamic_batching.max_queue_delay_microseconds == 1000
    assert config.instance_group[0].count == 2 and (out / "det_pipeline" / VERSION / "model.py").is_file()

    assert main(["export", "triton", "missing@prod", str(tmp_path / "x"), "--root", root]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing" in err

    assert main(["export", "triton", "det@prod", str(out), "--root", root]) == 1  # OUT is not empty
    err = capsys.readouterr().err
    assert "--force" in err and err.count("\n") == 1
    before = (out / "det" / "config.pbtxt").read_text()
    assert main(["export", "triton", "det@prod", str(out), "--root", root, "--force", "--max-batch-size", "0"]) == 0
    assert (out / "det" / "config.pbtxt").read_text() != before
    assert parse(out / "det" / "config.pbtxt").max_batch_size == 0
    assert sorted(p.name for p in out.iterdir()) == ["det", "det_pipeline"]  # no staging folder left


def test_cli_layout_reaches_the_pipeline(tmp_path, monkeypatch, photo):
    """A model without metadata that needs layout= (ddddocr's YOLOX) is exported with --layout, and
    the pipeline loads it so: its detections are ms.load(..., layout="yolox")'s."""
    from tests.tasks.test_yolox import _ddddocr_model

    model = _ddddocr_model()
    out = tmp_path / "repo"
    assert main(["export", "triton", str(model), str(out)]) == 1  # the shape cannot say it
    assert main(["export", "triton", str(model), str(out), "--layout", "yolox", "--name", "dd"]) == 0
    pipeline = _initialised(out / "dd_pipeline", "1", monkeypatch)
    try:
        bus = photo("bus.jpg").read_bytes()
        (response,) = pipeline.execute([pb_utils_stub.Request({"image": _images(bus)})])
        with ms.load(model, layout="yolox") as p:
            _check(response, [p.predict(bus)])
    finally:
        pipeline.finalize()
