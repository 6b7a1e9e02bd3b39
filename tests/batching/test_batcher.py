"""The micro-batcher: batch composition, error isolation, bounds, deadlines, cancellation, close,
asyncio callers. Timing-independent by construction: batches are held with the test hooks
(``b._testing.pause()`` / ``wait_queued()``) or a gated ``fn``; every wait has an upper bound
(``WAIT_S``), and a faulthandler watchdog ends the run if a test still hangs."""

from __future__ import annotations

import asyncio
import dataclasses
import faulthandler
import logging
import math
import threading
import time
from concurrent.futures import CancelledError, Future, as_completed, wait
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modelserve as ms
from modelserve._errors import (
    BatcherClosedError,
    DeadlineExceededError,
    InvalidInputError,
    ModelserveError,
    QueueFullError,
)
from modelserve.batching import BatcherStats, Batching, MicroBatcher

WAIT_S = 30.0  # upper bound for anything a test waits on; generous for a loaded 2-core machine


# ------------------------------------------------------------------------------------ helpers


class Recorder:
    """A batch function that records each call, can be held on a gate, and maps ``transform``
    over the items (an exception ``transform`` raises fails the whole call).

    ``entered`` is released once per call, so a test can wait for "fn is running now".
    """

    def __init__(self, transform: Callable[[Any], Any] = lambda x: 2 * x, *, gated: bool = False) -> None:
        self.transform = transform
        self.batches: list[list[Any]] = []
        self.call_times: list[float] = []
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.entered = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.running = 0
        self.max_running = 0

    def __call__(self, items: list[Any]) -> list[Any]:
        with self._lock:
            self.batches.append(list(items))
            self.call_times.append(time.monotonic())
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            self.entered.release()
            if not self.gate.wait(WAIT_S):
                raise RuntimeError("test gate never opened")
            return [self.transform(x) for x in items]
        finally:
            with self._lock:
                self.running -= 1

    def wait_entered(self, n: int = 1) -> None:
        for _ in range(n):
            if not self.entered.acquire(timeout=WAIT_S):
                raise AssertionError("fn was not called in time")

    @property
    def items_seen(self) -> list[Any]:
        return [x for batch in self.batches for x in batch]


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Test-side wait for a state the batcher has no event for (checks every 5 ms, bounded)."""
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def run_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run target in a daemon thread; the dict gets 'result' or 'error'."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["result"] = target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, box


def join(thread: threading.Thread) -> None:
    thread.join(WAIT_S)
    assert not thread.is_alive(), "thread did not finish in time"


@pytest.fixture(autouse=True)
def _watchdog():
    """Hard upper bound per test: dump every thread's stack and exit rather than hang."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def make():
    """``make(fn, **options)`` -> a MicroBatcher that is closed (gates opened) after the test."""
    made: list[tuple[MicroBatcher, Any]] = []

    def factory(fn: Any = None, **options: Any) -> MicroBatcher:
        fn = Recorder() if fn is None else fn
        batcher = MicroBatcher(fn, **options)
        made.append((batcher, fn))
        return batcher

    yield factory
    for batcher, fn in made:
        if isinstance(fn, Recorder):
            fn.gate.set()
        batcher.close(drain=False, timeout_s=10)


# ------------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    "options, error",
    [
        ({}, None),
        ({"max_batch_size": 1, "max_delay_ms": 2.5, "max_queue_size": 1, "timeout_ms": math.inf}, None),
        ({"max_batch_size": np.int64(8), "on_full": "block", "timeout_ms": 100}, None),
        ({"max_batch_size": 0}, "max_batch_size must be an integer >= 1, got 0"),
        ({"max_batch_size": 2.0}, "max_batch_size must be an integer >= 1, got 2.0"),
        ({"max_batch_size": True}, "max_batch_size must be an integer >= 1, got True"),
        ({"max_delay_ms": -1}, "max_delay_ms must be a finite number >= 0"),
        ({"max_delay_ms": math.nan}, "max_delay_ms must be a finite number >= 0"),
        ({"max_delay_ms": math.inf}, "max_delay_ms must be a finite number >= 0"),
        ({"max_delay_ms": "2"}, "got '2'"),
        ({"max_queue_size": 0}, "max_queue_size must be an integer >= 1, got 0"),
        ({"max_concurrent_batches": 0}, "max_concurrent_batches must be an integer >= 1"),
        ({"timeout_ms": 0}, "timeout_ms must be a number > 0"),
        ({"timeout_ms": -5}, "timeout_ms must be a number > 0"),
        ({"on_full": "drop"}, "on_full must be 'reject' or 'block', got 'drop'"),
    ],
)
def test_batching_validates_options(options, error):
    if error is None:
        config = Batching(**options)
        assert isinstance(config.max_batch_size, int) and type(config.max_delay_ms) is float
        MicroBatcher(lambda xs: xs, **dataclasses.asdict(config)).close()
    else:
        with pytest.raises(InvalidInputError, match=error.replace("(", r"\(").replace(".", r"\.")):
            Batching(**options)
        with pytest.raises(InvalidInputError):
            MicroBatcher(lambda xs: xs, **options)


