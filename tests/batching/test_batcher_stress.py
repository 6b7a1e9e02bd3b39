"""Stress: tens of thousands of requests from 64 threads, faults injected into a random 5% of the
calls of fn, plus deadlines and cancellations; every future resolves exactly once, with the right
outcome, and nothing hangs. Also: close() while many threads are still submitting."""

from __future__ import annotations

import faulthandler
import random
import threading
from collections import Counter
from concurrent.futures import Future, wait
from typing import Any

import pytest

from modelserve._errors import BatcherClosedError, DeadlineExceededError, QueueFullError
from modelserve.batching import MicroBatcher

WAIT_S = 60.0
THREADS = 64
PER_THREAD = 800  # 51,200 requests per run
POISON_EVERY = 997  # items divisible by this always fail (an exception instance in the result)


class InjectedFault(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(240, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _faulty_fn(seed: int):
    rng = random.Random(seed)
    lock = threading.Lock()

    def fn(items: list[int]) -> list[Any]:
        with lock:
            fault = rng.random() < 0.05
        if fault:
            raise InjectedFault(f"injected fault in a batch of {len(items)}")
        return [ValueError(f"poison {x}") if x % POISON_EVERY == 0 else 2 * x for x in items]

    return fn


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        dict(max_batch_size=32),
        dict(max_batch_size=16, max_concurrent_batches=4, max_delay_ms=1.0, group_key=lambda x: x % 3),
    ],
    ids=["greedy", "grouped-delay-4-workers"],
)
def test_every_future_resolves_exactly_once(options):
    batcher = MicroBatcher(_faulty_fn(1234), **options)
    resolved = Counter[int]()
    resolved_lock = threading.Lock()
    records: list[list[tuple[int, str, Future]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []

    def on_done(x: int):
        def callback(_: Future) -> None:
            with resolved_lock:
                resolved[x] += 1
        return callback

    def client(t: int) -> None:
        rng = random.Random(t)
        window: list[Future] = []
        try:
            for i in range(PER_THREAD):
                x = t * PER_THREAD + i
                kind = rng.choices(["submit", "call", "deadline", "cancel"], [70, 20, 5, 5])[0]
                if kind == "call":
                    fut: Future = Future()
                    fut.add_done_callback(on_done(x))
                    try:
                        fut.set_result(batcher(x))
                    except BaseException as exc:  # noqa: BLE001 - recorded and checked below
                        fut.set_exception(exc)
                else:
                    timeout = rng.uniform(0.1, 5.0) if kind == "deadline" else None
                    try:
                        fut = batcher.submit(x, timeout_ms=timeout)
                    except QueueFullError as exc:  # allowed, but must be immediate and honest
                        fut = Future()
                        fut.set_exception(exc)
                    fut.add_done_callback(on_done(x))
                    if kind == "cancel":
                        fut.cancel()
                    window.append(fut)
                    if len(window) >= 4:
                        settle(window.pop(0))
                records[t].append((x, kind, fut))
            for fut in window:
                settle(fut)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S * 2)
        assert not thread.is_alive(), "a client thread hung"
    assert errors == []

    outcomes = Counter[str]()
    for x, kind, fut in (r for rs in records for r in rs):
        assert fut.done()
        if fut.cancelled():
            assert kind == "cancel"
            outcomes["cancelled"] += 1
            continue
        exc = fut.exception(0)
        if exc is None:
            assert fut.result() == 2 * x and x % POISON_EVERY != 0
            outcomes["ok"] += 1
        elif isinstance(exc, ValueError):
            assert x % POISON_EVERY == 0 and str(exc) == f"poison {x}"
            outcomes["poison"] += 1
        elif isinstance(exc, InjectedFault):
            outcomes["fault"] += 1  # failed on its own call too: 5% of singleton retries
        elif isinstance(exc, DeadlineExceededError):
            assert kind == "deadline"
            outcomes["expired"] += 1
        elif isinstance(exc, QueueFullError):
            outcomes["rejected"] += 1
        else:
            raise AssertionError(f"unexpected outcome for {x} ({kind}): {exc!r}")

    total = THREADS * PER_THREAD
    assert sum(resolved.values()) == total and set(resolved.values()) == {1}  # exactly once each
    assert sum(outcomes.values()) == total
    assert outcomes["ok"] > total * 0.7
    assert outcomes["cancelled"] > 0 and outcomes["poison"] > 0  # every path was exercised
    # With retries, the share failing from injected faults is about 5% of the singletons' 5%.
    assert outcomes["fault"] < total * 0.02

    batcher.close(drain=True, timeout_s=WAIT_S)
    stats = batcher.stats()
    assert stats.queue_depth == 0 and stats.in_flight_batches == 0
    assert stats.submitted == stats.succeeded + stats.failed + stats.expired + stats.cancelled + stats.aborted
    assert stats.rejected == outcomes["rejected"] and stats.aborted == 0
    assert stats.succeeded == outcomes["ok"]
    assert stats.failed == outcomes["poison"] + outcomes["fault"]
    assert stats.expired + stats.cancelled == outcomes["expired"] + outcomes["cancelled"]
    assert stats.fn_calls > stats.batches  # faults were injected and isolated by retries
    assert max(stats.batch_size_histogram) <= options["max_batch_size"]


@pytest.mark.slow
def test_close_while_threads_are_submitting():
    def fn(items: list[int]) -> list[int]:
        return [x + 1 for x in items]

    batcher = MicroBatcher(fn, max_batch_size=8, max_concurrent_batches=2)
    futures: list[list[Future]] = [[] for _ in range(16)]
    started = threading.Barrier(17, timeout=WAIT_S)
    refused = [0] * 16

    def client(t: int) -> None:
        started.wait()
        i = 0
        while True:
            try:
                futures[t].append(batcher.submit(t * 1_000_000 + i))
            except QueueFullError:
                refused[t] += 1
            except BatcherClosedError:
                return
            i += 1
            if len(futures[t]) % 8 == 0:
                settle(futures[t][-1])

    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(16)]
    for thread in threads:
        thread.start()
    started.wait()
    while sum(len(f) for f in futures) < 5000:
        threading.Event().wait(0.01)
    batcher.close(drain=True, timeout_s=WAIT_S)
    for thread in threads:
        thread.join(WAIT_S)
        assert not thread.is_alive()
    for t, fs in enumerate(futures):
        expected = [t * 1_000_000 + i + 1 for i in range(len(fs) + refused[t])]
        got = []
        for fut in fs:
            assert fut.done()  # drained by close(); nothing left behind
            got.append(fut.result(0))
        assert set(got) <= set(expected) and len(got) == len(set(got))
    stats = batcher.stats()
    assert stats.submitted == stats.succeeded == sum(len(f) for f in futures)


def settle(fut: Future) -> None:
    """Wait (bounded) for a future to resolve, whatever the outcome."""
    done, _ = wait([fut], WAIT_S)
    assert done, "a future did not resolve in time"


