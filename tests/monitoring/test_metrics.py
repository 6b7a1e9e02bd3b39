"""modelserve.monitoring's Prometheus metrics on a real batched (and unbatched) Predictor of the
real detector, read back by parsing the exposition, and the Grafana dashboard's queries."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

import modelserve as ms
from modelserve.monitoring import Metrics, instrument

DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana" / "modelserve-dashboard.json"
#: Metrics the dashboard shows that another module exports: the drift monitor's gauge (wired by
#: the lead into the same registry later). Keep this list tiny.
DRIFT_METRICS = {"modelserve_drift_score"}


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` parsed from the exposition text."""
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found, name, **labels) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def batched(detector_path):
    with ms.load(detector_path, batching=ms.Batching(max_batch_size=4, max_delay_ms=5)) as p:
        yield p


def predict_from_threads(predictor, images, threads=4) -> None:
    errors = []

    def work():
        try:
            for image in images:
                predictor.predict(image)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors


def test_batched_traffic_is_counted_exactly(batched, photo):
    metrics = Metrics()
    metrics.instrument(batched, "det", "1")
    images = [str(photo("bus.jpg")), str(photo("zidane.jpg"))]
    predict_from_threads(batched, images, threads=4)
    n = 8
    stats = batched.batcher.stats()
    found = samples(metrics)
    det = dict(model="det", version="1")
    assert value(found, "modelserve_images_total", **det) == n
    assert value(found, "modelserve_batch_size_count", **det) == stats.batches > 0
    assert value(found, "modelserve_batch_size_sum", **det) == stats.items == n
    stage = "modelserve_stage_duration_seconds_count"
    for name, count in (("queue", n), ("preprocess", n), ("postprocess", n), ("total", n),
                        ("inference", stats.batches)):
        assert value(found, stage, stage=name, **det) == count, name
    assert 0 < value(found, "modelserve_stage_duration_seconds_sum", stage="inference", **det) < 60
    # a batch holds at most 4: nothing above the le=4 bucket
    assert value(found, "modelserve_batch_size_bucket", le="4.0", **det) == stats.batches
    assert value(found, "modelserve_queue_depth", **det) == 0
    assert value(found, "modelserve_queue_rejections_total", **det) == stats.rejected == 0


def test_queue_depth_shows_requests_waiting_in_a_paused_batcher(batched, photo):
    metrics = instrument(batched, "det")
    image = str(photo("bus.jpg"))
    batched.predict(image)  # warm up outside the pause
    hooks = batched.batcher._testing
    hooks.pause()
    try:
        workers = [threading.Thread(target=batched.predict, args=(image,)) for _ in range(3)]
        for w in workers:
            w.start()
        assert hooks.wait_queued(3)
        assert value(samples(metrics), "modelserve_queue_depth", model="det", version="") == 3
    finally:
        hooks.resume()
    for w in workers:
        w.join()
    found = samples(metrics)
    assert value(found, "modelserve_queue_depth", model="det", version="") == 0
    assert value(found, "modelserve_images_total", model="det", version="") == 4


def test_detach_stops_counting_and_drops_the_queue_gauges(batched, photo):
    metrics = instrument(batched, "det", "1")
    image = str(photo("bus.jpg"))
    batched.predict(image)
    metrics.detach(batched)
    batched.predict([image, image])
    found = samples(metrics)
    assert value(found, "modelserve_images_total", model="det", version="1") == 1
    assert value(found, "modelserve_batch_size_sum", model="det", version="1") == 1
    assert not any(name == "modelserve_queue_depth" for name, _ in found)
    metrics.detach(batched)  # a second detach is a no-op
    # instrumenting again (e.g. a rollout to version 2) records under the new labels
    metrics.instrument(batched, "det", "2")
    batched.predict(image)
    found = samples(metrics)
    assert value(found, "modelserve_images_total", model="det", version="2") == 1
    assert value(found, "modelserve_images_total", model="det", version="1") == 1