def test_batching_defaults_and_queue_bound():
    config = Batching()
    assert dataclasses.asdict(config) == {
        "max_batch_size": 32, "max_delay_ms": 0.0, "max_queue_size": None,
        "max_concurrent_batches": 1, "timeout_ms": None, "on_full": "reject"}
    assert config.queue_bound == 8 * 32
    assert Batching(max_batch_size=4, max_concurrent_batches=3).queue_bound == 8 * 4 * 3
    assert Batching(max_queue_size=5).queue_bound == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_batch_size = 3  # type: ignore[misc]


def test_bad_callables_and_arguments_are_refused(make):
    with pytest.raises(InvalidInputError, match="fn must be callable"):
        MicroBatcher(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="group_key must be a callable"):
        MicroBatcher(lambda xs: xs, group_key="shape")  # type: ignore[arg-type]
    b = make(group_key=lambda x: x["key"])
    with pytest.raises(InvalidInputError, match="group_key"):
        b.submit(1)  # group_key raises TypeError
    with pytest.raises(InvalidInputError, match="hashable"):
        b.submit({"key": [1, 2]})  # unhashable key
    with pytest.raises(InvalidInputError, match="timeout_ms must be a number > 0"):
        b.submit({"key": 1}, timeout_ms=0)
    with pytest.raises(InvalidInputError, match=r"timeout_s must be a number >= 0 \(seconds\)"):
        b.close(timeout_s=-1)
    assert b.stats().submitted == 0


def test_errors_derive_from_modelserve_error():
    for error in (QueueFullError, BatcherClosedError, DeadlineExceededError, InvalidInputError):
        assert issubclass(error, ModelserveError)
        assert getattr(ms, error.__name__) is error
    assert issubclass(DeadlineExceededError, TimeoutError)


@pytest.mark.skipif(not hasattr(ms, "MicroBatcher"), reason="modelserve/__init__.py does not export the batcher yet")
def test_public_exports():
    assert ms.MicroBatcher is MicroBatcher and ms.Batching is Batching and ms.BatcherStats is BatcherStats


# ------------------------------------------------------------------------------------ basics


def test_call_submit_and_context_manager():
    fn = Recorder()
    with MicroBatcher(fn, max_batch_size=8) as b:
        assert b(21) == 42
        future = b.submit(5)
        assert isinstance(future, Future)
        assert future.result(WAIT_S) == 10
        assert "open" in repr(b) and b.name in repr(b)
    assert b.closed
    with pytest.raises(BatcherClosedError, match="submit\\(\\) after close\\(\\)"):
        b.submit(1)
    with pytest.raises(BatcherClosedError):
        b(1)
    assert fn.batches == [[21], [5]]


def test_threads_are_named_daemons_and_stop_on_close(make):
    b = make(max_concurrent_batches=3, timeout_ms=1000)
    assert b(1) == 2  # with a deadline, so the deadline thread starts too
    mine = [t for t in threading.enumerate() if t.name.startswith(b.name + "-")]
    assert sorted(t.name for t in mine) == sorted(
        [f"{b.name}-0", f"{b.name}-1", f"{b.name}-2", f"{b.name}-deadlines"])
    assert all(t.daemon for t in mine)
    b.close()
    for t in mine:
        t.join(WAIT_S)
        assert not t.is_alive()


def test_done_callbacks_may_reenter_the_batcher(make):
    """Futures resolve outside the batcher's lock: a done-callback may submit again."""
    b = make()
    chained: list[Future] = []
    first = b.submit(1)
    first.add_done_callback(lambda f: chained.append(b.submit(f.result())))
    assert first.result(WAIT_S) == 2
    wait_until(lambda: chained, "the chained submit")
    assert chained[0].result(WAIT_S) == 4


