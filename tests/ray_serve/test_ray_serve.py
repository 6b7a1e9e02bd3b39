"""modelserve.ray on a real local Ray cluster: replicas behind Ray's HTTP proxy answer as the embedded
Predictor does (plain HTTP and the real tritonclient), a killed replica is replaced while traffic
keeps being answered, a rollout and a rollback through ``serve.run`` fail no request, batcher
settings change live, and an exported archive ships the model to replicas without a shared path."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import modelserve as ms
from modelserve import InvalidInputError

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

import modelserve.ray as msray  # noqa: E402

PHOTOS = ("bus.jpg", "zidane.jpg")
REPLICA_CPUS = 0.5  # logical CPUs: four replicas (two old, two new during a rollout) fit the cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard_port():
    return _free_port()


@pytest.fixture(scope="module")
def cluster(dashboard_port):
    """A local Ray cluster (with its dashboard, which ``serve deploy`` talks to) and Serve's proxy
    on free loopback ports."""
    port = _free_port()
    ray.init(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=dashboard_port,
             object_store_memory=256 * 1024 * 1024, log_to_driver=False, configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, detector_path):
    """``det`` v1 and v2 (the real detector; v2 differs in its metadata only), ``prod`` on v1."""
    reg = ms.Registry(tmp_path_factory.mktemp("ray") / "registry")
    reg.register("det", detector_path, alias="prod", metadata={"note": "first"})
    reg.register("det", detector_path, metadata={"note": "second"})
    return reg


@pytest.fixture(scope="module")
def photos(photo):
    return [photo(n).read_bytes() for n in PHOTOS]


@pytest.fixture(scope="module")
def wanted(detector_path, photos):
    with ms.load(detector_path) as p:
        return [p.predict(x) for x in photos]


def post(port, path, body, timeout=60):
    """``(status, headers, body)`` of one POST through Ray's proxy."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def check_answer(body, want):
    got = json.loads(body)
    assert [d["class_id"] for d in got["detections"]] == want.class_id.tolist()
    boxes = np.array([d["xyxy"] for d in got["detections"]], dtype=np.float64).reshape(-1, 4)
    np.testing.assert_allclose(boxes, want.xyxy, atol=0.01)  # batch sizes vary: the last float bits may
    np.testing.assert_allclose([d["confidence"] for d in got["detections"]], want.confidence, atol=1e-4)


class Traffic:
    """``clients`` threads posting the photos in turn until :meth:`stop`; each request is retried up
    to ``retries`` times on a 5xx or a broken connection. Records every attempt."""

    def __init__(self, port, photos, wanted, clients=6, retries=0, path="/v1/models/det/predict"):
        self.port, self.photos, self.wanted, self.retries, self.path = port, photos, wanted, retries, path
        self.answers: list[tuple[int, str]] = []  # (attempts, version) of each answered request
        self.failures: list[str] = []
        self.wrong: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(clients)]
        for t in self._threads:
            t.start()

    def _loop(self, i):
        n = i
        while not self._stop.is_set():
            k = n % len(self.photos)
            n += 1
            for attempt in range(1, self.retries + 2):
                try:
                    status, headers, body = post(self.port, self.path, self.photos[k])
                except OSError as exc:
                    status, headers, body = None, {}, repr(exc).encode()
                if status == 200:
                    try:
                        check_answer(body, self.wanted[k])
                    except AssertionError as exc:
                        with self._lock:
                            self.wrong.append(str(exc)[:200])
                    with self._lock:
                        self.answers.append((attempt, headers.get("x-modelserve-version", "")))
                    break
                if attempt > self.retries:
                    with self._lock:
                        self.failures.append(f"{status}: {body[:200]!r}")
                    break
                time.sleep(0.2)

    def wait_answers(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        while len(self.answers) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.answers) >= n

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=90)


def replicas(app="det", deployment="det"):
    return serve.status().applications[app].deployments[deployment].replica_states.get("RUNNING", 0)


def replica_actor_names(app="det"):
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::{app}#")]


@pytest.fixture(scope="module")
def det_app(cluster, registry):
    """``det@prod`` (v1) on two replicas at route ``/``."""
    registry.set_alias("det", "prod", "1")
    serve.run(msray.deployment("det@prod", registry=registry.root, num_replicas=2, num_cpus=REPLICA_CPUS,
                               batching=ms.Batching(max_batch_size=8, max_delay_ms=2)),
              name="det", route_prefix="/")
    return cluster


