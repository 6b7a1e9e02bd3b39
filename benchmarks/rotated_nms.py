"""Rotated NMS: modelserve's Cython kernel vs Ultralytics' torch fast-NMS (and the NumPy fallback).

Run: OMP_NUM_THREADS=1 YOLO_OFFLINE=1 python benchmarks/rotated_nms.py  (torch/ultralytics optional)
Sets: clustered OBB candidates (DOTA-like: many objects, several overlapping candidates each),
scores in [0, 1), 4 classes, iou 0.7 (Ultralytics' predict default).
"""

from __future__ import annotations

import os
import time

import numpy as np

from modelserve import _rotated, ops  # noqa: F401  (_rotated: its NumPy fallback is timed too)


def make(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = max(1, n // 6)
    cen = rng.uniform(0, 1024, (k, 2))
    lab = rng.integers(0, k, n)
    xy = cen[lab] + rng.normal(0, 4, (n, 2))
    wh = rng.uniform(8, 60, (k, 2))[lab] * rng.uniform(0.9, 1.1, (n, 2))
    r = rng.uniform(-np.pi / 4, 3 * np.pi / 4, k)[lab] + rng.normal(0, 0.05, n)
    b = np.concatenate([xy, wh, r[:, None]], 1).astype(np.float32)
    return b, rng.random(n).astype(np.float32), rng.integers(0, 4, n)


def bench(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    try:
        import torch
        from ultralytics.utils.metrics import batch_probiou
        from ultralytics.utils.nms import TorchNMS
    except ImportError:
        torch = None
    print(f"torch threads: {torch.get_num_threads() if torch else '-'}  backend: {ops.backend()}")
    print(f"{'n':>6} {'kernel ms':>10} {'torch ms':>10} {'numpy ms':>10} {'torch/kernel':>13} {'numpy/kernel':>13} same")
    for n in (100, 1000, 5000):
        b, s, c = make(n)
        reps = 20 if n <= 1000 else 3
        tk = bench(lambda: _rotated.nms_rotated(b, s, 0.7), reps)
        tt = same = None
        if torch is not None:
            tb, ts = torch.from_numpy(b), torch.from_numpy(s)
            tt = bench(lambda: TorchNMS.fast_nms(tb, ts, 0.7, iou_func=batch_probiou), reps)
            same = np.array_equal(TorchNMS.fast_nms(tb, ts, 0.7, iou_func=batch_probiou).numpy(),
                                  _rotated.nms_rotated(b, s, 0.7))
        os.environ[ops.KERNELS_ENV] = "numpy"
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tn = bench(lambda: _rotated.nms_rotated(b, s, 0.7), max(1, reps // 4))
        del os.environ[ops.KERNELS_ENV]
        def fmt(v):
            return f"{v * 1e3:10.2f}" if v is not None else f"{'-':>10}"

        def ratio(v):
            return f"{v / tk:12.1f}x" if v is not None else f"{'-':>13}"

        print(f"{n:>6} {fmt(tk)} {fmt(tt)} {fmt(tn)} {ratio(tt)} {ratio(tn)} {same}")
        tb2 = bench(lambda: _rotated.batched_nms_rotated(b, s, c, 0.7), reps)
        print(f"{'':>6} batched_nms_rotated (4 classes): {tb2 * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
