"""``modelserve serve MODEL [MODEL ...]``: serve models over the Open Inference Protocol (KServe v2),
REST and gRPC, with Prometheus metrics at ``/metrics``.

Each MODEL is a model file or a registry reference, served under its file stem or registry name;
``name=MODEL`` chooses the name. Every model is loaded with micro-batching on, so concurrent
requests share engine batches. A model started from an alias (``det@prod``) or a bare registry
name (its latest version) follows it: when the alias moves (``modelserve registry alias`` or
``rollback``), the new version is loaded beside the old one and takes over once ready.
SIGTERM or Ctrl-C: stop accepting, finish what is in flight, exit 0.
Needs ``pip install modelserve[server]``.

    modelserve serve yolov8n.onnx                       # http://127.0.0.1:8000/v2/models/yolov8n
    modelserve serve det=det@prod --host 0.0.0.0 --http-port 8080 --max-batch-size 16
    MODELSERVE_AUTH_TOKEN=secret modelserve serve det@prod   # every route but health needs the token
    modelserve serve --config models.json               # several models, each with its own options
    modelserve serve det@prod --registry /models/registry --lock /models/modelserve.lock   # pinned

A config file is JSON: ``{"models": {"det": {"source": "det@prod", "max_batch_size": 16, "conf": 0.3},
"seg": {"source": "yolo11n-seg.onnx", "engine": "openvino"}}}``; per model: ``source`` (required),
``engine``, ``device``, ``imgsz``, ``conf``, ``iou``, ``max_det``, ``max_batch_size``,
``max_delay_ms``, ``max_queue_size``, ``max_concurrent_batches``, and for models without
Ultralytics metadata ``task``, ``layout`` and ``names`` (see ``modelserve.load``; the command line's
values are the defaults).
``--registry DIR``: the registry references resolve in (default ``$MODELSERVE_HOME``, else the user
cache dir). ``--lock FILE``: every registry reference is resolved through its pin in that lock file
(``modelserve registry lock``), whatever its aliases say now, and refused unless pinned there with
the same digest; pinned models are not followed. Files are opened as they are.
    curl -F image=@bus.jpg 'http://127.0.0.1:8000/v1/models/yolov8n/predict?conf=0.4'
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError
from ..batching.options import default_concurrent_batches

__all__ = ["add_parser", "run", "model_name", "config_models"]


def model_name(spec: str) -> tuple[str, str]:
    """``(name, source)`` of one MODEL argument: ``name=source``, else the file stem of an
    existing file or folder, else the name part of a registry reference (``det@prod`` -> ``det``)."""
    name, sep, source = spec.partition("=")
    if sep and name and "/" not in name and not Path(spec).exists():
        return name, source
    path = Path(spec)
    if path.exists():
        return path.stem, spec
    return re.split(r"[:@]", spec, maxsplit=1)[0], spec


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` command to an argparse subparsers object."""
    p = sub.add_parser("serve", help="serve models over KServe v2 REST", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", metavar="MODEL", help="model file or registry reference (name=MODEL to name it)")
    p.add_argument("--config", help="a JSON file naming several models and their options (see above)")
    p.add_argument("--registry", metavar="DIR",
                   help="the registry references resolve in (default: $MODELSERVE_HOME or the user cache dir)")
    p.add_argument("--lock", metavar="FILE",
                   help="resolve every registry reference through its pin in this lock file (modelserve registry lock)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=8000, help="REST port (default 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0: no gRPC)")
    p.add_argument("--workers", type=int, default=64, help="threads answering requests (default 64)")
    p.add_argument("--request-timeout-ms", type=float,
                   help="a request still queued after this long gets 504 / DEADLINE_EXCEEDED (default: none)")
    p.add_argument("--auth-token-file", help="a file holding the bearer token every route but health needs "
                                             "(or set MODELSERVE_AUTH_TOKEN)")
    p.add_argument("--repository-api", action="store_true",
                   help="enable the model-repository API (index, load and unload registry models); off by default")
    p.add_argument("--follow-interval-s", type=float, default=2.0,
                   help="how often models started from an alias look for a move (default 2; 0: never)")
    p.add_argument("--drift", type=int, metavar="N", default=None,
                   help="monitor data drift: the first N images of each model are its reference; scores at "
                        "GET /v2/models/NAME/drift and in /metrics (default: off)")
    p.add_argument("--drain-timeout-s", type=float, default=30.0,
                   help="on SIGTERM, how long in-flight requests may take to finish (default 30)")
    p.add_argument("--device", default="cpu", help="cpu, cuda[:N], ... (default cpu)")
    p.add_argument("--engine", default="auto", help="auto, onnxruntime, openvino, tensorrt or a plugin")
    p.add_argument("--max-batch-size", type=int, default=8, help="most images per engine batch (default 8)")
    p.add_argument("--max-delay-ms", type=float, default=2.0, help="how long a batch waits to fill (default 2)")
    p.add_argument("--max-queue-size", type=int, help="most queued images before 503 (default 8 x batch size)")
    p.add_argument("--concurrent-batches", type=int,
                   help="engine batches of one model that may run at once (default: the CPU's cores, at most 4, "
                        "on cpu; 1 on a GPU)")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body in MiB (default 64)")
    p.add_argument("--max-pixels", type=int, help="most pixels of one image (default 40 million)")
    p.add_argument("--log-level", default="info", help="uvicorn's log level (default info)")
    p.set_defaults(func=run)
    return p


def _load_options(args: argparse.Namespace, options: dict[str, Any], registry: Any = None) -> dict[str, Any]:
    """``ModelRepository.load``'s arguments for one model: its own options over the command line's;
    a registry reference also gets ``registry`` and, with ``--lock``, the lock file."""
    from .._registry import is_registry_ref
    from ..batching import Batching

    opts = dict(options)
    if is_registry_ref(opts["source"]):
        if registry is not None:
            opts["registry"] = registry
        if args.lock is not None:
            opts["lock"] = args.lock
    batching = {"max_batch_size": args.max_batch_size, "max_delay_ms": args.max_delay_ms,
                "max_queue_size": args.max_queue_size, "max_concurrent_batches": args.concurrent_batches}
    batching.update({k: opts.pop(k) for k in _BATCH_KEYS if k in opts})
    opts.setdefault("engine", args.engine)
    opts.setdefault("device", args.device)
    if batching["max_concurrent_batches"] is None:
        batching["max_concurrent_batches"] = default_concurrent_batches(str(opts["device"]))  # one per core
    return {"batching": Batching(**batching), **opts}


def _auth_token(args: argparse.Namespace) -> str | None:
    if args.auth_token_file:
        try:
            token = open(args.auth_token_file, encoding="utf-8").read().strip()
        except OSError as exc:
            raise InvalidInputError(f"cannot read --auth-token-file {args.auth_token_file}: {exc}") from None
        if not token:
            raise InvalidInputError(f"--auth-token-file {args.auth_token_file} is empty")
        return token
    return os.environ.get("MODELSERVE_AUTH_TOKEN") or None


def _registry(args: argparse.Namespace) -> Any:
    """The :class:`~modelserve.Registry` of ``--registry`` (None: the default one, made when needed);
    ``--lock`` is checked to name an existing file before any model loads."""
    if args.lock is not None and not os.path.isfile(args.lock):
        raise InvalidInputError(f"--lock {args.lock}: no such file (write one with `modelserve registry lock`)")
    if args.registry is None:
        return None
    if not os.path.isdir(args.registry):
        raise InvalidInputError(f"--registry {args.registry}: no such directory")
    from .._registry import Registry

    return Registry(args.registry)


def _metrics() -> object | None:
    try:
        from ..monitoring import Metrics

        return Metrics()
    except ImportError:  # pragma: no cover - prometheus-client is part of the server extra
        return None


_MODEL_KEYS = {"source", "engine", "device", "imgsz", "conf", "iou", "max_det", "max_batch_size", "max_delay_ms",
               "max_queue_size", "max_concurrent_batches", "task", "layout", "names"}
_BATCH_KEYS = ("max_batch_size", "max_delay_ms", "max_queue_size", "max_concurrent_batches")


def config_models(path: str) -> list[tuple[str, dict[str, Any]]]:
    """``(name, options)`` of each model of a JSON config file (see the module doc), checked."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read the config file {path}: {exc}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not models:
        raise InvalidInputError(f"{path}: expected {{\"models\": {{name: {{\"source\": ...}}, ...}}}}")
    out = []
    for name, options in models.items():
        if not isinstance(options, dict) or not isinstance(options.get("source"), str):
            raise InvalidInputError(f"{path}: model {name!r} needs an object with a \"source\" string")
        unknown = sorted(set(options) - _MODEL_KEYS)
        if unknown:
            raise InvalidInputError(f"{path}: model {name!r} has unknown option(s) {unknown} "
                                    f"(known: {sorted(_MODEL_KEYS)})")
        out.append((name, dict(options)))
    return out


def run(args: argparse.Namespace) -> int:
    from ..serving.core import DEFAULT_MAX_PIXELS, ModelRepository
    from ..serving.server import Server, ServerOptions

    models = [(name, {"source": source}) for name, source in map(model_name, args.models)]
    if args.config:
        models += config_models(args.config)
    if not models:
        raise InvalidInputError("name at least one MODEL (a file or registry reference) or a --config file")
    names = [n for n, _ in models]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidInputError(f"two models would be served as {dup}; name them with name=MODEL")
    server_options = ServerOptions(
        host=args.host, http_port=args.http_port, grpc_port=args.grpc_port or None, workers=args.workers,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024), auth_token=_auth_token(args),
        repository_api=args.repository_api, follow_interval_s=args.follow_interval_s or None,
        drain_timeout_s=args.drain_timeout_s, log_level=args.log_level)
    registry = _registry(args)
    repo = ModelRepository(max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, timeout_ms=args.request_timeout_ms,
                           metrics=_metrics(), registry=registry,
                           drift=None if args.drift is None else {"reference_size": args.drift})
    try:
        for name, options in models:
            repo.load(name, **_load_options(args, options, registry))
        Server(repo, server_options).run()
    finally:
        repo.close()
    return 0
