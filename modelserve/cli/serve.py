"""``modelserve serve MODEL [MODEL ...]``: serve models over KServe v2 REST (the Open Inference Protocol).

Each MODEL is a model file or a registry reference, served under its file stem or registry name;
``name=MODEL`` chooses the name. Every model is loaded with micro-batching on, so concurrent
requests share engine batches. Needs ``pip install modelserve[server]``.

    modelserve serve yolov8n.onnx                       # http://127.0.0.1:8000/v2/models/yolov8n
    modelserve serve det=det@prod --host 0.0.0.0 --http-port 8080 --max-batch-size 16
    curl -F image=@bus.jpg 'http://127.0.0.1:8000/v1/models/yolov8n/predict?conf=0.4'
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError

__all__ = ["add_parser", "run", "model_name"]


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
    p.add_argument("models", nargs="+", metavar="MODEL", help="model file or registry reference (name=MODEL to name it)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=8000, help="REST port (default 8000)")
    p.add_argument("--device", default="cpu", help="cpu, cuda[:N], ... (default cpu)")
    p.add_argument("--engine", default="auto", help="auto, onnxruntime, openvino, tensorrt or a plugin")
    p.add_argument("--max-batch-size", type=int, default=8, help="most images per engine batch (default 8)")
    p.add_argument("--max-delay-ms", type=float, default=2.0, help="how long a batch waits to fill (default 2)")
    p.add_argument("--max-queue-size", type=int, help="most queued images before 503 (default 8 x batch size)")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body in MiB (default 64)")
    p.add_argument("--max-pixels", type=int, help="most pixels of one image (default 40 million)")
    p.add_argument("--log-level", default="info", help="uvicorn's log level (default info)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..batching import Batching
    from ..serving.core import DEFAULT_MAX_PIXELS, ModelRepository

    names = [model_name(spec) for spec in args.models]
    dup = sorted({n for n, _ in names if [m for m, _ in names].count(n) > 1})
    if dup:
        raise InvalidInputError(f"two models would be served as {dup}; name them with name=MODEL")
    batching = Batching(max_batch_size=args.max_batch_size, max_delay_ms=args.max_delay_ms,
                        max_queue_size=args.max_queue_size)
    repo = ModelRepository(max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    try:
        for name, source in names:
            repo.load(name, source, engine=args.engine, device=args.device, batching=batching)
        from ..serving.rest import serve

        serve(repo, host=args.host, port=args.http_port, max_body_bytes=int(args.max_body_mb * 1024 * 1024),
              log_level=args.log_level)
    finally:
        repo.close()
    return 0