def test_replicas_answer_like_the_embedded_predictor(det_app, photos, wanted):
    port = det_app
    assert replicas() == 2
    results: list = []

    def one(k):
        status, headers, body = post(port, "/v1/models/det/predict", photos[k % 2])
        results.append((k % 2, status, headers, body))

    threads = [threading.Thread(target=lambda k=k: [one(k + 8 * j) for j in range(6)]) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 48 and {r[1] for r in results} == {200}
    for k, _, headers, body in results:
        check_answer(body, wanted[k])
        assert headers["x-modelserve-version"] == "det:1"
    assert len({r[2]["x-modelserve-replica"] for r in results}) == 2  # both replicas answered
    handle = serve.get_app_handle("det")
    described = handle.describe.remote().result()
    assert described["ref"] == "det:1" and described["batching"]["max_batch_size"] == 8
    got = handle.predict.remote([photos[0]], {"conf": 0.5}).result()
    assert [d["class_id"] for d in got[0]["detections"]] == wanted[0].class_id[wanted[0].confidence >= 0.5].tolist()


def test_the_real_tritonclient_works_through_rays_proxy(det_app, photos, wanted):
    httpclient = pytest.importorskip("tritonclient.http")
    client = httpclient.InferenceServerClient(f"127.0.0.1:{det_app}")
    try:
        assert client.is_server_ready() and client.is_model_ready("det")
        assert client.get_model_metadata("det")["versions"] == ["1"]
        tensor = httpclient.InferInput("image", [2], "BYTES")
        tensor.set_data_from_numpy(np.array(photos, dtype=object), binary_data=True)
        result = client.infer("det", [tensor])
        counts, boxes, ids = (result.as_numpy(n) for n in ("counts", "boxes", "class_ids"))
        assert counts.tolist() == [len(w) for w in wanted]
        for i, w in enumerate(wanted):
            np.testing.assert_allclose(boxes[i, :len(w)], w.xyxy, atol=0.01)
            assert ids[i, :len(w)].tolist() == w.class_id.tolist()
        status, _, body = post(det_app, "/v1/models/det/predict", b"not an image")
        assert status == 400 and "error" in json.loads(body)  # a client's mistake, not a 500
    finally:
        client.close()


def test_a_killed_replica_is_replaced_while_requests_are_answered(det_app, photos, wanted):
    traffic = Traffic(det_app, photos, wanted, clients=6, retries=5)
    try:
        assert traffic.wait_answers(12)
        before = replica_actor_names()
        assert len(before) == 2
        ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            names = replica_actor_names()
            if before[0] not in names and len(names) == 2 and replicas() == 2:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the killed replica was not replaced: {replica_actor_names()}")
        answered = len(traffic.answers)
        assert traffic.wait_answers(answered + 24)  # the new pair keeps answering
    finally:
        traffic.stop()
    assert traffic.failures == [] and traffic.wrong == []
    retried = [a for a, _ in traffic.answers if a > 1]
    assert len(retried) <= 12, f"{len(retried)} requests needed retries"  # only those the kill broke


def test_rollout_and_rollback_through_serve_run_fail_no_request(det_app, registry, photos, wanted):
    def deploy():
        serve.run(msray.deployment("det@prod", registry=registry.root, num_replicas=2, num_cpus=REPLICA_CPUS,
                                   batching=ms.Batching(max_batch_size=8, max_delay_ms=2)),
                  name="det", route_prefix="/")

    traffic = Traffic(det_app, photos, wanted, clients=6, retries=0)
    try:
        assert traffic.wait_answers(12)
        registry.set_alias("det", "prod", "2")
        deploy()  # Ray starts the v2 replicas, moves traffic, drains the v1 ones
        seen = len(traffic.answers)
        assert traffic.wait_answers(seen + 12)
        assert {v for _, v in traffic.answers[seen + 6:]} == {"det:2"}
        registry.rollback("det", "prod")
        deploy()
        seen = len(traffic.answers)
        assert traffic.wait_answers(seen + 12)
        assert {v for _, v in traffic.answers[seen + 6:]} == {"det:1"}
    finally:
        traffic.stop()
    assert traffic.failures == [] and traffic.wrong == []
    assert {v for _, v in traffic.answers} == {"det:1", "det:2"}


def test_an_exported_archive_ships_the_model_without_a_shared_registry(cluster, registry, tmp_path, photos, wanted):
    archive = registry.export("det:1", tmp_path / "det.tar")
    app = msray.deployment("det", archive=archive, name="shipped", num_cpus=REPLICA_CPUS)
    serve.run(app, name="shipped", route_prefix="/shipped")
    try:
        status, headers, body = post(cluster, "/shipped/v1/models/shipped/predict", photos[1])
        assert status == 200 and headers["x-modelserve-version"] == "det:1"
        check_answer(body, wanted[1])
    finally:
        serve.delete("shipped")


def test_build_app_reads_serve_run_style_string_args(cluster, registry, photos, wanted):
    app = msray.build_app({"model": "det:2", "registry": str(registry.root), "max_batch_size": "4",
                           "max_delay_ms": "1.5", "num_replicas": "1", "num_cpus": str(REPLICA_CPUS),
                           "name": "built", "conf": "0.1"})
    serve.run(app, name="built", route_prefix="/built")
    try:
        handle = serve.get_app_handle("built")
        described = handle.describe.remote().result()
        assert described["ref"] == "det:2" and described["batching"]["max_batch_size"] == 4
        assert described["batching"]["max_delay_ms"] == 1.5
        status, _, body = post(cluster, "/built/v1/models/built/predict", photos[0])
        assert status == 200
        confidences = [d["confidence"] for d in json.loads(body)["detections"]]
        # conf from the args is the model's default: more (weaker) detections than at 0.25
        assert len(confidences) > len(wanted[0]) and min(confidences) >= 0.1
    finally:
        serve.delete("built")


def test_autoscaling_adds_replicas_under_load(cluster, registry, photos, wanted):
    app = msray.deployment("det:1", registry=registry.root, name="auto", num_cpus=REPLICA_CPUS,
                           batching=ms.Batching(max_batch_size=2, max_delay_ms=2),
                           autoscaling={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
                                        "upscale_delay_s": 0.5,
                                        "look_back_period_s": 1.0})
    serve.run(app, name="auto", route_prefix="/auto")
    try:
        assert replicas("auto", "auto") == 1
        traffic = Traffic(cluster, photos, wanted, clients=8, path="/auto/v1/models/auto/predict")
        try:
            deadline = time.monotonic() + 60
            while replicas("auto", "auto") < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert replicas("auto", "auto") == 2  # scaled up on ongoing requests
        finally:
            traffic.stop()
        assert traffic.failures == [] and traffic.wrong == [] and traffic.answers
    finally:
        serve.delete("auto")


def test_gpus_per_replica_set_the_actor_resources_and_the_device(registry):
    app = msray.deployment("det:1", registry=registry.root, num_gpus=1, num_cpus=2)
    bound = app._bound_deployment  # Ray keeps the deployment of a bound app here (no public accessor)
    assert bound.ray_actor_options["num_gpus"] == 1.0 and bound.ray_actor_options["num_cpus"] == 2.0
    pin, name, fixed, load_options, _ = bound.init_args
    assert (pin.ref, name, load_options["device"]) == ("det:1", "det", "cuda")
    assert bound.max_ongoing_requests == 16  # 2 x the default max_batch_size 8
    assert bound.user_config == {"batching": {"max_batch_size": 8, "max_delay_ms": 2.0, "max_queue_size": None,
                                              "timeout_ms": None, "on_full": "reject"}}


def test_bad_deployments_are_refused_before_anything_starts(registry, detector_path):
    with pytest.raises(InvalidInputError, match="register the file first"):
        msray.deployment(str(detector_path))
    with pytest.raises(ms.ModelNotFoundError):
        msray.deployment("det@nope", registry=registry.root)
    with pytest.raises(InvalidInputError, match="num_replicas"):
        msray.deployment("det:1", registry=registry.root, num_replicas=0)
    with pytest.raises(InvalidInputError, match="unknown args"):
        msray.build_app({"model": "det:1", "replicas": 2})
    with pytest.raises(InvalidInputError, match="needs args"):
        msray.build_app({})
    with pytest.raises(InvalidInputError, match="cannot read max_batch_size"):
        msray.build_app({"model": "det:1", "max_batch_size": "many"})


def test_a_config_file_deploys_and_changes_batching_live(det_app, registry, dashboard_port, tmp_path):
    """(Last: after it the apps are managed declaratively.) The operator's path (``serve deploy``, as KubeRay does): ``modelserve.ray:build_app`` from a
    Serve config file; a change of ``user_config.batching`` alone reconfigures the running
    replicas in place."""
    def deploy(max_batch_size):
        config = {"applications": [{
            "name": "det", "route_prefix": "/", "import_path": "modelserve.ray:build_app",
            "args": {"model": "det@prod", "registry": str(registry.root), "num_replicas": 2,
                     "num_cpus": REPLICA_CPUS},
            "deployments": [{"name": "det", "user_config": {"batching": {
                "max_batch_size": max_batch_size, "max_delay_ms": 2.0, "max_queue_size": 32}}}],
        }]}
        path = tmp_path / f"serve-{max_batch_size}.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        cli = Path(sys.executable).with_name("serve")
        done = subprocess.run([str(cli), "deploy", str(path), "-a", f"http://127.0.0.1:{dashboard_port}"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        deadline = time.monotonic() + 90
        seen: list = []
        while time.monotonic() < deadline:
            try:
                handle = serve.get_app_handle("det")
                seen = [handle.describe.remote().result()["batching"]["max_batch_size"] for _ in range(4)]
                states = serve.status().applications["det"].deployments["det"].replica_states
            except Exception:  # noqa: BLE001 - the app is being replaced during the first deploy
                seen, states = [], {}
            if seen and set(seen) == {max_batch_size} and states == {"RUNNING": 2} \
                    and len(replica_actor_names()) == 2:
                return
            time.sleep(0.5)
        pytest.fail(f"the deployment did not reach max_batch_size={max_batch_size}: {seen}")

    deploy(6)  # from serve.run to the config file: Ray rolls the replicas over (6: not the old app's 8)
    before = sorted(replica_actor_names())
    deploy(4)
    assert sorted(replica_actor_names()) == before  # reconfigured in place, not restarted
    described = serve.get_app_handle("det").describe.remote().result()
    assert described["batching"]["max_queue_size"] == 32 and described["ref"] == "det:1"
