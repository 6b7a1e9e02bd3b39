"""A nightly folder job: every image and video under a folder through a registered model, into a
JSON lines file that a re-run (after a crash, or tomorrow with new files) continues instead of
redoing, with annotated pictures and Ultralytics label files beside it.

    python examples/nightly_folder.py det@prod /data/incoming /data/results/2026-12-02

Equivalent to ``modelserve predict det@prod /data/incoming --out .../results.jsonl --save ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import modelserve as ms


def run(model: str, folder: str, out_dir: str, *, conf: float = 0.25, vid_stride: int = 10,
        pictures: bool = True) -> ms.JobSummary:
    os.makedirs(out_dir, exist_ok=True)
    summary = ms.batch_predict(
        model, folder, out=os.path.join(out_dir, "results.jsonl"),
        save_dir=os.path.join(out_dir, "pictures") if pictures else None, save_txt=pictures,
        vid_stride=vid_stride, conf=conf, batch=8,
    )
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary.to_dict(), fh, indent=1)
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="model file or registry reference (name@alias)")
    ap.add_argument("folder")
    ap.add_argument("out_dir")
    ap.add_argument("--conf", type=float, default=0.25)
    args = ap.parse_args()
    summary = run(args.model, args.folder, args.out_dir, conf=args.conf)
    print(summary)
    for path, why in summary.failures:
        print(f"skipped {path}: {why}", file=sys.stderr)
    return 130 if summary.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
