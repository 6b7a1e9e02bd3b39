"""The batcher's counters (modelserve/batching/stats.py): what each record does to the counts,
percentiles over the most recent samples, independent copies, and the BatcherStats snapshot."""

from __future__ import annotations

import dataclasses

import pytest

from modelserve import BatcherStats
from modelserve.batching.stats import SAMPLES, Counters, Outcome, percentile_ms


@pytest.mark.parametrize(
    "samples, q, expected",
    [
        ([], 0.5, None),
        ([0.004], 0.5, 4.0),
        ([0.004], 0.99, 4.0),
        ([0.003, 0.001, 0.002], 0.5, 2.0),  # unsorted in, nearest rank out
        ([i / 1000 for i in range(1, 101)], 0.50, 50.0),
        ([i / 1000 for i in range(1, 101)], 0.99, 99.0),
        ([i / 1000 for i in range(1, 101)], 1.0, 100.0),
        ([i / 1000 for i in range(1, 101)], 0.0, 1.0),
    ],
)
def test_percentile_is_the_nearest_rank_in_milliseconds(samples, q, expected):
    got = percentile_ms(list(samples), q)
    assert got == (None if expected is None else pytest.approx(expected))


def test_a_fresh_snapshot_is_all_zero():
    stats = Counters().snapshot(queue_depth=0, in_flight_batches=0, closed=False)
    assert isinstance(stats, BatcherStats)
    assert (stats.submitted, stats.batches, stats.items, stats.fn_calls, stats.rejected) == (0, 0, 0, 0, 0)
    assert (stats.succeeded, stats.failed, stats.expired, stats.cancelled, stats.aborted) == (0, 0, 0, 0, 0)
    assert stats.batch_size_histogram == {} and stats.mean_batch_size == 0.0
    assert (stats.wait_ms_p50, stats.wait_ms_p99, stats.exec_ms_p50, stats.exec_ms_p99) == (None,) * 4


def test_record_batch_and_endings():
    c = Counters()
    c.submitted = 9
    c.record_batch([0.001, 0.002, 0.003, 0.004], exec_s=0.010, calls=3, failed=1)
    c.record_batch([0.005], exec_s=0.020, calls=1, failed=0)
    c.record_batch([0.006, 0.007, 0.008, 0.009], exec_s=0.030, calls=1, failed=4)
    c.end(Outcome.EXPIRED)
    c.rejected = 2
    stats = c.snapshot(queue_depth=3, in_flight_batches=1, closed=True)
    assert (stats.queue_depth, stats.in_flight_batches, stats.closed) == (3, 1, True)
    assert (stats.submitted, stats.rejected, stats.batches, stats.items, stats.fn_calls) == (9, 2, 3, 9, 5)
    assert (stats.succeeded, stats.failed, stats.expired) == (4, 5, 1)
    assert stats.batch_size_histogram == {1: 1, 4: 2} and list(stats.batch_size_histogram) == [1, 4]
    assert stats.mean_batch_size == 3.0
    assert stats.wait_ms_p50 == pytest.approx(5.0) and stats.wait_ms_p99 == pytest.approx(9.0)
    assert stats.exec_ms_p50 == pytest.approx(20.0) and stats.exec_ms_p99 == pytest.approx(30.0)


def test_recount_moves_requests_between_outcomes():
    c = Counters()
    c.end(Outcome.EXPIRED, 5)
    c.end(Outcome.ABORTED, 2)
    c.recount(Outcome.EXPIRED, Outcome.CANCELLED, 3)  # cancelled by their callers first
    c.recount(Outcome.ABORTED, Outcome.CANCELLED, 1)
    stats = c.snapshot(queue_depth=0, in_flight_batches=0, closed=False)
    assert (stats.expired, stats.aborted, stats.cancelled) == (2, 1, 4)


def test_percentiles_cover_only_the_most_recent_samples():
    c = Counters()
    for _ in range(SAMPLES):
        c.record_batch([10.0], exec_s=10.0, calls=1, failed=0)  # old and slow
    for _ in range(SAMPLES):
        c.record_batch([0.001], exec_s=0.002, calls=1, failed=0)  # recent and fast
    stats = c.snapshot(queue_depth=0, in_flight_batches=0, closed=False)
    assert stats.wait_ms_p99 == pytest.approx(1.0) and stats.exec_ms_p99 == pytest.approx(2.0)
    assert stats.items == 2 * SAMPLES  # counts are not windowed


def test_copy_is_independent():
    c = Counters()
    c.record_batch([0.001, 0.002], exec_s=0.005, calls=1, failed=0)
    frozen = c.copy()
    c.record_batch([0.5], exec_s=0.5, calls=2, failed=1)
    c.end(Outcome.CANCELLED)
    c.submitted += 7
    before = frozen.snapshot(queue_depth=0, in_flight_batches=0, closed=False)
    assert (before.batches, before.items, before.fn_calls, before.failed, before.cancelled) == (1, 2, 1, 0, 0)
    assert before.submitted == 0 and before.batch_size_histogram == {2: 1}
    assert before.exec_ms_p99 == pytest.approx(5.0)
    after = c.snapshot(queue_depth=0, in_flight_batches=0, closed=False)
    assert (after.batches, after.items, after.fn_calls, after.failed, after.cancelled) == (2, 3, 3, 1, 1)


def test_snapshots_are_frozen_and_do_not_share_the_histogram():
    c = Counters()
    c.record_batch([0.001], exec_s=0.001, calls=1, failed=0)
    stats = c.snapshot(queue_depth=0, in_flight_batches=0, closed=False)
    stats.batch_size_histogram[1] = 99
    assert c.snapshot(queue_depth=0, in_flight_batches=0, closed=False).batch_size_histogram == {1: 1}
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.items = 3  # type: ignore[misc]
