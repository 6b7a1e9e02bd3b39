"""One Ray Serve replica: a pinned registry version behind a batched Predictor and the server's REST app.

The replica is a plain class; :func:`modelserve.ray.deployment` wraps it with ``serve.ingress()``
(its ``__serve_build_asgi_app__`` returns :func:`modelserve.serving.rest.create_app` over the
replica's own :class:`~modelserve.serving.ModelRepository`), so Ray's HTTP proxy speaks the same
KServe v2 REST routes as ``modelserve serve`` and Triton's clients work through it unchanged.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._errors import EngineUnavailableError, InvalidInputError, PinMismatchError
from ..batching import Batching

__all__ = ["Pin", "ModelReplica", "BATCHING_KEYS", "UNHEALTHY_AFTER_FAILED_BATCHES"]

_log = logging.getLogger("modelserve.ray")

#: The batcher settings ``reconfigure`` (Ray's ``user_config``) may change while replicas run.
BATCHING_KEYS = ("max_batch_size", "max_delay_ms", "max_queue_size", "timeout_ms", "on_full")
#: Consecutive failed engine batches after which ``check_health`` reports the replica unhealthy.
UNHEALTHY_AFTER_FAILED_BATCHES = 3


@dataclass(frozen=True)
class Pin:
    """What every replica loads: ``name:version`` with this manifest ``digest``, from the registry
    at ``registry`` (a path every node reaches) or from ``archive`` (an exported version's bytes,
    shipped with the deployment and imported into a private registry on each replica)."""

    name: str
    version: str
    digest: str
    registry: str | None = None
    archive: bytes | None = field(default=None, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class ModelReplica:
    """A replica serving ``pin`` as model ``served_name``; ``load_options`` go to ``ms.load``
    (engine, device, imgsz, conf, ...), ``batching`` is the Predictor's own micro-batcher."""

    def __init__(self, pin: Pin, served_name: str, batching: Mapping[str, Any],
                 load_options: Mapping[str, Any], max_pixels: int | None = None) -> None:
        from .. import Registry
        from ..serving import ModelRepository
        from ..serving.core import DEFAULT_MAX_PIXELS

        self.pin = pin
        self.name = served_name
        self._scratch: str | None = None
        if pin.archive is not None:
            self._scratch = tempfile.mkdtemp(prefix="modelserve-replica-")
            archive = Path(self._scratch) / "model.tar"
            archive.write_bytes(pin.archive)
            registry = Registry(Path(self._scratch) / "registry")
            registry.import_archive(archive)
        elif pin.registry is not None:
            registry = Registry(pin.registry)
        else:
            registry = Registry()
        mv = registry.resolve(pin.ref)
        if mv.digest != pin.digest:
            raise PinMismatchError(f"this replica's registry has {pin.ref} with digest {mv.digest}, but the "
                                   f"deployment pinned {pin.digest}: every node must see the same registry")
        self.repository = ModelRepository(registry=registry,
                                          max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
        self._failed_batches = 0
        self._lock = threading.Lock()
        served = self.repository.load(served_name, pin.ref, batching=Batching(**batching), **dict(load_options))
        self.predictor = served.predictor
        self.predictor.batcher.add_observer(self._on_batch)

    # -- Ray Serve's hooks ----------------------------------------------------------------------
    def __serve_build_asgi_app__(self) -> Any:
        """The KServe v2 REST app (and ``/v1/models/NAME/predict``) over this replica's model; each
        answer says which replica and version gave it (``x-modelserve-replica``,
        ``x-modelserve-version``), for operators following a rollout."""
        from ray import serve

        from ..serving.rest import create_app

        replica = serve.get_replica_context().replica_id.unique_id
        return _with_headers(create_app(self.repository), [(b"x-modelserve-replica", replica.encode()),
                                                           (b"x-modelserve-version", self.pin.ref.encode())])

    def check_health(self) -> None:
        """Raise when the replica cannot answer: its batcher closed or died, or the engine failed
        its last few batches in a row (Ray then replaces the replica)."""
        batcher = self.predictor.batcher
        if batcher is None or batcher.closed:
            raise EngineUnavailableError(f"{self.pin.ref}: the micro-batcher is closed")
        if self._failed_batches >= UNHEALTHY_AFTER_FAILED_BATCHES:
            raise EngineUnavailableError(f"{self.pin.ref}: the engine failed its last {self._failed_batches} batches")

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """Ray's ``user_config``: ``{"batching": {max_batch_size, max_delay_ms, max_queue_size,
        timeout_ms, on_full}}`` applied to the running batcher (nothing restarts, nothing queued
        is lost)."""
        changes = dict((user_config or {}).get("batching") or {})
        unknown = sorted(set(changes) - set(BATCHING_KEYS))
        if unknown:
            raise InvalidInputError(f"user_config.batching: unknown or fixed settings {unknown}; "
                                    f"changeable: {list(BATCHING_KEYS)}")
        if changes:
            config = self.predictor.batcher.reconfigure(**changes)
            _log.info("modelserve.ray: %s batching now %s", self.pin.ref, config)

    def __del__(self) -> None:
        """Replica shutdown: finish what is queued, close the engine, remove the private registry."""
        repository = getattr(self, "repository", None)
        if repository is not None:
            repository.close()
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- handle calls (deployment composition) --------------------------------------------------
    def predict(self, images: Sequence[bytes], parameters: Mapping[str, Any] | None = None) -> list[dict]:
        """Detections of encoded images, each as the JSON dict of ``Result.to_json()`` (for a
        ``DeploymentHandle``: ``await handle.predict.remote([jpeg])``)."""
        import json

        results = self.repository.predict_images(self.name, None, list(images), dict(parameters or {}))
        return [json.loads(r.to_json()) for r in results]

    def describe(self) -> dict[str, Any]:
        """The model this replica serves, its batcher's settings and counters."""
        batcher = self.predictor.batcher
        stats = batcher.stats()
        return {"name": self.name, "ref": self.pin.ref, "digest": self.pin.digest,
                "batching": {k: getattr(batcher.config, k) for k in BATCHING_KEYS},
                "batches": stats.batches, "succeeded": stats.succeeded, "failed": stats.failed}

    def _on_batch(self, record: Any) -> None:
        with self._lock:
            whole = record.size > 0 and record.failed >= record.size  # every item failed: the engine did
            self._failed_batches = self._failed_batches + 1 if whole else 0


def _with_headers(app: Any, headers: list[tuple[bytes, bytes]]) -> Any:
    """``app`` (ASGI) with ``headers`` added to every HTTP response."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await app(scope, receive, sending)

    return wrapped
