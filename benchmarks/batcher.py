"""Micro-batcher benchmarks: the batcher's own overhead, and throughput with a simulated model.

Run from the repository root::

    .venv/bin/python benchmarks/batcher.py                      # overhead + simulated throughput
    .venv/bin/python benchmarks/batcher.py --quick              # shorter runs (smoke test)
    .venv/bin/python benchmarks/batcher.py --sections overhead
    .venv/bin/python benchmarks/batcher.py --sections real      # the real detector (see below)

Sections:

``overhead``
    Latency of one uncontended call (one caller thread, ``fn`` = identity, ``max_delay_ms=0``):
    ``b(x)``, ``b.submit(x).result()`` and ``await b.acall(x)``, against calling ``fn([x])``
    directly. Target: p50 <= 50 us for ``b(x)``. Also the most requests/s the batcher moves with
    a free ``fn`` and 8 caller threads (the GIL-bound ceiling).
``throughput``
    A simulated model, ``fn`` sleeping ``FIXED_MS + PER_ITEM_MS * len(batch)`` (sleep releases the
    GIL, as an accelerator or a native runtime does), driven by 1, 8 and 64 closed-loop caller
    threads for a few seconds each. Compared with the ideal ``m / (FIXED + PER_ITEM * m)`` where
    ``m = min(callers, max_batch_size)`` (one engine, full batches back to back, zero overhead),
    and with the same callers without batching (each call runs ``fn([x])`` under a lock).
``real``
    The real detector through ``ms.load(..., batching=...)``: 1 to 32 closed-loop client threads
    calling ``predict(image)``, batching on vs off; images/s and p50/p99 latency (see
    :func:`bench_real_detector`).

The output is Markdown tables, ready for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelserve.batching import MicroBatcher  # noqa: E402

FIXED_MS = 1.0  # simulated model: fixed cost per call ...
PER_ITEM_MS = 0.05  # ... plus cost per item
MAX_BATCH = 32


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, int(round(q * len(s))) - 1))]


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


# ------------------------------------------------------------------------------------ overhead


def _time_calls(call: Callable[[int], Any], n: int, warmup: int) -> list[float]:
    for i in range(warmup):
        call(i)
    out = []
    perf = time.perf_counter
    for i in range(n):
        t0 = perf()
        call(i)
        out.append(perf() - t0)
    return out


def bench_overhead(n: int, rounds: int = 10) -> str:
    """Per-request latency of each way of calling, in ``rounds`` interleaved rounds (so that a
    burst of load from other processes hits every row alike)."""

    def identity(xs: list[int]) -> list[int]:
        return xs

    per_round = max(1, n // rounds)
    with MicroBatcher(identity, max_batch_size=MAX_BATCH) as b:
        loop = asyncio.new_event_loop()

        async def acall_many(count: int) -> list[float]:
            perf = time.perf_counter
            out = []
            for i in range(count):
                t0 = perf()
                await b.acall(i)
                out.append(perf() - t0)
            return out

        kinds: dict[str, Callable[[int], list[float]]] = {
            "`fn([x])` directly (baseline)": lambda k: _time_calls(lambda x: identity([x]), k, k // 10),
            "`b(x)` blocking call": lambda k: _time_calls(b, k, k // 10),
            "`b.submit(x).result()`": lambda k: _time_calls(lambda x: b.submit(x).result(), k, k // 10),
            "`await b.acall(x)` (one coroutine)": lambda k: loop.run_until_complete(acall_many(k)),
        }
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        round_p50: dict[str, list[float]] = {k: [] for k in kinds}
        names = list(kinds)
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                got = kinds[name](per_round)
                samples[name] += got
                round_p50[name].append(_pct(got, .5))
        loop.close()
    lines = [
        f"Uncontended latency per request: one caller, {rounds} interleaved rounds of {per_round} "
        f"sequential requests per row (`max_batch_size={MAX_BATCH}`, `max_delay_ms=0`, `fn` = identity). "
        "Best-round p50 is the least disturbed round's median.",
        "",
        "| call | p50 µs | best-round p50 µs | p90 µs | p99 µs | mean µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        xs = samples[name]
        lines.append(f"| {name} | {_us(_pct(xs, .5))} | {_us(min(round_p50[name]))} | {_us(_pct(xs, .9))} | "
                     f"{_us(_pct(xs, .99))} | {_us(statistics.fmean(xs))} |")

    # Ceiling: requests/s with a free fn and 8 caller threads.
    with MicroBatcher(identity, max_batch_size=MAX_BATCH) as b:
        rate, _, stats = _closed_loop(b, callers=8, duration_s=max(1.0, n / 20000))
    lines += ["", f"Ceiling with a free `fn` and 8 caller threads: **{rate:,.0f} requests/s** "
                  f"(mean batch {stats.mean_batch_size:.1f})."]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ throughput


def _closed_loop(call: Callable[[int], Any], callers: int, duration_s: float) -> tuple[float, list[float], Any]:
    """``callers`` threads call ``call`` back to back for ``duration_s``; (requests/s, latencies, stats)."""
    latencies: list[list[float]] = [[] for _ in range(callers)]
    start = threading.Barrier(callers + 1)
    stop = threading.Event()

    def client(k: int) -> None:
        perf = time.perf_counter
        mine = latencies[k]
        start.wait()
        i = 0
        while not stop.is_set():
            t0 = perf()
            call(i)
            mine.append(perf() - t0)
            i += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(callers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(duration_s)
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - t0
    flat = [x for lat in latencies for x in lat]
    stats = call.stats() if isinstance(call, MicroBatcher) else None
    return len(flat) / elapsed, flat, stats


def _simulated_model(xs: list[int]) -> list[int]:
    time.sleep((FIXED_MS + PER_ITEM_MS * len(xs)) / 1000.0)
    return xs


def bench_throughput(duration_s: float) -> str:
    lines = [
        f"Simulated model: `fn` sleeps {FIXED_MS:g} ms + {PER_ITEM_MS:g} ms per item (`time.sleep` "
        "overshoots, hence the second ideal); "
        f"`max_batch_size={MAX_BATCH}`, one engine "
        f"(`max_concurrent_batches=1`); closed-loop callers, {duration_s:g} s per row. Unbatched: "
        "each call runs `fn([x])` under a lock.",
        "",
        "| callers | max_delay_ms | unbatched req/s | batched req/s | ideal req/s | batched / ideal "
        "| ideal with measured `fn` | batched / that | mean batch | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for callers in (1, 8, 64):
        m = min(callers, MAX_BATCH)
        ideal = m / ((FIXED_MS + PER_ITEM_MS * m) / 1000.0)
        t0 = time.perf_counter()
        for _ in range(20):
            _simulated_model([0] * m)
        ideal_measured = m / ((time.perf_counter() - t0) / 20)  # sleep overshoot included
        lock = threading.Lock()

        def unbatched(x: int) -> int:
            with lock:
                return _simulated_model([x])[0]

        base_rate, _, _ = _closed_loop(unbatched, callers, duration_s)
        for delay_ms in (0.0, 2.0):
            with MicroBatcher(_simulated_model, max_batch_size=MAX_BATCH, max_delay_ms=delay_ms,
                              max_queue_size=1024) as b:
                rate, lat, stats = _closed_loop(b, callers, duration_s)
            lines.append(
                f"| {callers} | {delay_ms:g} | {base_rate:,.0f} | {rate:,.0f} | {ideal:,.0f} | "
                f"{rate / ideal:.0%} | {ideal_measured:,.0f} | {rate / ideal_measured:.0%} | "
                f"{stats.mean_batch_size:.1f} | {_pct(lat, .5) * 1e3:.2f} | "
                f"{_pct(lat, .99) * 1e3:.2f} |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ real detector


def bench_real_detector(args: argparse.Namespace) -> str:
    """The real detector through ``ms.load(model, batching=...)``: client threads calling
    ``p.predict(image)`` back to back, batching on vs off; images/s and p50/p99 latency per row."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import assets

    import modelserve as ms
    from modelserve._images import load_image

    image = load_image(str(assets.photo("bus.jpg"))).pixels[..., ::-1].copy()  # decoded once: BGR
    engine = args.engine
    duration = 1.5 if args.quick else 5.0
    batching = ms.Batching(max_batch_size=16, max_delay_ms=2)
    lines = [
        f"Real detector (nudenet 320n.onnx, YOLOv8n, imgsz 320) on bus.jpg (810x1080, BGR array), engine "
        f"`{engine}` on the CPU; each row runs {duration:g} s of closed-loop clients. Batching: "
        f"`ms.Batching(max_batch_size=16, max_delay_ms=2)`.",
        "",
        "| clients | off: img/s | off: p50 ms | off: p99 ms | on: img/s | on: p50 ms | on: p99 ms | on: mean batch |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    plain = ms.load(assets.detector_path(), engine=engine)
    batched = ms.load(assets.detector_path(), engine=engine, batching=batching)
    for p in (plain, batched):
        for _ in range(3):
            p.predict(image)  # warm up
    for clients in (1, 2, 4, 8, 16, 32):
        off_rate, off_lat, _ = _closed_loop(lambda i: plain.predict(image), clients, duration)
        before = batched.batcher.stats()
        on_rate, on_lat, _ = _closed_loop(lambda i: batched.predict(image), clients, duration)
        after = batched.batcher.stats()
        mean_batch = (after.items - before.items) / max(after.fn_calls - before.fn_calls, 1)
        lines.append(
            f"| {clients} | {off_rate:.1f} | {_pct(off_lat, .5) * 1e3:.1f} | {_pct(off_lat, .99) * 1e3:.1f} "
            f"| {on_rate:.1f} | {_pct(on_lat, .5) * 1e3:.1f} | {_pct(on_lat, .99) * 1e3:.1f} | {mean_batch:.1f} |"
        )
        print(lines[-1], file=sys.stderr)
    batched.close()
    plain.close()
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="overhead,throughput",
                        help="comma-separated: overhead, throughput, real (default: overhead,throughput)")
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    parser.add_argument("--engine", default="onnxruntime", help="engine for the real-detector section")
    args = parser.parse_args()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - {"overhead", "throughput", "real"}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"<!-- {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{platform.machine()}, {time.strftime('%Y-%m-%d')}, load average before: {load} -->\n")
    if "overhead" in sections:
        print("### Overhead\n")
        print(bench_overhead(2000 if args.quick else 20000))
        print()
    if "throughput" in sections:
        print("### Simulated model throughput\n")
        print(bench_throughput(0.5 if args.quick else 3.0))
        print()
    if "real" in sections:
        print("### Real detector\n")
        print(bench_real_detector(args))


if __name__ == "__main__":
    main()
