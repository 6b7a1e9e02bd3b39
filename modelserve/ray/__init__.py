"""Ray Serve: a registry version served by a Ray Serve deployment (``pip install modelserve[ray]``).

::

    from ray import serve
    import modelserve.ray

    serve.run(modelserve.ray.deployment("det@prod", registry="/shared/registry", num_replicas=2),
              name="det", route_prefix="/")

or, as a Serve config file / ``serve run`` target (KubeRay's ``serveConfigV2`` too)::

    serve run modelserve.ray:build_app model=det@prod registry=/shared/registry num_replicas=2

What the deployment does:

* **Pinned**: ``det@prod`` is resolved once, where :func:`deployment` is called (through
  ``lock=`` when given), to ``det:N`` and its manifest digest; every replica loads exactly that
  version and refuses another digest (:class:`~modelserve.PinMismatchError`). Replicas read it
  from ``registry`` (a path every node mounts), or, with ``archive=``, from the version's
  exported archive shipped inside the deployment and imported into a private registry on each
  replica (no shared storage needed; best for models of tens of MB).
* **One batcher**: each replica's Predictor batches with modelserve's own
  :class:`~modelserve.batching.MicroBatcher`; no ``@serve.batch`` on top.
  ``max_ongoing_requests`` defaults to ``2 x max_batch_size x max_concurrent_batches`` (one batch
  running, one filling; capped at the batcher's queue bound, so Ray's router, not the batcher,
  holds any excess and balances it across replicas).
* **HTTP**: Ray's proxy serves the same KServe v2 REST routes as ``modelserve serve``
  (``/v2/models/NAME/infer``, ``/v1/models/NAME/predict``, health, metadata), so
  ``tritonclient.http`` works through it unchanged when the app's ``route_prefix`` is ``/``.
  A ``DeploymentHandle`` can call ``predict(images, parameters)`` and ``describe()``.
* **Health**: ``check_health`` fails when the batcher is closed or the engine failed its last
  batches; Ray then restarts the replica.
* **Live settings**: the batcher's ``max_batch_size``, ``max_delay_ms``, ``max_queue_size``,
  ``timeout_ms`` and ``on_full`` are the deployment's ``user_config`` (``{"batching": {...}}``),
  applied by ``reconfigure`` on running replicas. Ray applies a ``user_config`` change in place
  (no restart) when the app is deployed from a config file (``serve deploy``, KubeRay's
  ``serveConfigV2``) and only ``deployments[].user_config`` (or ``max_ongoing_requests``)
  changed; ``serve.run`` from Python, and a change of ``args``, always roll the replicas over
  (no request fails either way).
* **Scale**: ``num_replicas=N``, or ``num_replicas="auto"`` (with ``autoscaling=`` overrides) to
  scale on ongoing requests (target: one full batch per replica); ``num_gpus`` per replica
  (the device then defaults to ``cuda``).

A rollout is a new :func:`deployment` call after the alias moved, given to ``serve.run`` under
the same app name: Ray starts replicas of the new version, moves traffic once they are healthy,
and drains the old ones (``graceful_shutdown_timeout_s``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from .._errors import InvalidInputError
from ..batching import Batching
from ..serving.errors import ServingUnavailableError
from ._replica import BATCHING_KEYS, ModelReplica, Pin

__all__ = ["deployment", "build_app", "pin", "Pin", "ModelReplica", "BATCHING_KEYS"]

#: Autoscaling settings used with ``num_replicas="auto"`` (``autoscaling=`` overrides any of them;
#: ``target_ongoing_requests`` defaults to the batcher's ``max_batch_size``).
DEFAULT_AUTOSCALING = {"min_replicas": 1, "max_replicas": 4, "upscale_delay_s": 3.0, "downscale_delay_s": 60.0}


def _serve() -> Any:
    try:
        from ray import serve
    except ImportError as exc:
        raise ServingUnavailableError(f"Ray Serve is not installed: pip install modelserve[ray] ({exc})") from None
    return serve


def pin(model: str, *, registry: str | os.PathLike[str] | None = None, lock: str | os.PathLike[str] | None = None,
        archive: bool | str | os.PathLike[str] = False) -> Pin:
    """Resolve ``model`` (``det@prod``, ``det``, ``det:3``) to the exact version every replica loads.

    ``archive=True`` exports that version from ``registry`` and ships its bytes; ``archive=PATH``
    ships an archive made by ``modelserve registry export`` instead (``model`` names its model; the
    version the archive holds is the one served). Otherwise replicas open ``registry`` (default
    ``$MODELSERVE_HOME``; a path every node mounts) themselves.
    """
    from .. import Registry
    from .._registry import is_registry_ref, parse_ref, resolve_for_load

    if not isinstance(model, str) or not is_registry_ref(model):
        raise InvalidInputError(f"modelserve.ray serves registry versions; register the file first "
                                f"(modelserve registry add NAME FILE), got {model!r}")
    root = None if registry is None else str(Path(registry).resolve())
    if archive not in (False, True, None):
        with tempfile.TemporaryDirectory(prefix="modelserve-pin-") as tmp:
            mv = Registry(Path(tmp) / "registry").import_archive(Path(archive))  # type: ignore[arg-type]
        name = parse_ref(model).name
        if mv.name != name:
            raise InvalidInputError(f"archive {archive} holds model {mv.name!r}, not {name!r}")
        return Pin(mv.name, mv.version, mv.digest, archive=Path(archive).read_bytes())  # type: ignore[arg-type]
    reg = Registry(root) if root is not None else Registry()
    mv = resolve_for_load(model, registry=reg, lock=lock)
    if archive:
        with tempfile.TemporaryDirectory(prefix="modelserve-pin-") as tmp:
            path = reg.export(f"{mv.name}:{mv.version}", Path(tmp) / "model.tar")
            return Pin(mv.name, mv.version, mv.digest, archive=path.read_bytes())
    return Pin(mv.name, mv.version, mv.digest, registry=str(reg.root))


def deployment(
    model: str,
    *,
    registry: str | os.PathLike[str] | None = None,
    lock: str | os.PathLike[str] | None = None,
    archive: bool | str | os.PathLike[str] = False,
    name: str | None = None,
    batching: Batching | None = None,
    num_replicas: int | str = 1,
    autoscaling: Mapping[str, Any] | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    max_ongoing_requests: int | None = None,
    max_pixels: int | None = None,
    health_check_period_s: float = 10.0,
    graceful_shutdown_timeout_s: float = 30.0,
    ray_actor_options: Mapping[str, Any] | None = None,
    **load_options: Any,
) -> Any:
    """A bound Ray Serve application (give it to ``serve.run``) serving ``model`` (see the module
    doc). ``name``: the deployment's and the served model's name (default the registry name).
    ``batching``: the replica's micro-batcher (default ``Batching(max_batch_size=8,
    max_delay_ms=2)``). ``load_options``: ``engine``, ``device``, ``imgsz``, ``conf``, ``iou``,
    ``max_det``, ... as for :func:`modelserve.load`."""
    serve = _serve()
    where = pin(model, registry=registry, lock=lock, archive=archive)
    batching = batching or Batching(max_batch_size=8, max_delay_ms=2.0)
    if not isinstance(batching, Batching):
        raise InvalidInputError(f"batching must be a modelserve.Batching, got {type(batching).__name__}")
    served_name = name or where.name
    if num_gpus and "device" not in load_options:
        load_options["device"] = "cuda"
    if max_ongoing_requests is None:
        max_ongoing_requests = min(batching.queue_bound, 2 * batching.max_batch_size * batching.max_concurrent_batches)
    options: dict[str, Any] = {
        "name": served_name,
        "max_ongoing_requests": int(max_ongoing_requests),
        "ray_actor_options": {"num_cpus": float(num_cpus), "num_gpus": float(num_gpus), **dict(ray_actor_options or {})},
        "user_config": {"batching": {k: getattr(batching, k) for k in BATCHING_KEYS}},
        "health_check_period_s": float(health_check_period_s),
        "graceful_shutdown_timeout_s": float(graceful_shutdown_timeout_s),
    }
    if num_replicas == "auto" or autoscaling is not None:
        options["num_replicas"] = "auto"
        options["autoscaling_config"] = {**DEFAULT_AUTOSCALING, "target_ongoing_requests": batching.max_batch_size,
                                         **dict(autoscaling or {})}
    elif isinstance(num_replicas, int) and not isinstance(num_replicas, bool) and num_replicas >= 1:
        options["num_replicas"] = num_replicas
    else:
        raise InvalidInputError(f"num_replicas must be a positive int or 'auto', got {num_replicas!r}")
    fixed = {k: getattr(batching, k) for k in ("max_concurrent_batches",)}
    replica = serve.deployment(serve.ingress()(ModelReplica), **options)
    return replica.bind(where, served_name, fixed, dict(load_options), max_pixels)


#: ``build_app`` arguments and how a string (``serve run ... key=value``) becomes each.
_ARGS: dict[str, Any] = {
    "model": str, "registry": str, "lock": str, "name": str, "engine": str, "device": str,
    "archive": lambda v: v if not isinstance(v, str) else {"true": True, "false": False}.get(v.lower(), v),
    "max_batch_size": int, "max_delay_ms": float, "max_queue_size": int, "max_concurrent_batches": int,
    "timeout_ms": float, "on_full": str, "num_replicas": lambda v: v if v == "auto" else int(v),
    "num_cpus": float, "num_gpus": float, "max_ongoing_requests": int, "max_pixels": int,
    "imgsz": lambda v: int(v) if isinstance(v, (int, str)) else [int(x) for x in v],
    "conf": float, "iou": float, "max_det": int, "autoscaling": dict,
    "health_check_period_s": float, "graceful_shutdown_timeout_s": float,
}
_BATCHING_ARGS = ("max_batch_size", "max_delay_ms", "max_queue_size", "max_concurrent_batches", "timeout_ms", "on_full")
_LOAD_ARGS = ("engine", "device", "imgsz", "conf", "iou", "max_det")


def build_app(args: Mapping[str, Any]) -> Any:
    """The application builder for Serve config files and ``serve run``: ``import_path:
    modelserve.ray:build_app`` with ``args`` such as ``{model: det@prod, registry: /models,
    max_batch_size: 8, max_delay_ms: 2, num_replicas: 2}`` (every keyword of :func:`deployment`,
    the batcher's settings flattened). Values may be strings, as ``serve run`` passes them."""
    if not isinstance(args, Mapping) or "model" not in args:
        raise InvalidInputError("modelserve.ray:build_app needs args with at least 'model' (a registry reference)")
    unknown = sorted(set(args) - set(_ARGS))
    if unknown:
        raise InvalidInputError(f"modelserve.ray:build_app: unknown args {unknown}; known: {sorted(_ARGS)}")
    values: dict[str, Any] = {}
    for key, raw in args.items():
        try:
            values[key] = _ARGS[key](raw)
        except (TypeError, ValueError):
            raise InvalidInputError(f"modelserve.ray:build_app: cannot read {key}={raw!r}") from None
    batching = Batching(**{k: values.pop(k) for k in _BATCHING_ARGS if k in values}) if any(
        k in values for k in _BATCHING_ARGS) else None
    model = values.pop("model")
    return deployment(model, batching=batching, **values)
