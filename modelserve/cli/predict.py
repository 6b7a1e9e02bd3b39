"""``modelserve predict MODEL SOURCE``: a model over every image and video frame of a source.

MODEL is a model file or a registry reference; SOURCE a file, folder, glob, list file, URL,
``rtsp://`` stream or camera index. Results go to ``--out results.jsonl`` (one JSON line per image
or frame; re-running with the same file skips what it already holds), annotated pictures and
videos to ``--save DIR``, Ultralytics label files to ``DIR/labels`` with ``--save-txt``. A file that cannot be
read is reported and skipped; the summary at the end counts files, frames, detections per class,
failures and throughput. Ctrl-C stops cleanly (exit status 130), every finished line written.

    modelserve predict yolov8n.onnx photos/ --out results.jsonl --save runs/1
    modelserve predict det@prod "videos/*.mp4" --vid-stride 5 --conf 0.4 --out night.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._job import batch_predict
from ..tasks import LAYOUTS

__all__ = ["add_parser", "run"]


def _classes(text: str) -> list[int]:
    try:
        return [int(c) for c in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class ids like 0,2,5, got {text!r}") from None


def _imgsz(text: str) -> int | tuple[int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 640 or 480,640, got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected a size like 640 or 480,640, got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``predict`` command to an argparse subparsers object."""
    p = sub.add_parser("predict", help="run a model over images, folders, videos or streams", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model file or registry reference")
    p.add_argument("source", help="image, folder, glob, list file, video, URL, rtsp:// stream or camera index")
    p.add_argument("--out", help="JSON lines file for the results (resumable)")
    p.add_argument("--save", metavar="DIR", help="write annotated pictures into DIR")
    p.add_argument("--save-txt", action="store_true", help="write Ultralytics label files into DIR/labels")
    p.add_argument("--conf", type=float, help="confidence threshold (default: the layout's, 0.25 for Ultralytics)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default: the layout's, 0.7 for Ultralytics)")
    p.add_argument("--layout", choices=LAYOUTS, help="the detector's output layout, for models without "
                   "Ultralytics metadata whose shape does not say it (e.g. yolox)")
    p.add_argument("--imgsz", type=_imgsz, help="inference size, 640 or H,W (dynamic models)")
    p.add_argument("--classes", type=_classes, help="keep only these class ids, e.g. 0,2")
    p.add_argument("--max-det", type=int, help="at most this many detections per image")
    p.add_argument("--device", default="cpu", help="cpu, cuda[:N], ... (default cpu)")
    p.add_argument("--engine", default="auto", help="auto, onnxruntime, openvino, tensorrt or a plugin")
    p.add_argument("--batch", type=int, default=8, help="images per engine run (default 8)")
    p.add_argument("--vid-stride", type=int, default=1, help="keep every n-th video frame")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--verbose", action="store_true", help="log Ultralytics' line per image (stderr)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    thresholds = {k: getattr(args, k) for k in ("conf", "iou", "classes", "max_det", "layout")
                  if getattr(args, k) is not None}
    if args.save_txt and not args.save:
        print("modelserve predict: error: --save-txt needs --save DIR", file=sys.stderr)
        return 2
    summary = batch_predict(
        args.model, args.source, out=args.out, save_dir=args.save, save_txt=args.save_txt, batch=args.batch,
        vid_stride=args.vid_stride, progress=None if args.quiet else sys.stderr, verbose=args.verbose,
        engine=args.engine, device=args.device, imgsz=args.imgsz, **thresholds,
    )
    print(json.dumps(summary.to_dict()) if args.json else summary, file=sys.stdout)
    for path, why in summary.failures:
        print(f"skipped {path}: {why}", file=sys.stderr)
    return 130 if summary.interrupted else 0
