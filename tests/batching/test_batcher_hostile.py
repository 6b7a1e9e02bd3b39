"""The micro-batcher under hostile arguments and results: absurd but valid deadlines and delays,
results that are not sequences, and memory over many requests that carry deadlines.

Each test feeds the input that broke an earlier version (issue 10) and fails on it: a deadline
of 9.3e12 ms killed the deadline thread with ``OverflowError`` (so every later request failed
with ``BatcherClosedError``), ``fn`` returning a dict handed its keys to the callers, and the
deadline heap kept every finished request's result alive until its deadline passed."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc

import numpy as np
import pytest

import modelserve as ms
from modelserve._errors import BatchResultError, InvalidInputError
from modelserve.batching import Batching, MicroBatcher

WAIT_S = 30.0
HUGE_MS = [9.3e12, 1e13, 1e300, 10**400]  # finite (or an int beyond float) and far beyond TIMEOUT_MAX
HUGE_IDS = ["9.3e12", "1e13", "1e300", "10**400"]


def _double(xs):
    return [2 * x for x in xs]


# ---------------------------------------------------------------- deadlines and delays beyond any clock


@pytest.mark.parametrize("timeout_ms", HUGE_MS, ids=HUGE_IDS)
def test_huge_request_deadline_leaves_the_batcher_alive(timeout_ms):
    with MicroBatcher(_double, max_batch_size=4) as b:
        assert b.submit(21, timeout_ms=timeout_ms).result(WAIT_S) == 42
        # The deadline thread now waits on that deadline; the batcher must keep serving.
        for i in range(5):
            assert b.submit(i).result(WAIT_S) == 2 * i
        assert b.submit(3, timeout_ms=timeout_ms).result(WAIT_S) == 6
        assert not b.closed
        stats = b.stats()
        assert stats.succeeded == 7 and stats.aborted == 0 and stats.expired == 0


@pytest.mark.parametrize("timeout_ms", HUGE_MS, ids=HUGE_IDS)
def test_huge_default_deadline(timeout_ms):
    with MicroBatcher(_double, max_batch_size=2, timeout_ms=timeout_ms) as b:
        assert [b.submit(i).result(WAIT_S) for i in range(4)] == [0, 2, 4, 6]
        assert not b.closed


@pytest.mark.parametrize("delay_ms", [9.3e12, 1e300], ids=str)
def test_huge_max_delay_still_fires_full_batches_and_drains_on_close(delay_ms):
    b = MicroBatcher(_double, max_batch_size=2, max_delay_ms=delay_ms)
    try:
        f1 = b.submit(1)  # alone: waits for a companion (the worker waits 'forever' in pieces)
        f2 = b.submit(2)  # the group is full: fires now
        assert (f1.result(WAIT_S), f2.result(WAIT_S)) == (2, 4)
        f3 = b.submit(3)
        assert not f3.done()
    finally:
        b.close(timeout_s=WAIT_S)  # draining does not wait for max_delay_ms
    assert f3.result(0) == 6


def test_max_delay_beyond_float_is_refused():
    with pytest.raises(InvalidInputError, match="max_delay_ms must be a finite number"):
        Batching(max_delay_ms=10**400)


@pytest.mark.parametrize("timeout_s", [1e12, 1e300, 10**400, float("inf")], ids=["1e12", "1e300", "10**400", "inf"])
def test_close_with_huge_timeout(timeout_s):
    b = MicroBatcher(_double, max_batch_size=4)
    f = b.submit(5)
    b.close(timeout_s=timeout_s)
    assert f.result(0) == 10 and b.closed


def test_blocking_submit_with_huge_deadline_waits_for_room():
    gate = threading.Event()

    def fn(xs):
        gate.wait(WAIT_S)
        return _double(xs)

    with MicroBatcher(fn, max_batch_size=1, max_queue_size=1, on_full="block") as b:
        running = b.submit(0)  # taken by the worker, held on the gate
        queued = None
        for _ in range(1000):  # until the worker holds it and the queue has room again
            if b.stats().in_flight_batches == 1:
                queued = b.submit(1)
                break
            threading.Event().wait(0.005)
        assert queued is not None
        out: list = []
        t = threading.Thread(target=lambda: out.append(b.submit(2, timeout_ms=1e13)))
        t.start()
        t.join(0.2)
        assert t.is_alive()  # blocked on the full queue, not crashed
        gate.set()
        t.join(WAIT_S)
        assert not t.is_alive()
        assert [f.result(WAIT_S) for f in (running, queued, out[0])] == [0, 2, 4]
        assert not b.closed


def test_async_blocking_submit_with_huge_deadline():
    gate = threading.Event()

    def fn(xs):
        gate.wait(WAIT_S)
        return _double(xs)

    async def main(b):
        first = asyncio.ensure_future(b.acall(1, timeout_ms=1e13))
        second = asyncio.ensure_future(b.acall(2, timeout_ms=1e13, block=True))
        third = asyncio.ensure_future(b.acall(3, timeout_ms=1e13, block=True))
        await asyncio.sleep(0.2)
        assert not third.done()
        gate.set()
        return await asyncio.wait_for(asyncio.gather(first, second, third), WAIT_S)

    with MicroBatcher(fn, max_batch_size=1, max_queue_size=1) as b:
        assert asyncio.run(main(b)) == [2, 4, 6]
        assert not b.closed


def test_predictor_with_huge_batching_deadline(detector_path, bgr):
    with ms.load(detector_path, batching=Batching(max_batch_size=2, timeout_ms=1e13)) as p:
        image = bgr("bus.jpg")
        first = p.predict(image)
        again = p.predict([image, image])
        assert len(first) > 0 and all(np.array_equal(first.xyxy, r.xyxy) for r in again)
        assert not p.batcher.closed


# ---------------------------------------------------------------- results that are not sequences


@pytest.mark.parametrize(
    "result, got",
    [
        (lambda xs: {x: 10 * x for x in xs}, "dict"),
        (lambda xs: set(10 * x for x in xs), "set"),
        (lambda xs: "ab", "str"),
        (lambda xs: b"ab", "bytes"),
        (lambda xs: np.float32(1.0), "float32"),
        (lambda xs: np.array(7), "ndarray"),
    ],
    ids=["dict", "set", "str", "bytes", "numpy-scalar", "0d-array"],
)
def test_result_that_is_not_a_sequence_fails_every_item(result, got):
    with MicroBatcher(result, max_batch_size=2) as b:
        b._testing.pause()
        futures = [b.submit(1), b.submit(2)]
        assert b._testing.wait_queued(2, timeout_s=WAIT_S)
        b._testing.resume()
        for f in futures:
            error = f.exception(WAIT_S)
            assert type(error) is BatchResultError, error
            assert f"fn returned a {got}" in str(error)
        assert b.stats().failed == 2 and not b.closed


@pytest.mark.parametrize(
    "result",
    [lambda xs: [10 * x for x in xs], lambda xs: tuple(10 * x for x in xs), lambda xs: np.array(xs) * 10,
     lambda xs: range(10, 10 * len(xs) + 1, 10)],
    ids=["list", "tuple", "ndarray", "range"],
)
def test_sequences_are_accepted(result):
    with MicroBatcher(result, max_batch_size=2) as b:
        b._testing.pause()
        futures = [b.submit(1), b.submit(2)]
        assert b._testing.wait_queued(2, timeout_s=WAIT_S)
        b._testing.resume()
        assert [int(f.result(WAIT_S)) for f in futures] == [10, 20]


# ---------------------------------------------------------------- memory stays flat with deadlines


@pytest.mark.parametrize("how", ["submit", "acall"])
def test_finished_requests_with_deadlines_are_not_kept(how):
    """1 MiB results with a 60 s deadline: before the fix the deadline heap held every finished
    request (and so its result) until its deadline; 300 calls kept 300 MiB."""
    size = 1 << 20

    def fn(xs):
        return [np.full(size, x % 256, dtype=np.uint8) for x in xs]

    async def acall_all(b, n):
        for i in range(n):
            out = await b.acall(i, timeout_ms=60000)
            assert out[0] == i % 256

    with MicroBatcher(fn, max_batch_size=4) as b:
        b.submit(0, timeout_ms=60000).result(WAIT_S)  # threads and heap exist before measuring
        gc.collect()
        tracemalloc.start()
        try:
            if how == "submit":
                for i in range(300):
                    assert b.submit(i, timeout_ms=60000).result(WAIT_S)[0] == i % 256
            else:
                asyncio.run(acall_all(b, 300))
            gc.collect()
            current, _peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert current < 16 * size, f"{current / size:.0f} MiB still held after 300 finished requests"


def test_cancelled_and_expired_requests_drop_their_items():
    """Cancelled and expired requests stay in the deadline heap until their deadline: their
    (large) items must not."""
    size = 1 << 20
    with MicroBatcher(lambda xs: [0 for _ in xs], max_batch_size=1) as b:
        b._testing.pause()
        gc.collect()
        tracemalloc.start()
        try:
            for _ in range(40):
                f = b.submit(np.zeros(size, np.uint8), timeout_ms=60000)
                assert f.cancel()
            for _ in range(40):
                f = b.submit(np.zeros(size, np.uint8), timeout_ms=1)
                with pytest.raises(ms.DeadlineExceededError):
                    f.result(WAIT_S)
            gc.collect()
            current, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            b._testing.resume()
    assert current < 8 * size, f"{current / size:.0f} MiB held by cancelled/expired requests"


def test_absurd_worker_count_is_refused():
    with pytest.raises(InvalidInputError, match="max_concurrent_batches must be at most 1024"):
        Batching(max_concurrent_batches=10**6)
    with pytest.raises(InvalidInputError, match="max_concurrent_batches"):
        MicroBatcher(_double, max_concurrent_batches=10**6)
