"""``modelserve export triton REF OUT``: write a Triton Inference Server model repository.

REF is an ONNX file or a registry reference (``det@prod``: exported as ``det`` at the version the
alias pins; a file: under its stem, as version 1). OUT must be empty or absent (``--force``
replaces only the model folders the export writes). Writes ``OUT/<name>/`` (the model, with a
``config.pbtxt`` mapped from the batching options below) and ``OUT/<name>_pipeline/`` (a Python-
backend model running modelserve's whole pipeline: encoded images in, detections out).

    modelserve export triton det@prod models/ --max-batch-size 16 --max-delay-ms 2
    modelserve export triton det@prod models/ --format openvino --instances 2
    modelserve export triton det@prod models/ --format plan --device cuda:0   # a plan the registry holds
    tritonserver --model-repository models/
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..tasks import LAYOUTS

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``export`` command (its one target so far: ``triton``) to an argparse subparsers object."""
    p = sub.add_parser("export", help="export a model for another server (Triton)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    targets = p.add_subparsers(dest="export_target", metavar="TARGET")
    targets.required = True
    t = targets.add_parser("triton", help="write a Triton model repository", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("ref", metavar="REF", help="an ONNX file or a registry reference (det@prod)")
    t.add_argument("out", metavar="OUT", help="the model repository folder to write (empty or absent)")
    t.add_argument("--root", help="registry directory (default: $MODELSERVE_HOME or the user cache dir)")
    t.add_argument("--name", help="the Triton model name (default: the registry name or the file stem)")
    t.add_argument("--version", type=int, help="the Triton version folder (default: the registry version, or 1)")
    t.add_argument("--format", choices=("onnx", "openvino", "plan"), default="onnx",
                   help="model.onnx (default), OpenVINO IR, or a TensorRT plan the registry holds")
    t.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N: the instance group's device")
    t.add_argument("--instances", type=int, default=1, help="model instances (default 1)")
    t.add_argument("--max-batch-size", type=int, default=8, help="most images per batch (default 8; 0: no batching)")
    t.add_argument("--max-delay-ms", type=float, default=2.0, help="how long a batch waits to fill (default 2)")
    t.add_argument("--max-queue-size", type=int, help="most queued requests (default 8 x batch size)")
    t.add_argument("--request-timeout-ms", type=float, help="a request still queued after this long is rejected")
    t.add_argument("--preferred-batch-size", type=int, action="append", metavar="N",
                   help="a preferred batch size (repeatable; default: the max batch size)")
    t.add_argument("--no-pipeline", action="store_true", help="write only the model, not <name>_pipeline")
    t.add_argument("--pipeline-engine", default="auto", help="the engine the pipeline loads in Triton (default auto)")
    t.add_argument("--force", action="store_true", help="write into a non-empty OUT")
    t.add_argument("--layout", choices=LAYOUTS, help="the detector's output layout, for models without Ultralytics "
                   "metadata whose shape does not say it (e.g. yolox); the pipeline loads it so")
    t.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from .._registry import Registry, is_registry_ref
    from ..batching import Batching
    from ..triton import export_repository

    batching = None
    if args.max_batch_size:
        batching = Batching(max_batch_size=args.max_batch_size, max_delay_ms=args.max_delay_ms,
                            max_queue_size=args.max_queue_size, timeout_ms=args.request_timeout_ms)
    registry = None
    if args.root is not None or is_registry_ref(args.ref):
        registry = Registry(args.root, read_only=True)
    out = export_repository(
        args.ref, args.out, registry=registry, name=args.name, version=args.version, format=args.format,
        batching=batching, preferred_batch_sizes=args.preferred_batch_size, instances=args.instances,
        device=args.device, pipeline=not args.no_pipeline, pipeline_engine=args.pipeline_engine, force=args.force,
        load_options={"layout": args.layout} if args.layout else None)
    print(f"wrote {out}", file=sys.stdout)
    return 0
