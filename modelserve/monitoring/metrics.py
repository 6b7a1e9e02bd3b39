"""Prometheus metrics of modelserve: requests, stage latencies, batches and queues of Predictors.

One :class:`Metrics` owns its series in one ``prometheus_client`` registry (a private one by
default). :meth:`Metrics.instrument` attaches it to a :class:`~modelserve.Predictor` through its
observers (and its micro-batcher's), and reads the batcher's queue gauges at scrape time; the
server calls :meth:`Metrics.request` / :meth:`Metrics.in_flight` per request. Applications that
embed a Predictor make the one call :func:`instrument`::

    import prometheus_client
    from modelserve.monitoring import instrument

    instrument(predictor, "det", registry=prometheus_client.REGISTRY)
    prometheus_client.start_http_server(9100)

``prometheus_client`` is an optional dependency (``pip install modelserve[server]``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from ..serving.errors import ServingUnavailableError

__all__ = ["Metrics", "instrument", "LATENCY_BUCKETS", "BATCH_SIZE_BUCKETS", "STAGES"]

#: Seconds, from 1 ms to 10 s (request and stage latencies).
LATENCY_BUCKETS = (.001, .0025, .005, .0075, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 10.0)
#: Items per engine batch.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
#: The values of the ``stage`` label of ``stage_duration_seconds``.
STAGES = ("queue", "preprocess", "inference", "postprocess", "total")


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ServingUnavailableError(
            "modelserve metrics need prometheus-client: pip install modelserve[server]") from exc
    return prometheus_client


class _Attached:
    """What :meth:`Metrics.instrument` attached to one predictor."""

    def __init__(self, predictor: Any, on_results: Callable[[list[Any]], None],
                 on_batch: Callable[[Any], None] | None, model: str, version: str) -> None:
        self.predictor = weakref.ref(predictor)
        batcher = getattr(predictor, "batcher", None)
        self.batcher = None if batcher is None else weakref.ref(batcher)
        self.on_results = on_results
        self.on_batch = on_batch
        self.labels = (model, version)


class _BatcherCollector:
    """Reads ``batcher.stats()`` of every instrumented predictor at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = weakref.ref(metrics)
        self._prefix = metrics.namespace + "_"

    def _families(self) -> tuple[Any, Any, Any, Any]:
        import prometheus_client.core as core
        labels = ["model", "version"]
        p = self._prefix
        return (core.GaugeMetricFamily(p + "queue_depth", "Requests queued in the micro-batcher.", labels=labels),
                core.GaugeMetricFamily(p + "in_flight_batches", "Batches running in the engine.", labels=labels),
                core.CounterMetricFamily(p + "queue_rejections", "Requests refused by a full queue.", labels=labels),
                core.CounterMetricFamily(p + "queue_expired", "Requests whose deadline passed in the queue.",
                                         labels=labels))

    def describe(self) -> Iterator[Any]:
        yield from self._families()

    def collect(self) -> Iterator[Any]:
        depth, batches, rejected, expired = families = self._families()
        metrics = self._metrics()
        for attached in ([] if metrics is None else metrics._attached_list()):
            batcher = None if attached.batcher is None else attached.batcher()
            if batcher is None:
                continue
            s = batcher.stats()
            labels = list(attached.labels)
            depth.add_metric(labels, s.queue_depth)
            batches.add_metric(labels, s.in_flight_batches)
            rejected.add_metric(labels, s.rejected)
            expired.add_metric(labels, s.expired)
        yield from families


