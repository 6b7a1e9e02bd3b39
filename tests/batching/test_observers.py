"""Batch observers: one record per batch, before its callers see their results; a failing observer
fails nothing."""

from __future__ import annotations

import threading

import pytest

import modelserve as ms


def test_each_batch_is_reported_once_before_its_results():
    records = []
    seen_at_result = []
    b = ms.MicroBatcher(lambda xs: [x if x != 13 else ValueError("13") for x in xs], max_batch_size=4,
                        max_delay_ms=20)
    b.add_observer(records.append)
    b.add_observer(lambda record: 1 / 0)  # logged and ignored
    b._testing.pause()
    futures = [b.submit(x) for x in (1, 2, 13, 4, 5)]
    b._testing.resume()
    for f in futures[:2]:
        f.result(5)
        seen_at_result.append(len(records))
    with pytest.raises(ValueError):
        futures[2].result(5)
    assert [f.result(5) for f in (futures[3], futures[4])] == [4, 5]
    b.close()
    assert seen_at_result[0] >= 1  # recorded before the first result was delivered
    assert sorted(r.size for r in records) == [1, 4]
    assert sum(r.failed for r in records) == 1
    assert all(len(r.waits_s) == r.size and min(r.waits_s) >= 0 and r.exec_s >= 0 for r in records)
    stats = b.stats()
    assert stats.batches == len(records) and stats.items == sum(r.size for r in records)


def test_observers_can_be_added_and_removed_while_batches_run():
    b = ms.MicroBatcher(lambda xs: xs, max_batch_size=8)
    counts = []

    def churn():
        for _ in range(200):
            fn = counts.append
            b.add_observer(fn)
            b.remove_observer(fn)

    t = threading.Thread(target=churn)
    t.start()
    assert [b(x) for x in range(200)] == list(range(200))
    t.join()
    b.close()
    with pytest.raises(ms.InvalidInputError):
        b.add_observer(42)
