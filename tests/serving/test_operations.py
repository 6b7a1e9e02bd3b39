"""Operating the server: bearer-token auth, per-request deadlines, the repository API (off by default)
and rollouts that follow a registry alias while traffic runs, all over a real loopback server."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

import modelserve as ms
from modelserve.serving import ModelRepository
from modelserve.serving.rest import create_app
from modelserve.serving.rollouts import AliasFollower

from .conftest import Running
from .test_rest import image_input, request

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def bus(photo):
    return photo("bus.jpg").read_bytes()


@pytest.fixture(scope="module")
def guarded(detector_path):
    repo = ModelRepository()
    repo.load("det", detector_path)
    running = Running(create_app(repo, auth_token=TOKEN))
    yield running
    running.stop()
    repo.close()


def test_auth_guards_every_route_but_health(guarded, bus):
    assert request(guarded, "GET", "/v2/health/live")[0] == 200
    assert request(guarded, "GET", "/v2/health/ready")[0] == 200
    for path in ("/v2", "/v2/models/det", "/v2/models/det/ready", "/metrics"):
        status, headers, body = request(guarded, "GET", path)
        assert status == 401 and headers.get("www-authenticate") == "Bearer", (path, status)
        assert "Bearer" in json.loads(body)["error"]
        assert request(guarded, "GET", path, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert request(guarded, "POST", "/v1/models/det/predict", body=bus)[0] == 401
    ok = request(guarded, "POST", "/v1/models/det/predict", body=bus, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok[0] == 200 and json.loads(ok[2])["detections"]


def test_auth_with_the_real_client(guarded, bus):
    client = httpclient.InferenceServerClient(guarded.url)
    try:
        with pytest.raises(InferenceServerException, match="Bearer"):
            client.infer("det", [image_input([bus])])
        result = client.infer("det", [image_input([bus])], headers={"Authorization": f"Bearer {TOKEN}"})
        assert result.as_numpy("counts")[0] > 0
    finally:
        client.close()


class _Held:
    """A served model whose batcher is paused, so requests wait in its queue."""

    def __init__(self, detector_path, **repo_options):
        self.repo = ModelRepository(**repo_options)
        self.model = self.repo.load("det", detector_path, batching=ms.Batching(max_batch_size=4))
        self.running = Running(create_app(self.repo))
        self.model.predictor.batcher._testing.pause()

    def close(self):
        self.model.predictor.batcher._testing.resume()
        self.running.stop()
        self.repo.close()


def test_a_request_still_queued_at_its_deadline_is_504(detector_path, bus):
    held = _Held(detector_path)
    client = httpclient.InferenceServerClient(held.running.url)
    try:
        start = time.monotonic()
        with pytest.raises(InferenceServerException) as info:
            client.infer("det", [image_input([bus])], timeout=150_000)  # Triton's: microseconds
        assert info.value.status() == "504" and "never run" in info.value.message()
        assert 0.1 < time.monotonic() - start < 5
        held.model.predictor.batcher._testing.resume()
        assert client.infer("det", [image_input([bus])], timeout=5_000_000).as_numpy("counts")[0] > 0
        status, _, body = request(held.running, "POST", "/v2/models/det/infer",
                                  json.dumps({"inputs": [], "parameters": {"timeout": -3}}))
        assert status == 400
    finally:
        client.close()
        held.close()
    stats = held.model.predictor.batcher.stats()
    assert stats.expired == 1 and stats.succeeded == 1


def test_the_repository_deadline_applies_to_every_request(detector_path, bus):
    held = _Held(detector_path, timeout_ms=100)
    try:
        status, _, body = request(held.running, "POST", "/v1/models/det/predict", body=bus)
        assert status == 504 and "never run" in json.loads(body)["error"]
    finally:
        held.close()


# -- the registry: repository API and rollouts ---------------------------------------------------------------


@pytest.fixture
def registry(tmp_path, detector_path):
    """``det`` with two versions of the real detector (the second differs in its metadata only),
    ``prod`` on version 1."""
    reg = ms.Registry(tmp_path / "registry")
    reg.register("det", detector_path, alias="prod", metadata={"note": "first"})
    reg.register("det", detector_path, metadata={"note": "second"})
    assert [v.version for v in reg.list_versions("det")] == ["1", "2"]
    return reg


def test_the_repository_api_is_off_by_default(server):
    assert request(server, "POST", "/v2/repository/index")[0] == 404


def test_the_repository_api_loads_and_unloads_registry_models_only(registry, bus):
    repo = ModelRepository(registry=registry)
    running = Running(create_app(repo, repository_api=True))
    try:
        assert json.loads(request(running, "POST", "/v2/repository/index")[2]) == []
        assert request(running, "POST", "/v2/repository/models/det/load")[0] == 200
        assert json.loads(request(running, "POST", "/v2/repository/index")[2]) == [
            {"name": "det", "version": "2", "state": "READY", "reason": ""}]
        body = json.dumps({"parameters": {"ref": "det@prod"}})
        assert request(running, "POST", "/v2/repository/models/det/load", body)[0] == 200
        assert json.loads(request(running, "GET", "/v2/models/det")[2])["versions"] == ["1"]
        assert request(running, "POST", "/v1/models/det/predict", body=bus)[0] == 200
        for ref, status in (("/etc/passwd", 400), ("../det", 400), ("nothere", 404), ("det:9", 404),
                            ("det@canary", 404), ("Bad Name!", 400)):
            answer = request(running, "POST", "/v2/repository/models/x/load",
                             json.dumps({"parameters": {"ref": ref}}))
            assert answer[0] == status, (ref, answer)
        assert request(running, "POST", "/v2/repository/models/det/load", b"{not json")[0] == 400
        assert request(running, "POST", "/v2/repository/models/det/unload")[0] == 200
        assert request(running, "GET", "/v2/models/det")[0] == 404
        assert request(running, "POST", "/v2/repository/models/det/unload")[0] == 404
    finally:
        running.stop()
        repo.close()


def test_a_rollout_and_a_rollback_under_traffic_lose_no_request(registry, embedded, bus):
    """Eight clients keep sending while ``prod`` moves to version 2 and is rolled back: every
    request gets a correct answer, from version 1, then 2, then 1 again."""
    repo = ModelRepository(registry=registry)
    repo.load("det", "det@prod", batching=ms.Batching(max_batch_size=8, max_delay_ms=2))
    running = Running(create_app(repo))
    follower = AliasFollower(repo, interval_s=0.05).start()
    want = embedded.predict(bus)
    stop = threading.Event()
    seen: list[str] = []
    failures: list[str] = []

    def client_loop():
        client = httpclient.InferenceServerClient(running.url)
        try:
            while not stop.is_set():
                try:
                    result = client.infer("det", [image_input([bus])])
                except Exception as exc:  # noqa: BLE001 - every failure is recorded and fails the test
                    failures.append(repr(exc))
                    continue
                seen.append(result.get_response()["model_version"])
                # batches of 1 to 8 may round the last float bit differently (ONNX Runtime picks
                # kernels by batch size), so boxes are compared to a hundredth of a pixel
                n = int(result.as_numpy("counts")[0])
                boxes, ids = result.as_numpy("boxes")[0, :n], result.as_numpy("class_ids")[0, :n]
                if n != len(want) or not (ids == want.class_id).all() or not np.allclose(boxes, want.xyxy, atol=0.01):
                    failures.append(f"a wrong answer: {n} boxes {boxes.tolist()}")
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        def served_after(version: str, n: int = 20) -> None:
            deadline = time.monotonic() + 30
            while repo.get("det").version != version:
                assert time.monotonic() < deadline, "the follower did not switch"
                time.sleep(0.02)
            count = len(seen)
            while len(seen) < count + n:  # traffic runs on the new version for a while
                assert time.monotonic() < deadline and not failures, failures[:3]
                time.sleep(0.02)

        served_after("1")
        old = repo.get("det").predictor
        registry.set_alias("det", "prod", "2")
        served_after("2")
        assert old.batcher.closed  # drained and closed once its requests finished
        registry.rollback("det", "prod")
        served_after("1")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        follower.stop()
        running.stop()
        repo.close()
    assert not failures, failures[:5]
    assert seen[0] == "1" and "2" in seen and seen[-1] == "1"


def test_drift_is_served_as_json_and_metrics(detector_path, bgr):
    """A served model's drift monitor: the first images are its reference; darkened ones then
    raise the brightness score at /v2/models/{name}/drift and in /metrics."""
    import io

    from PIL import Image

    from modelserve.monitoring import Metrics

    def jpeg(array):
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(array[..., ::-1])).save(out, "JPEG")
        return out.getvalue()

    photos = [bgr(n) for n in ("bus.jpg", "zidane.jpg")]
    crops = [p[y:y + 300, x:x + 300] for p in photos for y in (0, 150, 300) for x in (0, 100, 200, 300)]
    repo = ModelRepository(metrics=Metrics(), drift={"reference_size": 24, "window": 24, "min_window": 12, "bins": 5})
    repo.load("det", detector_path)
    running = Running(create_app(repo))
    try:
        assert request(running, "GET", "/v2/models/nope/drift")[0] == 404
        for c in crops:
            assert request(running, "POST", "/v1/models/det/predict", body=jpeg(c))[0] == 200
        assert json.loads(request(running, "GET", "/v2/models/det/drift")[2])["ready"] is False
        for c in crops:
            assert request(running, "POST", "/v1/models/det/predict", body=jpeg((c * 0.3).astype(np.uint8)))[0] == 200
        report = json.loads(request(running, "GET", "/v2/models/det/drift")[2])
        assert report["ready"] and report["features"]["brightness"]["status"] == "major"
        assert report["features"]["width"]["status"] == "ok"
        metrics = request(running, "GET", "/metrics")[2].decode()
        assert 'modelserve_drift_score{feature="brightness",model="det",version="1"}' in metrics
        # a request that names no version is counted under the version that served it
        assert 'modelserve_requests_total{model="det",protocol="rest",status="200",version="1"} 48.0' in metrics
        assert 'version=""' not in metrics
    finally:
        running.stop()
        repo.close()


def test_a_locked_reference_is_served_as_its_pinned_version_and_never_followed(registry, tmp_path):
    registry.set_alias("det", "prod", "2")
    lock = registry.write_lock(["det@prod"], tmp_path / "modelserve.lock")
    registry.set_alias("det", "prod", "1")  # the alias moves on; the lock still pins det:2
    repo = ModelRepository(registry=registry)
    try:
        served = repo.load("det", "det@prod", lock=lock)
        assert served.version == "2" and served.ref is None
        assert served.metadata()["versions"] == ["2"]
        assert repo.following() == []
    finally:
        repo.close()