class Metrics:
    """modelserve's Prometheus series in ``registry`` (None: a new private ``CollectorRegistry``),
    named ``<namespace>_...``; safe to use from any thread."""

    def __init__(self, registry: Any = None, *, namespace: str = "modelserve") -> None:
        prom = _prometheus()
        self.registry = prom.CollectorRegistry() if registry is None else registry
        self.namespace = namespace
        self._lock = threading.Lock()
        self._attached: dict[int, _Attached] = {}
        ns, reg = namespace, self.registry
        req = ["model", "version", "protocol", "status"]
        self.requests = prom.Counter("requests", "Requests answered, by status.", req, namespace=ns, registry=reg)
        self.request_failures = prom.Counter("request_failures", "Requests answered with a status >= 400.", req,
                                             namespace=ns, registry=reg)
        self.request_duration = prom.Histogram("request_duration_seconds", "Request latency at the front end.",
                                               ["model", "version", "protocol"], namespace=ns, registry=reg,
                                               buckets=LATENCY_BUCKETS)
        self.stage_duration = prom.Histogram(
            "stage_duration_seconds", "Latency of a prediction stage (queue, inference: per batch; others: per image).",
            ["model", "version", "stage"], namespace=ns, registry=reg, buckets=LATENCY_BUCKETS)
        self.images = prom.Counter("images", "Images predicted.", ["model", "version"], namespace=ns, registry=reg)
        self.batch_size = prom.Histogram("batch_size", "Items per engine batch.", ["model", "version"],
                                         namespace=ns, registry=reg, buckets=BATCH_SIZE_BUCKETS)
        self.in_flight_requests = prom.Gauge("in_flight_requests", "Requests being answered.", ["model"],
                                             namespace=ns, registry=reg)
        self.model_load = prom.Gauge("model_load_seconds", "Seconds the model took to load.", ["model", "version"],
                                     namespace=ns, registry=reg)
        self._collector = _BatcherCollector(self)
        reg.register(self._collector)

    def _attached_list(self) -> list[_Attached]:
        with self._lock:
            return list(self._attached.values())

    def instrument(self, predictor: Any, model: str, version: str = "") -> None:
        """Record ``predictor``'s images, stage latencies and batches as ``model``/``version``, and
        export its batcher's queue gauges; instrumenting it again replaces the earlier labels."""
        self.detach(predictor)
        stage = self.stage_duration
        pre, inf, post, total = (stage.labels(model, version, s) for s in ("preprocess", "inference",
                                                                           "postprocess", "total"))
        images = self.images.labels(model, version)
        batcher = getattr(predictor, "batcher", None)
        batched = batcher is not None

        def on_results(results: list[Any]) -> None:
            images.inc(len(results))
            for r in results:
                speed = getattr(r, "speed", None) or {}
                pre.observe(speed.get("preprocess", 0.0) / 1000)
                post.observe(speed.get("postprocess", 0.0) / 1000)
                if not batched:  # with batching, inference is per batch (and speed includes the queue)
                    inf.observe(speed.get("inference", 0.0) / 1000)
                total.observe(sum(speed.values()) / 1000)

        on_batch = None
        if batched:
            queue, sizes = stage.labels(model, version, "queue"), self.batch_size.labels(model, version)

            def on_batch(record: Any) -> None:
                sizes.observe(record.size)
                inf.observe(record.exec_s)
                for wait in record.waits_s:
                    queue.observe(wait)

        attached = _Attached(predictor, on_results, on_batch, model, version)
        with self._lock:
            self._attached[id(predictor)] = attached
        predictor.add_observer(on_results)
        if batcher is not None and on_batch is not None:
            batcher.add_observer(on_batch)

    def detach(self, predictor: Any) -> None:
        """Stop recording ``predictor`` (on unload or rollout): its counters keep their values, its
        queue gauges disappear. Nothing happens if it is not instrumented."""
        with self._lock:
            attached = self._attached.pop(id(predictor), None)
        if attached is None:
            return
        predictor.remove_observer(attached.on_results)
        batcher = None if attached.batcher is None else attached.batcher()
        if batcher is not None and attached.on_batch is not None:
            batcher.remove_observer(attached.on_batch)

    def request(self, model: str, version: str, protocol: str, status: int, seconds: float) -> None:
        """Count one answered request of a front end (``protocol``: ``rest``, ``grpc``)."""
        labels = (model, version, protocol, str(int(status)))
        self.requests.labels(*labels).inc()
        if status >= 400:
            self.request_failures.labels(*labels).inc()
        self.request_duration.labels(model, version, protocol).observe(seconds)

    def in_flight(self, model: str, delta: int) -> None:
        """Move the in-flight request gauge of ``model`` by ``delta`` (+1 on arrival, -1 when answered)."""
        self.in_flight_requests.labels(model).inc(delta)

    def model_loaded(self, model: str, version: str, seconds: float) -> None:
        """Record how long ``model``/``version`` took to load."""
        self.model_load.labels(model, version).set(seconds)

    def unregister(self) -> None:
        """Remove every series of this object from its registry (e.g. the global one, in tests)."""
        for collector in (self.requests, self.request_failures, self.request_duration, self.stage_duration,
                          self.images, self.batch_size, self.in_flight_requests, self.model_load, self._collector):
            self.registry.unregister(collector)

    def exposition(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format, and its content type (for a ``/metrics`` route)."""
        prom = _prometheus()
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST


def instrument(predictor: Any, model: str, version: str = "", registry: Any = None) -> Metrics:
    """Export ``predictor``'s metrics as ``model`` in ``registry`` (None: a new private one; pass
    ``prometheus_client.REGISTRY`` to serve them with ``start_http_server``); returns the :class:`Metrics`."""
    metrics = Metrics(registry)
    metrics.instrument(predictor, model, version)
    return metrics
