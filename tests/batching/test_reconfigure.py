"""MicroBatcher.reconfigure: batch size, delay, queue bound, deadline and on_full change live."""

from __future__ import annotations

import threading
import time

import pytest

from modelserve import BatcherClosedError, InvalidInputError, QueueFullError
from modelserve.batching import Batching, MicroBatcher


def _recording():
    sizes: list[int] = []

    def fn(items):
        sizes.append(len(items))
        return [x * 10 for x in items]

    return fn, sizes


def test_batch_size_applies_to_what_is_already_queued():
    fn, sizes = _recording()
    with MicroBatcher(fn, max_batch_size=2, max_delay_ms=0) as b:
        b._testing.pause()
        futures = [b.submit(i) for i in range(8)]
        assert b._testing.wait_queued(8)
        config = b.reconfigure(max_batch_size=8)
        assert config == b.config and config.max_batch_size == 8 and config.max_delay_ms == 0
        b._testing.resume()
        assert [f.result(10) for f in futures] == [i * 10 for i in range(8)]
    assert sizes == [8]


def test_a_longer_delay_lets_a_batch_fill_and_a_shorter_one_fires_at_once():
    fn, sizes = _recording()
    with MicroBatcher(fn, max_batch_size=4, max_delay_ms=0) as b:
        b.reconfigure(max_delay_ms=60_000)  # a batch now waits (a minute) to fill up
        futures = [b.submit(i) for i in range(3)]
        time.sleep(0.2)
        assert not any(f.done() for f in futures) and sizes == []
        b.reconfigure(max_delay_ms=0)  # the waiting worker is woken and fires what is queued
        assert [f.result(10) for f in futures] == [0, 10, 20]
        assert sizes == [3]


def test_queue_bound_shrinks_and_grows_without_dropping_anything():
    fn, _ = _recording()
    with MicroBatcher(fn, max_batch_size=1, max_queue_size=8) as b:
        b._testing.pause()
        queued = [b.submit(i) for i in range(6)]
        b.reconfigure(max_queue_size=4)
        with pytest.raises(QueueFullError, match="max_queue_size=4"):
            b.submit(99)
        # a submitter blocked on the full queue gets in once the bound grows
        b.reconfigure(on_full="block")
        got: list[int] = []
        blocked = threading.Thread(target=lambda: got.append(b(7, timeout_ms=None)))
        blocked.start()
        time.sleep(0.1)
        assert blocked.is_alive()
        b.reconfigure(max_queue_size=16)
        assert b._testing.wait_queued(7)
        b._testing.resume()
        blocked.join(10)
        assert got == [70]
        assert [f.result(10) for f in queued] == [i * 10 for i in range(6)]
    assert b.stats().rejected == 1


def test_default_deadline_changes_for_new_requests():
    fn, _ = _recording()
    with MicroBatcher(fn, max_batch_size=1) as b:
        b._testing.pause()
        before = b.submit(1)
        b.reconfigure(timeout_ms=50)
        after = b.submit(2)
        time.sleep(0.3)
        b._testing.resume()
        assert before.result(10) == 10  # submitted without a deadline: kept
        with pytest.raises(Exception, match="timeout_ms=50"):
            after.result(10)


def test_refusals():
    fn, _ = _recording()
    b = MicroBatcher(fn, max_batch_size=2)
    with pytest.raises(InvalidInputError, match="max_concurrent_batches.*worker threads"):
        b.reconfigure(max_concurrent_batches=2)
    with pytest.raises(InvalidInputError, match="changeable"):
        b.reconfigure(max_batch=3)
    with pytest.raises(InvalidInputError, match="max_batch_size"):
        b.reconfigure(max_batch_size=0)
    with pytest.raises(InvalidInputError, match="on_full"):
        b.reconfigure(on_full="drop")
    assert b.config == Batching(max_batch_size=2)  # a refused change changes nothing
    b.close()
    with pytest.raises(BatcherClosedError):
        b.reconfigure(max_batch_size=4)