# ------------------------------------------------------------------------------------ composition


def test_deterministic_composition_with_pause(make):
    fn = Recorder()
    b = make(fn, max_batch_size=4)
    b._testing.pause()
    futures = [b.submit(i) for i in range(10)]
    assert b._testing.wait_queued(10, timeout_s=WAIT_S)
    assert b.stats().queue_depth == 10 and fn.batches == []
    b._testing.resume()
    assert [f.result(WAIT_S) for f in futures] == [2 * i for i in range(10)]
    assert fn.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    stats = b.stats()
    assert stats.batch_size_histogram == {2: 1, 4: 2}
    assert (stats.batches, stats.items, stats.fn_calls, stats.succeeded) == (3, 10, 3, 10)
    assert stats.mean_batch_size == pytest.approx(10 / 3)
    assert stats.wait_ms_p50 is not None and stats.exec_ms_p99 is not None


def test_wait_queued_times_out(make):
    b = make()
    b._testing.pause()
    b.submit(1)
    assert b._testing.wait_queued(1, timeout_s=WAIT_S)
    assert not b._testing.wait_queued(2, timeout_s=0.05)


def test_many_threads_never_exceed_max_batch_size(make):
    fn = Recorder()
    b = make(fn, max_batch_size=5, max_queue_size=1000)
    results: dict[int, Any] = {}

    def caller(t: int) -> None:
        for i in range(50):
            results[t * 50 + i] = b(t * 50 + i)

    threads = [threading.Thread(target=caller, args=(t,), daemon=True) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        join(t)
    assert results == {i: 2 * i for i in range(400)}
    assert sorted(fn.items_seen) == list(range(400))  # each request run exactly once, never split
    assert max(len(batch) for batch in fn.batches) <= 5
    assert fn.max_running == 1


def test_full_batch_fires_without_waiting_for_the_delay(make):
    fn = Recorder()
    b = make(fn, max_batch_size=3, max_delay_ms=600_000)  # ten minutes
    futures = [b.submit(i) for i in range(3)]
    assert [f.result(WAIT_S) for f in futures] == [0, 2, 4]
    assert fn.batches == [[0, 1, 2]]


def test_delay_holds_a_batch_open_for_companions(make):
    fn = Recorder()
    b = make(fn, max_batch_size=100, max_delay_ms=1000)
    t0 = time.monotonic()
    futures = [b.submit(i) for i in range(5)]
    assert [f.result(WAIT_S) for f in futures] == [0, 2, 4, 6, 8]
    assert fn.batches == [[0, 1, 2, 3, 4]]
    assert fn.call_times[0] - t0 >= 1.0 - 1e-3  # fired by the delay, not before


def test_single_request_fires_after_the_delay(make):
    fn = Recorder()
    b = make(fn, max_batch_size=8, max_delay_ms=50)
    t0 = time.monotonic()
    assert b.submit(7).result(WAIT_S) == 14
    assert fn.call_times[0] - t0 >= 0.05 - 1e-3


def test_greedy_batches_accumulate_while_the_engine_is_busy(make):
    fn = Recorder(gated=True)
    b = make(fn, max_batch_size=8, max_delay_ms=0)
    first = b.submit(0)
    fn.wait_entered()  # the worker is busy with [0]
    rest = [b.submit(i) for i in range(1, 6)]
    assert b._testing.wait_queued(5, timeout_s=WAIT_S)
    fn.gate.set()
    assert [f.result(WAIT_S) for f in [first, *rest]] == [0, 2, 4, 6, 8, 10]
    assert fn.batches == [[0], [1, 2, 3, 4, 5]]


def test_max_concurrent_batches_run_in_parallel(make):
    barrier = threading.Barrier(3, timeout=WAIT_S)  # passes only if three calls run at once

    def fn(items):
        barrier.wait()
        return items

    b = make(fn, max_batch_size=1, max_concurrent_batches=3)
    futures = [b.submit(i) for i in range(3)]
    assert [f.result(WAIT_S) for f in futures] == [0, 1, 2]
    assert b.stats().batches == 3


def test_grouping_keeps_keys_apart_oldest_head_first(make):
    fn = Recorder()
    b = make(fn, max_batch_size=2, group_key=lambda x: x % 3)
    b._testing.pause()
    futures = [b.submit(i) for i in range(12)]
    assert b._testing.wait_queued(12, timeout_s=WAIT_S)
    b._testing.resume()
    assert [f.result(WAIT_S) for f in futures] == [2 * i for i in range(12)]
    assert fn.batches == [[0, 3], [1, 4], [2, 5], [6, 9], [7, 10], [8, 11]]


def test_grouping_by_array_shape_lets_fn_stack(make):
    b = make(lambda arrays: list(np.stack(arrays) * 2), max_batch_size=8, group_key=lambda a: a.shape)
    b._testing.pause()
    shapes = [(2, 3), (4, 1), (2, 3), (5,), (4, 1), (2, 3)]
    inputs = [np.full(shape, i, np.float32) for i, shape in enumerate(shapes)]
    futures = [b.submit(a) for a in inputs]
    assert b._testing.wait_queued(len(inputs), timeout_s=WAIT_S)
    b._testing.resume()
    for a, f in zip(inputs, futures):
        np.testing.assert_array_equal(f.result(WAIT_S), a * 2)
    assert b.stats().batch_size_histogram == {1: 1, 2: 1, 3: 1}


# ------------------------------------------------------------------------------------ errors


def _poison_fn(poison: set[int], calls: list[list[int]]):
    def fn(items: list[int]) -> list[int]:
        calls.append(list(items))
        bad = [x for x in items if x in poison]
        if bad:
            raise ValueError(f"poisoned item {bad[0]}")
        return [10 * x for x in items]

    return fn


def test_poisoned_item_fails_alone(make):
    calls: list[list[int]] = []
    b = make(_poison_fn({5}, calls), max_batch_size=16)
    b._testing.pause()
    futures = [b.submit(i) for i in range(16)]
    assert b._testing.wait_queued(16, timeout_s=WAIT_S)
    b._testing.resume()
    for i, f in enumerate(futures):
        if i == 5:
            with pytest.raises(ValueError, match="poisoned item 5"):
                f.result(WAIT_S)
        else:
            assert f.result(WAIT_S) == 10 * i
    stats = b.stats()
    assert (stats.batches, stats.succeeded, stats.failed) == (1, 15, 1)
    assert len(calls) == stats.fn_calls <= 1 + 2 * 4  # bisection: 2 * log2(16) extra calls at most
    assert [5] in calls and calls[0] == list(range(16))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 24), data=st.data())
