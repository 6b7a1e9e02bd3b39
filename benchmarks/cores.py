"""Throughput against the number of callers, for the ways a CPU's cores can be shared.

    OMP_NUM_THREADS=1 YOLO_OFFLINE=1 .venv/bin/python benchmarks/cores.py [--seconds 1.5] [--rounds 3] [--callers 1 2 4 8]

Each caller thread predicts bus.jpg (JPEG bytes) in a loop for ``--seconds``; images per second over
all callers, the median of ``--rounds`` cells, every configuration measured in turn in each round.
Configurations (same ONNX file, ONNX Runtime on the CPU):

* ``1 run x all cores``: one Predictor, the engine's threads = the cores (ONNX Runtime's default);
  concurrent callers' runs overlap on the same cores. Idle threads do not spin (modelserve's
  default); the first row lets them spin, as ONNX Runtime does by default.
* ``N runs x 1 thread``: one Predictor whose engine has one thread per run; callers run concurrently,
  up to one run per core in parallel (ONNX Runtime sessions are thread-safe).
* ``batching``: the micro-batcher in front (max 8, 2 ms), its default worker count, engine threads =
  the cores; concurrent callers share engine batches.
* ``batching, N workers``: the micro-batcher with one worker per core, all cores or one engine
  thread each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.assets

import modelserve as ms  # noqa: E402
from tests import assets  # noqa: E402


def _rate(p, jpeg: bytes, callers: int, seconds: float) -> float:
    for _ in range(3):
        p.predict(jpeg)
    stop = time.monotonic() + seconds
    counts = [0] * callers

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            p.predict(jpeg)
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--callers", type=int, nargs="+", default=[1, 2, 4, 8])
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    model = str(assets.detector_path())
    jpeg = Path(assets.photo("bus.jpg")).read_bytes()
    configs = {
        "1 run x all cores, threads spin (ONNX Runtime's default)": dict(
            engine_options={"intra_op_threads": 0, "spinning": True}),
        "1 run x all cores": dict(engine_options={"intra_op_threads": 0}),
        f"{cores} runs x 1 thread": dict(engine_options={"intra_op_threads": 1}),
        "batching, 1 worker, all cores": dict(batching=ms.Batching(max_batch_size=8, max_delay_ms=2),
                                              engine_options={"intra_op_threads": 0}),
        f"batching, {cores} workers, all cores": dict(
            batching=ms.Batching(max_batch_size=8, max_delay_ms=2, max_concurrent_batches=cores),
            engine_options={"intra_op_threads": 0}),
        f"batching, {cores} workers x 1 thread": dict(
            batching=ms.Batching(max_batch_size=8, max_delay_ms=2, max_concurrent_batches=cores),
            engine_options={"intra_op_threads": 1}),
        "default (ms.load)": dict(),
    }
    print(f"{cores} cores, bus.jpg bytes, {Path(model).name}; images/s, the median of {args.rounds} cells of "
          f"{args.seconds:g} s, configurations interleaved (this VM's speed drifts)\n")
    print("| configuration | " + " | ".join(f"{c} caller{'s' if c > 1 else ''}" for c in args.callers) + " |")
    print("|---|" + "---:|" * len(args.callers))
    predictors = {name: ms.load(model, **options) for name, options in configs.items()}
    try:
        rates: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for c in args.callers:
                for name, p in predictors.items():
                    rates.setdefault((name, c), []).append(_rate(p, jpeg, c, args.seconds))
        for name in configs:
            row = [statistics.median(rates[(name, c)]) for c in args.callers]
            print(f"| {name} | " + " | ".join(f"{r:.1f}" for r in row) + " |", flush=True)
    finally:
        for p in predictors.values():
            p.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