def test_an_unbatched_predictor_records_inference_per_image_and_no_queue(predictor, photo):
    metrics = instrument(predictor, "plain")
    predictor.predict([str(photo("bus.jpg")), str(photo("zidane.jpg"))])
    found = samples(metrics)
    labels = dict(model="plain", version="")
    assert value(found, "modelserve_images_total", **labels) == 2
    assert value(found, "modelserve_stage_duration_seconds_count", stage="inference", **labels) == 2
    assert value(found, "modelserve_stage_duration_seconds_count", stage="queue", **labels) is None
    assert value(found, "modelserve_batch_size_count", **labels) is None
    assert not any(name == "modelserve_queue_depth" for name, _ in found)
    metrics.detach(predictor)


def test_request_in_flight_and_load_series():
    metrics = Metrics(namespace="modelserve")
    metrics.in_flight("det", 1)
    metrics.in_flight("det", 1)
    metrics.in_flight("det", -1)
    metrics.request("det", "1", "rest", 200, 0.02)
    metrics.request("det", "1", "rest", 200, 0.004)
    metrics.request("det", "1", "grpc", 503, 0.5)
    metrics.model_loaded("det", "1", 1.25)
    found = samples(metrics)
    assert value(found, "modelserve_in_flight_requests", model="det") == 1
    assert value(found, "modelserve_requests_total", model="det", version="1", protocol="rest", status="200") == 2
    assert value(found, "modelserve_request_failures_total", model="det", version="1", protocol="grpc",
                 status="503") == 1
    assert value(found, "modelserve_request_failures_total", model="det", version="1", protocol="rest",
                 status="200") is None
    rest = dict(model="det", version="1", protocol="rest")
    assert value(found, "modelserve_request_duration_seconds_count", **rest) == 2
    assert value(found, "modelserve_request_duration_seconds_bucket", le="0.005", **rest) == 1
    assert value(found, "modelserve_request_duration_seconds_sum", **rest) == pytest.approx(0.024)
    assert value(found, "modelserve_model_load_seconds", model="det", version="1") == 1.25


def test_embedders_can_use_the_global_registry(batched, photo):
    metrics = instrument(batched, "embedded", registry=prometheus_client.REGISTRY)
    try:
        batched.predict(str(photo("bus.jpg")))
        body = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
        assert 'modelserve_images_total{model="embedded",version=""} 1.0' in body
        assert 'modelserve_queue_depth{model="embedded",version=""} 0.0' in body
        with pytest.raises(ValueError, match="Duplicated"):  # one Metrics per registry
            Metrics(prometheus_client.REGISTRY)
    finally:
        metrics.detach(batched)
        metrics.unregister()
    assert "modelserve_images_total" not in prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()


def dashboard_metric_names() -> set[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            for key, v in node.items():
                if key in ("expr", "definition") and isinstance(v, str):
                    exprs.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dash)
    assert len(exprs) >= 12
    names = set()
    for expr in exprs:
        for name in re.findall(r"\b(modelserve_[a-z0-9_]+)", expr):
            names.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return names


def test_every_dashboard_query_names_an_exported_metric(batched, photo):
    dash = json.loads(DASHBOARD.read_text())
    assert dash["schemaVersion"] >= 36 and [v["name"] for v in dash["templating"]["list"]] == ["model"]
    metrics = instrument(batched, "det", "1")
    predict_from_threads(batched, [str(photo("bus.jpg"))], threads=2)
    start = time.perf_counter()
    metrics.in_flight("det", 1)
    metrics.in_flight("det", -1)
    metrics.request("det", "1", "rest", 200, time.perf_counter() - start)
    metrics.request("det", "1", "rest", 400, time.perf_counter() - start)
    metrics.model_loaded("det", "1", 0.5)
    exported = set()
    for name, _ in samples(metrics):
        exported.add(re.sub(r"_(bucket|sum|count)$", "", name))
    wanted = dashboard_metric_names()
    assert DRIFT_METRICS <= wanted  # the drift row is there
    missing = wanted - exported - DRIFT_METRICS
    assert not missing, missing
    assert {"modelserve_requests_total", "modelserve_queue_depth", "modelserve_batch_size",
            "modelserve_stage_duration_seconds"} <= wanted
