"""Timing shared by the benchmarks (each benchmark is a script; this folder is on its sys.path)."""

from __future__ import annotations

import time
from typing import Callable


def best(fn: Callable[[], object], reps: int = 5) -> float:
    """The fastest of ``reps`` calls of ``fn``, in milliseconds, after one warm-up call."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1000 * min(ts)