def test_only_the_items_that_really_fail_get_an_exception(n, data):
    poison = set(data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n)))
    calls: list[list[int]] = []
    with MicroBatcher(_poison_fn(poison, calls), max_batch_size=n) as b:
        b._testing.pause()
        futures = [b.submit(i) for i in range(n)]
        assert b._testing.wait_queued(n, timeout_s=WAIT_S)
        b._testing.resume()
        failed = {i for i, f in enumerate(futures) if f.exception(WAIT_S) is not None}
        assert failed == poison
        assert all(f.result() == 10 * i for i, f in enumerate(futures) if i not in poison)
        assert len(calls) <= 2 * n - 1
        assert all([p] in calls for p in poison)  # each failure comes from a call of its own


def test_exception_instances_in_the_result_fail_only_their_item(make):
    fn = Recorder(lambda x: KeyError(x) if x % 2 else x)
    b = make(fn, max_batch_size=4)
    b._testing.pause()
    futures = [b.submit(i) for i in range(4)]
    assert b._testing.wait_queued(4, timeout_s=WAIT_S)
    b._testing.resume()
    assert futures[0].result(WAIT_S) == 0 and futures[2].result(WAIT_S) == 2
    for f in (futures[1], futures[3]):
        with pytest.raises(KeyError):
            f.result(WAIT_S)
    stats = b.stats()
    assert (stats.fn_calls, stats.succeeded, stats.failed) == (1, 2, 2)  # no retry needed


