"""A camera loop: read a live stream (a camera index, rtsp://, an HTTP MJPEG URL, or a video file
for a dry run), print each frame's detections, and keep the last annotated frame on disk.

    python examples/camera_loop.py yolov8n.onnx rtsp://camera.local/stream --every 5
    python examples/camera_loop.py yolov8n.onnx 0                 # the first camera (/dev/video0)

The loop holds one batch of frames at a time (``stream=True``); if the stream drops, modelserve
reopens it a few times, then raises SourceError, which ends the loop with a message instead of a
hang. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import sys

import modelserve as ms


def run(model: str, source: str, *, every: int = 1, snapshot: str | None = "last.jpg", max_frames: int | None = None,
        conf: float = 0.25) -> int:
    """Run until the stream ends (or ``max_frames``); returns the number of frames predicted."""
    seen = 0
    with ms.load(model, conf=conf) as p:
        src: object = int(source) if source.isdigit() else source
        for r in p.predict(source=src, stream=True, vid_stride=every):
            names = ", ".join(f"{n} {c:.2f}" for n, c in zip(r.class_names, r.confidence.tolist())) or "nothing"
            print(f"frame {r.origin.frame} t={r.origin.timestamp}: {names}", flush=True)
            if snapshot is not None:
                r.save(snapshot)  # the annotated frame (atomic: a viewer never sees half a file)
            seen += 1
            if max_frames is not None and seen >= max_frames:
                break
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("source", help="camera index, rtsp:// or http:// stream URL, or a video file")
    ap.add_argument("--every", type=int, default=1, help="predict every n-th frame")
    ap.add_argument("--snapshot", default="last.jpg", help="where to keep the last annotated frame")
    args = ap.parse_args()
    try:
        run(args.model, args.source, every=args.every, snapshot=args.snapshot)
    except ms.SourceError as exc:
        print(f"stream ended: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
