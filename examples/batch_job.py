"""A batch job: detect objects in every image of a folder, write one JSON line per image.

    python examples/batch_job.py MODEL.onnx IMAGES_DIR out.jsonl [--batch 16] [--conf 0.25]

Images are read and predicted in chunks of ``--batch`` (a list in, a list out); an unreadable file
is reported on its line and does not stop the job.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import modelserve as ms

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def run(model: Path, folder: Path, out: Path, batch: int = 16, conf: float = 0.25) -> dict:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    predictor = ms.load(model, conf=conf)
    done = failed = boxes = 0
    start = time.perf_counter()
    with open(out, "w", encoding="utf-8") as fh:
        for i in range(0, len(files), batch):
            chunk = files[i : i + batch]
            try:
                results = predictor.predict(chunk)
            except ms.InvalidInputError:
                results = []  # one bad file in the chunk: fall back to one at a time
                for path in chunk:
                    try:
                        results.append(predictor.predict(path))
                    except ms.InvalidInputError as exc:
                        results.append(exc)
            for path, res in zip(chunk, results):
                if isinstance(res, Exception):
                    fh.write(json.dumps({"file": path.name, "error": str(res)}) + "\n")
                    failed += 1
                    continue
                fh.write(json.dumps({"file": path.name, **res.to_dict()}) + "\n")
                done += 1
                boxes += len(res)
    seconds = time.perf_counter() - start
    return {"images": done, "failed": failed, "detections": boxes, "seconds": round(seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("folder", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--conf", type=float, default=0.25)
    args = ap.parse_args(argv)
    summary = run(args.model, args.folder, args.out, args.batch, args.conf)
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