def test_a_transient_batch_failure_is_retried_and_nobody_fails(make):
    calls: list[list[int]] = []

    def fn(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise MemoryError("out of accelerator memory for this batch size")
        return [x + 1 for x in items]

    b = make(fn, max_batch_size=4)
    b._testing.pause()
    futures = [b.submit(i) for i in range(4)]
    assert b._testing.wait_queued(4, timeout_s=WAIT_S)
    b._testing.resume()
    assert [f.result(WAIT_S) for f in futures] == [1, 2, 3, 4]
    assert calls == [[0, 1, 2, 3], [0, 1], [2, 3]]
    assert b.stats().fn_calls == 3 and b.stats().batches == 1


@pytest.mark.parametrize(
    "result, got",
    [
        (lambda xs: xs[:-1], "list of length 3"),
        (lambda xs: xs + [0], "list of length 5"),
        (lambda xs: None, "NoneType (not a sequence)"),
        (lambda xs: (x for x in xs), "generator (not a sequence)"),
        (lambda xs: np.zeros((2, 7)), "ndarray of length 2"),
    ],
    ids=["short", "long", "none", "generator", "array"],
)
def test_wrong_length_result_fails_every_caller(make, result, got):
    calls: list[int] = []

    def fn(items):
        calls.append(len(items))
        return result(items)

    b = make(fn, max_batch_size=4)
    b._testing.pause()
    futures = [b.submit(i) for i in range(4)]
    assert b._testing.wait_queued(4, timeout_s=WAIT_S)
    b._testing.resume()
    errors = [f.exception(WAIT_S) for f in futures]
    for error in errors:
        assert type(error) is ms.BatchResultError
        assert f"returned a {got} for a batch of 4 items; expected a sequence of 4 results" in str(error)
    assert len({id(e) for e in errors}) == 4  # one instance per caller
    assert calls == [4]  # a bug in fn, not a poisoned item: no retry
    assert b.stats().failed == 4
    b.submit(9).exception(WAIT_S)  # the loop survives and keeps serving
    assert not b.closed and b.stats().fn_calls == 2


class _Fatal(BaseException):
    """Not an Exception: stands for SystemExit & co. raised inside fn."""


def test_a_dying_loop_fails_everything_and_refuses_new_work(make, caplog):
    def fn(items):
        if 0 in items:
            raise _Fatal("worker killed")
        return items

    b = make(fn, max_batch_size=2, max_concurrent_batches=2)
    b._testing.pause()
    futures = [b.submit(i) for i in range(5)]
    assert b._testing.wait_queued(5, timeout_s=WAIT_S)
    with caplog.at_level(logging.ERROR, logger="modelserve.batcher"):
        b._testing.resume()
        errors = [f.exception(WAIT_S) for f in futures]
    # [0, 1] dies in fn; [2, 3] may have started on the other worker and finished normally.
    assert isinstance(errors[0], BatcherClosedError) and isinstance(errors[0].__cause__, _Fatal)
    assert isinstance(errors[1], BatcherClosedError)
    for error in errors[2:]:
        assert error is None or isinstance(error, BatcherClosedError)
    assert "batch loop died" in caplog.text
    with pytest.raises(BatcherClosedError, match="batch loop died"):
        b.submit(9)
    stats = b.stats()
    assert stats.closed and stats.submitted == stats.succeeded + stats.aborted == 5
    wait_until(lambda: not any(t.is_alive() for t in threading.enumerate() if t.name.startswith(b.name)),
               "the batcher's threads to exit")


# ------------------------------------------------------------------------------------ bounds


def test_queue_full_rejects_at_once(make):
    fn = Recorder()
    b = make(fn, max_batch_size=2, max_queue_size=3)
    b._testing.pause()
    futures = [b.submit(i) for i in range(3)]
    with pytest.raises(QueueFullError, match=r"queue full \(3 of max_queue_size=3 requests waiting\)"):
        b.submit(3)
    assert b.stats().rejected == 1 and b.stats().submitted == 3
    b._testing.resume()
    assert [f.result(WAIT_S) for f in futures] == [0, 2, 4]
    assert b(3) == 6  # room again


def test_block_argument_overrides_on_full_per_request(make):
    fn = Recorder()
    b = make(fn, max_queue_size=1)  # on_full="reject"
    b._testing.pause()
    first = b.submit(1)
    thread, box = run_thread(lambda: b.submit(2, block=True))
    thread.join(0.2)
    assert thread.is_alive() and not box  # waits for room instead of raising
    b._testing.resume()
    join(thread)
    assert box["result"].result(WAIT_S) == 4 and first.result(WAIT_S) == 2
    blocking = make(fn, max_queue_size=1, on_full="block")
    blocking._testing.pause()
    blocking.submit(5)
    with pytest.raises(QueueFullError):
        blocking.submit(6, block=False)

    async def full_then_wait():
        b._testing.pause()
        b.submit(7)
        task = asyncio.ensure_future(b.acall(8, block=True))
        await asyncio.sleep(0.1)
        assert not task.done()
        b._testing.resume()
        return await asyncio.wait_for(task, WAIT_S)

    assert asyncio.run(full_then_wait()) == 16
    blocking._testing.resume()


def test_default_queue_bound_is_8_x_batch_x_concurrency(make):
    b = make(max_batch_size=2, max_concurrent_batches=2)
    b._testing.pause()
    for i in range(32):
        b.submit(i)
    with pytest.raises(QueueFullError):
        b.submit(32)


def test_cancelling_a_queued_request_frees_its_slot(make):
    b = make(max_queue_size=2)
    b._testing.pause()
    first, second = b.submit(1), b.submit(2)
    assert second.cancel()
    assert b.stats().queue_depth == 1
    third = b.submit(3)
    b._testing.resume()
    assert (first.result(WAIT_S), third.result(WAIT_S)) == (2, 6)
    assert second.cancelled()


def test_block_mode_waits_for_room(make):
    fn = Recorder()
    b = make(fn, max_queue_size=2, on_full="block")
    b._testing.pause()
    queued = [b.submit(1), b.submit(2)]
    thread, box = run_thread(lambda: b.submit(3))
    thread.join(0.2)
    assert thread.is_alive() and not box  # blocked on the full queue (a weak check, never flaky)
    b._testing.resume()
    join(thread)
    assert box["result"].result(WAIT_S) == 6
    assert [f.result(WAIT_S) for f in queued] == [2, 4]
    assert b.stats().rejected == 0


def test_block_mode_gives_up_at_the_deadline(make):
    fn = Recorder()
    b = make(fn, max_queue_size=1, on_full="block")
    b._testing.pause()
    b.submit(1)
    future = b.submit(2, timeout_ms=50)  # returns once its deadline passes
    assert isinstance(future.exception(0), DeadlineExceededError)
    b._testing.resume()
    wait_until(lambda: fn.batches == [[1]], "the queued request to run")
    assert b.stats().expired == 1


def test_block_mode_close_wakes_blocked_submitters(make):
    b = make(max_queue_size=1, on_full="block")
    b._testing.pause()
    b.submit(1)
    thread, box = run_thread(lambda: b.submit(2))
    thread.join(0.1)
    b.close(drain=False)
    join(thread)
    assert isinstance(box.get("error"), BatcherClosedError)


# ------------------------------------------------------------------------------------ deadlines


def test_deadline_passes_while_queued(make):
    fn = Recorder()
    b = make(fn)
    b._testing.pause()
    doomed = b.submit(1, timeout_ms=30)
    error = doomed.exception(WAIT_S)
    assert isinstance(error, DeadlineExceededError) and isinstance(error, TimeoutError)
    assert "timeout_ms=30" in str(error) and "never run" in str(error)
    with pytest.raises(TimeoutError):
        doomed.result()
    assert b.stats().queue_depth == 0 and b.stats().expired == 1
    b._testing.resume()
    assert b(2) == 4
    assert fn.items_seen == [2]


def test_deadline_is_enforced_while_every_worker_is_busy(make):
    fn = Recorder(gated=True)
    b = make(fn)
    busy = b.submit(0)
    fn.wait_entered()
    doomed = b.submit(1, timeout_ms=30)
    assert isinstance(doomed.exception(WAIT_S), DeadlineExceededError)  # fn still blocked
    assert not busy.done()
    fn.gate.set()
    assert busy.result(WAIT_S) == 0
    assert fn.items_seen == [0]


def test_default_timeout_and_per_call_override(make):
    fn = Recorder()
    b = make(fn, timeout_ms=30)
    b._testing.pause()
    doomed = b.submit(1)
    patient = b.submit(2, timeout_ms=math.inf)
    assert isinstance(doomed.exception(WAIT_S), DeadlineExceededError)
    b._testing.resume()
    assert patient.result(WAIT_S) == 4


def test_a_started_request_runs_to_completion_past_its_deadline(make):
    fn = Recorder(gated=True)
    b = make(fn)
    future = b.submit(3, timeout_ms=50)
    fn.wait_entered()
    time.sleep(0.1)  # past the deadline while running
    fn.gate.set()
    assert future.result(WAIT_S) == 6


# ------------------------------------------------------------------------------------ cancellation


def test_cancelled_futures_are_skipped(make):
    fn = Recorder()
    b = make(fn, max_batch_size=8)
    b._testing.pause()
    futures = [b.submit(i) for i in range(5)]
    assert futures[2].cancel() and futures[2].cancel()  # twice is harmless
    assert b.stats().queue_depth == 4
    b._testing.resume()
    assert [f.result(WAIT_S) for i, f in enumerate(futures) if i != 2] == [0, 2, 6, 8]
    with pytest.raises(CancelledError):
        futures[2].result()
    assert fn.batches == [[0, 1, 3, 4]]
    assert b.stats().cancelled == 1
    done, _ = wait(futures, WAIT_S)  # wait() and as_completed() see the cancelled one as done
    assert len(done) == 5 and len(list(as_completed(futures, WAIT_S))) == 5


def test_mass_cancellation_keeps_order_and_memory_bounded(make):
    fn = Recorder()
    b = make(fn, max_batch_size=64, max_queue_size=1000)
    b._testing.pause()
    futures = [b.submit(i, timeout_ms=600_000) for i in range(600)]
    for i, f in enumerate(futures):
        if i % 6:
            assert f.cancel()
    assert b.stats().queue_depth == 100 and b.stats().cancelled == 500
    assert b._testing.queue_entries() < 600  # cancelled entries were compacted
    b._testing.resume()
    assert [f.result(WAIT_S) for f in futures[::6]] == [2 * i for i in range(0, 600, 6)]
    assert fn.items_seen == list(range(0, 600, 6))


def test_deadline_bookkeeping_stays_bounded(make):
    b = make(max_batch_size=8)
    for i in range(3000):
        assert b(i, timeout_ms=600_000) == 2 * i
    assert b._testing.deadline_entries() <= 1024 + 2  # entries of finished requests are dropped


def test_a_running_request_cannot_be_cancelled(make):
    fn = Recorder(gated=True)
    b = make(fn)
    future = b.submit(4)
    fn.wait_entered()
    assert not future.cancel()
    fn.gate.set()
    assert future.result(WAIT_S) == 8


# ------------------------------------------------------------------------------------ close


def test_close_drains_work_in_flight(make):
    fn = Recorder(gated=True)
    b = make(fn, max_batch_size=2)
    futures = [b.submit(0)]
    fn.wait_entered()
    futures += [b.submit(i) for i in range(1, 6)]
    closer, box = run_thread(lambda: b.close(drain=True, timeout_s=WAIT_S))
    wait_until(lambda: b.closed, "close() to start")
    with pytest.raises(BatcherClosedError):
        b.submit(99)
    fn.gate.set()
    join(closer)
    assert "error" not in box
    assert all(f.done() for f in futures)  # close() returns after the drained futures resolved
    assert [f.result() for f in futures] == [0, 2, 4, 6, 8, 10]
    assert fn.batches == [[0], [1, 2], [3, 4], [5]]


def test_close_drain_ignores_delay_and_pause(make):
    fn = Recorder()
    b = make(fn, max_batch_size=8, max_delay_ms=600_000)
    b._testing.pause()
    futures = [b.submit(i) for i in range(3)]
    b.close(drain=True, timeout_s=WAIT_S)
    assert [f.result(0) for f in futures] == [0, 2, 4]


def test_close_without_drain_fails_queued_work_and_lets_running_work_finish(make):
    fn = Recorder(gated=True)
    b = make(fn)
    running = b.submit(0)
    fn.wait_entered()
    queued = [b.submit(i) for i in range(1, 4)]
    closer, _ = run_thread(lambda: b.close(drain=False, timeout_s=WAIT_S))
    for f in queued:
        error = f.exception(WAIT_S)  # failed at once, while fn is still held
        assert isinstance(error, BatcherClosedError) and "drain=False" in str(error)
    assert not running.done()
    fn.gate.set()
    join(closer)
    assert running.result(0) == 0
    stats = b.stats()
    assert (stats.aborted, stats.succeeded, stats.queue_depth, stats.in_flight_batches) == (3, 1, 0, 0)


def test_close_timeout_fails_what_is_left(make):
    fn = Recorder(gated=True)
    b = make(fn)
    running = b.submit(0)
    fn.wait_entered()
    queued = [b.submit(i) for i in range(1, 4)]
    t0 = time.monotonic()
    b.close(drain=True, timeout_s=0.2)
    assert time.monotonic() - t0 < WAIT_S
    for f in queued:
        error = f.exception(0)
        assert isinstance(error, BatcherClosedError) and "ran out of time" in str(error)
    fn.gate.set()
    assert running.result(WAIT_S) == 0
    b.close()  # idempotent


def test_close_from_inside_fn_does_not_deadlock(make):
    holder: list[MicroBatcher] = []

    def fn(items):
        holder[0].close(drain=True)
        return items

    b = make(fn)
    holder.append(b)
    assert b.submit(1).result(WAIT_S) == 1
    assert b.closed


# ------------------------------------------------------------------------------------ asyncio


def test_acall_with_hundreds_of_concurrent_callers(make):
    def fn(items):
        time.sleep(0.001)  # an engine call: lets requests pile up behind it
        return [x * 3 for x in items]

    b = make(fn, max_batch_size=16, max_queue_size=1000)

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(b.acall(i) for i in range(500))), WAIT_S)

    assert asyncio.run(main()) == [3 * i for i in range(500)]
    stats = b.stats()
    assert stats.items == 500 and stats.batches < 500 and max(stats.batch_size_histogram) <= 16


