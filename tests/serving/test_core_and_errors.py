"""The error table, the core without a protocol, and what importing the package pulls in."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import modelserve as ms
from modelserve.cli.serve import model_name
from modelserve.serving import ModelRepository, RequestTooLargeError, Tensor, status_for


def without_speed(text: str | bytes) -> dict:
    """A result's JSON without its timings (the only part that differs between two runs)."""
    data = json.loads(text)
    data.pop("speed")
    return data


def assert_same(result, want, k):
    """A client's infer result (tritonclient.http or .grpc) of ``k`` images equals the embedded
    Predictor's results ``want`` exactly, padding included."""
    boxes, scores, ids, counts = (result.as_numpy(n) for n in ("boxes", "scores", "class_ids", "counts"))
    texts = result.as_numpy("json")
    assert counts.tolist() == [len(w) for w in want]
    assert boxes.shape == (k, max(counts), 4) and boxes.dtype == np.float32 and ids.dtype == np.int64
    for i, w in enumerate(want):
        n = len(w)
        np.testing.assert_array_equal(boxes[i, :n], w.xyxy)
        np.testing.assert_array_equal(scores[i, :n], w.confidence)
        np.testing.assert_array_equal(ids[i, :n], w.class_id)
        assert (ids[i, n:] == -1).all() and (scores[i, n:] == 0).all()
        assert without_speed(texts[i]) == without_speed(w.to_json())


@pytest.mark.parametrize(("exc", "http", "grpc"), [
    (RequestTooLargeError("x"), 413, "RESOURCE_EXHAUSTED"),
    (ms.InvalidInputError("x"), 400, "INVALID_ARGUMENT"),
    (ms.SourceError("x"), 400, "INVALID_ARGUMENT"),
    (ms.ModelNotFoundError("x"), 404, "NOT_FOUND"),
    (ms.QueueFullError("x"), 503, "UNAVAILABLE"),
    (ms.BatcherClosedError("x"), 503, "UNAVAILABLE"),
    (ms.DeadlineExceededError("x"), 504, "DEADLINE_EXCEEDED"),
    (ms.EngineUnavailableError("x"), 503, "UNAVAILABLE"),
    (ms.ModelLoadError("x"), 500, "INTERNAL"),
    (ms.IntegrityError("x"), 500, "INTERNAL"),
    (ms.InvalidNameError("x"), 400, "INVALID_ARGUMENT"),  # a ValueError from the registry: the client's
    (RuntimeError("x"), 500, "INTERNAL"),
])
def test_each_error_has_one_status(exc, http, grpc):
    status = status_for(exc)
    assert (status.http, status.grpc) == (http, grpc)
    assert (status.retry_after is not None) == isinstance(exc, ms.QueueFullError)


def test_importing_modelserve_and_its_serving_core_imports_no_server_stack():
    code = ("import sys, modelserve, modelserve.cli, modelserve.serving; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn', 'multipart'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_core_infers_without_a_protocol(detector_path, photo, embedded):
    repo = ModelRepository()
    repo.load("det", detector_path, batching=True)
    try:
        data = photo("bus.jpg").read_bytes()
        images = np.empty(1, dtype=object)
        images[0] = data
        out = {t.name: t for t in repo.infer("det", None, [Tensor("image", "BYTES", images)], {"conf": 0.1})}
        (want,) = embedded.predict([data], conf=0.1)
        assert out["counts"].data.tolist() == [len(want)]
        np.testing.assert_array_equal(out["boxes"].data[0], want.xyxy)
        assert without_speed(out["json"].data[0]) == without_speed(want.to_json())
        with pytest.raises(ms.ModelNotFoundError):
            repo.infer("det", "2", [Tensor("image", "BYTES", images)])
        with pytest.raises(ms.InvalidInputError, match="already served"):
            repo.add("det", embedded)
    finally:
        repo.close()


def test_cli_model_names(tmp_path):
    model = tmp_path / "yolov8n.onnx"
    model.write_bytes(b"")
    assert model_name(str(model)) == ("yolov8n", str(model))
    assert model_name("det@prod") == ("det", "det@prod")
    assert model_name("det:3") == ("det", "det:3")
    assert model_name("cars=det@prod") == ("cars", "det@prod")
    assert model_name(f"cars={model}") == ("cars", str(model))


def test_a_registry_reference_is_served_as_the_version_it_names(tmp_path, detector_path):
    """``det@prod`` is resolved once: the server reports that version's number and keeps serving it
    even when the alias moves later (following aliases is a later step)."""
    from modelserve.serving import ModelRepository

    reg = ms.Registry(tmp_path / "reg")
    reg.register("det", detector_path)
    reg.register("det", detector_path, version="2", alias="prod")
    repo = ModelRepository()
    try:
        model = repo.load("det", "det@prod", registry=reg)
        assert model.version == "2" and repo.get("det", "2") is model
        with pytest.raises(ms.ModelNotFoundError, match="no version '1'"):
            repo.get("det", "1")
        reg.set_alias("det", "prod", "1")
        assert repo.get("det").version == "2"
    finally:
        repo.close()


def test_other_layouts_are_served_with_their_options(photo):
    """A YOLOv5-repository model (no metadata) is served as read from its shape; ``multi_label`` is
    a request parameter for it and a client's mistake (an InvalidInputError, a 400) for others."""
    from pathlib import Path

    model = Path(__file__).resolve().parents[1] / "goldens" / "families" / "yolov5-tiny.onnx"
    repo = ModelRepository()
    repo.load("v5", model)
    try:
        images = np.empty(1, dtype=object)
        images[0] = photo("zidane.jpg").read_bytes()
        assert repo.get("v5", None).metadata()["parameters"]["layout"] == "yolov5"
        counts = {}
        for multi in (False, True):
            out = {t.name: t for t in repo.infer("v5", None, [Tensor("image", "BYTES", images)], {"multi_label": multi})}
            counts[multi] = int(out["counts"].data[0])
        with ms.load(model) as p:
            assert counts == {False: len(p.predict(images[0])), True: len(p.predict(images[0], multi_label=True))}
        assert counts[True] > counts[False]
    finally:
        repo.close()