def test_acall_does_not_block_the_event_loop(make):
    b = make()
    b._testing.pause()

    async def main():
        task = asyncio.ensure_future(b.acall(5))
        ticks = 0
        while ticks < 20:  # the loop keeps running while the request waits
            await asyncio.sleep(0.001)
            ticks += 1
        assert not task.done()
        b._testing.resume()
        return await asyncio.wait_for(task, WAIT_S)

    assert asyncio.run(main()) == 10


def test_cancelling_the_awaiting_task_cancels_the_request(make):
    fn = Recorder()
    b = make(fn)
    b._testing.pause()

    async def main():
        task = asyncio.ensure_future(b.acall(7))
        while b.stats().queue_depth < 1:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(1000):  # the cancellation reaches the request on a later loop iteration
            if b.stats().cancelled:
                break
            await asyncio.sleep(0.001)

    asyncio.run(asyncio.wait_for(main(), WAIT_S))
    stats = b.stats()
    assert (stats.cancelled, stats.queue_depth) == (1, 0)
    b._testing.resume()
    assert b(1) == 2
    assert fn.items_seen == [1]


def test_acall_raises_item_errors_and_deadlines(make):
    calls: list[list[int]] = []
    b = make(_poison_fn({3}, calls))

    async def main():
        assert await b.acall(2) == 20
        with pytest.raises(ValueError, match="poisoned item 3"):
            await b.acall(3)
        b._testing.pause()
        with pytest.raises(DeadlineExceededError):
            await asyncio.wait_for(b.acall(4, timeout_ms=20), WAIT_S)
        b._testing.resume()

    asyncio.run(main())


def test_acall_in_block_mode_waits_asynchronously(make):
    fn = Recorder()
    b = make(fn, max_queue_size=2, on_full="block")
    b._testing.pause()

    async def main():
        tasks = [asyncio.ensure_future(b.acall(i)) for i in range(6)]
        while b.stats().queue_depth < 2:
            await asyncio.sleep(0.001)
        for _ in range(10):
            await asyncio.sleep(0.001)  # the loop runs although 4 callers wait for room
        assert b.stats().queue_depth == 2 and not any(t.done() for t in tasks)
        late = asyncio.ensure_future(b.acall(100, timeout_ms=20))
        with pytest.raises(DeadlineExceededError):
            await late
        b._testing.resume()
        return await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)

    assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10]
    assert 100 not in fn.items_seen


def test_acall_in_block_mode_sees_close(make):
    b = make(max_queue_size=1, on_full="block")
    b._testing.pause()

    async def main():
        first = asyncio.ensure_future(b.acall(1))
        while b.stats().queue_depth < 1:
            await asyncio.sleep(0.001)
        blocked = asyncio.ensure_future(b.acall(2))
        await asyncio.sleep(0.01)
        b.close(drain=False)
        with pytest.raises(BatcherClosedError):
            await asyncio.wait_for(blocked, WAIT_S)
        with pytest.raises(BatcherClosedError):
            await asyncio.wait_for(first, WAIT_S)

    asyncio.run(main())
