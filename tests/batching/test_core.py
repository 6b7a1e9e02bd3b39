"""The pure batching core (modelserve/batching/core.py) on a fake clock: admission and the bound,
readiness (full group, max_delay_ms, drain), grouping, deadlines, cancellation, compaction and
the counts it keeps. No threads and no sleeps: time moves only when a test moves it."""

from __future__ import annotations

import random
from concurrent.futures import Future
from typing import Any, Hashable

import pytest

from modelserve import DeadlineExceededError
from modelserve.batching.core import BatchQueue, Request, State, Taken
from modelserve.batching.stats import Outcome


class FakeClock:
    """Monotonic seconds that advance only through :meth:`advance` (milliseconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1000.0


def make(max_batch_size: int = 4, max_delay_ms: float = 0.0, bound: int = 100) -> tuple[BatchQueue, FakeClock]:
    clock = FakeClock()
    return BatchQueue(max_batch_size=max_batch_size, max_delay_ms=max_delay_ms, bound=bound, clock=clock), clock


def put(q: BatchQueue, item: Any, key: Hashable = None, timeout_ms: float | None = None) -> Request:
    req = q.new_request(item, Future(), key, timeout_ms)
    q.admit(req)
    return req


def items(reqs: list[Request]) -> list[Any]:
    return [r.item for r in reqs]


def ended(q: BatchQueue) -> dict[str, int]:
    return {o.name.lower(): q.counters.ended[o] for o in Outcome if q.counters.ended[o]}


# ------------------------------------------------------------------------------------ admission


def test_admission_queues_counts_and_fills_the_bound():
    q, clock = make(bound=3)
    assert not q.full and q.live == 0
    reqs = [put(q, i) for i in range(3)]
    assert [r.state for r in reqs] == [State.QUEUED] * 3
    assert [r.enqueued for r in reqs] == [clock.now] * 3
    assert q.full and q.live == 3 and q.counters.submitted == 3
    q.reject()  # the caller refused a fourth: counted, not submitted
    assert q.counters.rejected == 1 and q.counters.submitted == 3 and q.live == 3


def test_a_new_request_is_not_queued_until_admitted():
    q, clock = make()
    req = q.new_request("x", None, key=None, timeout_ms=50)
    assert req.state is State.NEW and q.live == 0 and q.counters.submitted == 0
    assert req.deadline == pytest.approx(clock.now + 0.05)
    assert q.take_batch() == Taken([], [], None)


@pytest.mark.parametrize(
    "max_batch_size, max_delay_ms, expected",
    [
        (4, 0.0, [True, True, True, True, True]),  # greedy: every request may make a batch ready
        (3, 10.0, [True, False, True, True, True]),  # the queue was empty, not full, then full (3, 4, 5 queued)
        (1, 10.0, [True, True, True, True, True]),  # every group of one is full
    ],
)
def test_admit_says_when_a_worker_should_look_again(max_batch_size, max_delay_ms, expected):
    q, _ = make(max_batch_size=max_batch_size, max_delay_ms=max_delay_ms)
    assert [q.admit(q.new_request(i, None, None, None)) for i in range(5)] == expected


def test_expire_unadmitted_counts_a_request_that_never_got_room():
    q, _ = make(bound=1)
    put(q, 0)
    late = q.new_request(1, Future(), None, 30)
    q.expire_unadmitted(late)
    assert late.state is State.EXPIRED and q.live == 1
    assert q.counters.submitted == 2 and ended(q) == {"expired": 1}
    assert items(q.take_batch().batch) == [0]


# ------------------------------------------------------------------------------------ readiness


def test_greedy_takes_up_to_max_batch_size_oldest_first():
    q, _ = make(max_batch_size=4)
    for i in range(10):
        put(q, i)
    batches = [items(q.take_batch().batch) for _ in range(3)]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert q.live == 0 and q.groups == {} and q.take_batch() == Taken([], [], None)
    assert q.counters.submitted == 10


def test_delay_holds_a_group_until_its_oldest_has_waited():
    q, clock = make(max_batch_size=8, max_delay_ms=10)
    put(q, "a")
    clock.advance(4)
    put(q, "b")
    taken = q.take_batch()
    assert taken.batch == [] and taken.wait_s == pytest.approx(0.006)  # counted from the oldest
    clock.advance(5.999)
    assert q.take_batch().wait_s == pytest.approx(0.000001)
    clock.advance(0.001)  # exactly max_delay_ms after the oldest: ready
    assert items(q.take_batch().batch) == ["a", "b"]


def test_a_full_group_fires_without_waiting_for_the_delay():
    q, _ = make(max_batch_size=3, max_delay_ms=600_000)
    for i in range(4):
        put(q, i)
    assert items(q.take_batch().batch) == [0, 1, 2]
    assert q.take_batch().wait_s == pytest.approx(600.0)


def test_drain_ignores_the_delay():
    q, _ = make(max_batch_size=8, max_delay_ms=600_000)
    put(q, 1)
    put(q, 2)
    assert q.take_batch().batch == []
    assert items(q.take_batch(drain=True).batch) == [1, 2]


def test_take_batch_uses_the_given_time_over_the_clock():
    q, clock = make(max_batch_size=8, max_delay_ms=10)
    put(q, 1)
    assert q.take_batch(now=clock.now + 0.005).wait_s == pytest.approx(0.005)
    assert items(q.take_batch(now=clock.now + 0.010).batch) == [1]


# ------------------------------------------------------------------------------------ grouping


def test_keys_never_share_a_batch_and_the_oldest_head_goes_first():
    q, clock = make(max_batch_size=2)
    for i in range(12):
        put(q, i, key=i % 3)
        clock.advance(1)
    batches = [items(q.take_batch().batch) for _ in range(6)]
    assert batches == [[0, 3], [1, 4], [2, 5], [6, 9], [7, 10], [8, 11]]


def test_a_ready_group_goes_before_an_older_one_still_waiting():
    q, clock = make(max_batch_size=2, max_delay_ms=10)
    put(q, "a1", key="a")
    clock.advance(1)
    put(q, "b1", key="b")
    put(q, "b2", key="b")  # b is full; a is older but waits for a companion
    assert items(q.take_batch().batch) == ["b1", "b2"]
    taken = q.take_batch()
    assert taken.batch == [] and taken.wait_s == pytest.approx(0.009)


def test_wait_is_until_the_earliest_group_is_ready():
    q, clock = make(max_batch_size=8, max_delay_ms=10)
    put(q, 1, key="late")
    clock.advance(3)
    put(q, 2, key="later")
    assert q.take_batch().wait_s == pytest.approx(0.007)
    clock.advance(7)
    assert items(q.take_batch().batch) == [1]
    assert q.take_batch().wait_s == pytest.approx(0.003)


def test_empty_groups_are_dropped():
    q, _ = make(max_batch_size=2)
    put(q, 1, key="x")
    put(q, 2, key="y")
    q.take_batch()
    assert list(q.groups) == ["y"]
    cancelled = put(q, 3, key="z")
    q.cancel(cancelled)
    q.take_batch()
    q.take_batch()  # meets z's dead head and drops the group
    assert q.groups == {}


# ------------------------------------------------------------------------------------ deadlines


def test_expire_due_expires_only_what_is_due_and_frees_its_slot():
    q, clock = make(bound=3)
    short = put(q, "short", timeout_ms=30)
    put(q, "none")
    long = put(q, "long", timeout_ms=100)
    assert q.full and q.next_deadline() == short.deadline
    clock.advance(29.999)
    assert q.expire_due() == []
    clock.advance(0.001)  # exactly at the deadline: expired
    assert q.expire_due() == [short] and short.state is State.EXPIRED
    assert not q.full and q.live == 2 and ended(q) == {"expired": 1}
    assert q.next_deadline() == long.deadline
    assert items(q.take_batch().batch) == ["none", "long"]
    assert q.expire_due(now=clock.now + 1.0) == []  # long was taken: its heap entry is stale


def test_take_batch_expires_requests_it_meets_and_fills_the_batch_past_them():
    q, clock = make(max_batch_size=2)
    doomed = [put(q, "d1", timeout_ms=10), put(q, "d2", timeout_ms=10)]
    put(q, "ok1")
    put(q, "ok2")
    put(q, "ok3")
    clock.advance(10)
    taken = q.take_batch()
    assert items(taken.batch) == ["ok1", "ok2"] and taken.expired == doomed
    assert all(r.state is State.EXPIRED for r in doomed)
    assert ended(q) == {"expired": 2} and q.live == 1


def test_take_batch_may_return_only_expired_requests():
    q, clock = make(max_batch_size=4)
    doomed = put(q, "d", timeout_ms=5)
    clock.advance(5)
    taken = q.take_batch()
    assert taken.batch == [] and taken.expired == [doomed] and taken.wait_s is None


def test_the_deadline_heap_stays_bounded():
    q, _ = make(max_batch_size=8, bound=10_000)
    for i in range(3000):
        put(q, i, timeout_ms=600_000)
        if i % 8 == 7:
            assert len(q.take_batch().batch) == 8
    assert q.live == 0 and len(q.deadlines) <= 1024 + 2


def test_deadline_error_says_how_long_it_waited():
    q, clock = make()
    req = put(q, 1, timeout_ms=30)
    clock.advance(45)
    error = q.deadline_error(req)
    assert isinstance(error, DeadlineExceededError) and isinstance(error, TimeoutError)
    assert str(error) == "request was not started within its timeout_ms=30 (waited 45.0 ms); it was never run"


# ------------------------------------------------------------------------------------ cancellation


def test_cancel_frees_the_slot_once_and_only_while_queued():
    q, clock = make(max_batch_size=8, bound=3)
    reqs = [put(q, i, timeout_ms=10) for i in range(3)]
    assert q.full
    assert q.cancel(reqs[1]) and reqs[1].state is State.CANCELLED
    assert not q.cancel(reqs[1])  # twice: counted once
    assert not q.full and q.live == 2 and ended(q) == {"cancelled": 1}
    assert items(q.take_batch().batch) == [0, 2]
    assert not q.cancel(reqs[0])  # taken: whoever took it sees the cancellation
    clock.advance(10)
    assert q.expire_due() == []  # the cancelled request's heap entry is skipped
    assert ended(q) == {"cancelled": 1}


def test_cancel_refuses_new_and_expired_requests():
    q, clock = make()
    fresh = q.new_request(0, Future(), None, None)
    assert not q.cancel(fresh)
    doomed = put(q, 1, timeout_ms=1)
    clock.advance(1)
    assert q.expire_due() == [doomed]
    assert not q.cancel(doomed)
    assert ended(q) == {"expired": 1}


def test_mass_cancellation_compacts_the_group_and_keeps_order():
    q, _ = make(max_batch_size=64, bound=1000)
    reqs = [put(q, i) for i in range(600)]
    for i, r in enumerate(reqs):
        if i % 6:
            assert q.cancel(r)
    group = q.groups[None]
    assert q.live == group.live == 100 and len(group.queue) < 600 and group.dead < 600 - 100
    assert len(group.queue) == group.live + group.dead
    taken = [x for _ in range(2) for x in items(q.take_batch().batch)]
    assert taken == list(range(0, 600, 6))
    assert ended(q) == {"cancelled": 500}


def test_take_all_takes_what_is_queued_and_counts_it_aborted():
    q, _ = make(bound=10)
    reqs = [put(q, i, key=i % 2, timeout_ms=100) for i in range(5)]
    q.cancel(reqs[2])
    taken = q.take_all()
    assert sorted(items(taken)) == [0, 1, 3, 4] and all(r.state is State.TAKEN for r in taken)
    assert q.live == 0 and q.groups == {} and q.deadlines == [] and q.next_deadline() is None
    assert ended(q) == {"cancelled": 1, "aborted": 4}


def test_release_drops_the_item_and_the_future():
    q, _ = make()
    future: Future = Future()
    req = q.new_request([1, 2, 3], future, None, None)
    assert req.release() is future and req.item is None and req.future is None
    with pytest.raises(RuntimeError, match="released twice"):
        req.release()


# ------------------------------------------------------------------------------------ invariants


@pytest.mark.parametrize("seed", range(20))
def test_random_operations_keep_every_invariant(seed):
    """Random admissions, cancellations, clock steps, takes and expiries on 3 keys: each request
    leaves the queue exactly once; batches hold one key, in submission order, at most
    max_batch_size; nothing taken is past its deadline; the counts always add up."""
    rng = random.Random(seed)
    max_batch = rng.choice([1, 2, 5])
    delay_ms = rng.choice([0.0, 3.0])
    q, clock = make(max_batch_size=max_batch, max_delay_ms=delay_ms, bound=rng.choice([4, 50]))
    queued: list[Request] = []
    left: dict[int, State] = {}
    ran: list[int] = []
    key_of: dict[int, int] = {}
    serial = 0
    for _ in range(400):
        op = rng.choices(["put", "cancel", "tick", "take", "expire"], [40, 10, 20, 20, 10])[0]
        if op == "put":
            if q.full:
                q.reject()
                continue
            timeout = rng.choice([None, None, 1.0, 5.0])
            key_of[serial] = rng.randrange(3)
            queued.append(put(q, serial, key=key_of[serial], timeout_ms=timeout))
            serial += 1
        elif op == "cancel" and queued:
            r = rng.choice(queued)
            if q.cancel(r):
                left[r.item] = State.CANCELLED
        elif op == "tick":
            clock.advance(rng.choice([0.5, 1.0, 4.0]))
        elif op == "take":
            drain = rng.random() < 0.1
            had = q.live
            taken = q.take_batch(drain=drain)
            if taken.batch or taken.expired:
                assert taken.wait_s is None
            elif had:  # something queued but nothing ready: only while waiting for the delay
                assert delay_ms and not drain and 0 < taken.wait_s <= delay_ms / 1000 + 1e-9
            else:
                assert taken.wait_s is None
            assert len(taken.batch) <= max_batch and len({r.key for r in taken.batch}) <= 1
            assert items(taken.batch) == sorted(items(taken.batch))
            for r in taken.batch:
                assert r.state is State.TAKEN and (r.deadline is None or r.deadline > clock.now)
                left[r.item] = State.TAKEN
                ran.append(r.item)
            for r in taken.expired:
                assert r.state is State.EXPIRED
                left[r.item] = State.EXPIRED
        elif op == "expire":
            for r in q.expire_due():
                assert r.state is State.EXPIRED and r.deadline <= clock.now
                left[r.item] = State.EXPIRED
        queued = [r for r in queued if r.state is State.QUEUED]
        assert q.live == len(queued) == sum(g.live for g in q.groups.values()) <= q.bound
        counts = q.counters.ended
        assert q.counters.submitted == q.live + len(left) == serial
        assert counts[Outcome.CANCELLED] == sum(s is State.CANCELLED for s in left.values())
        assert counts[Outcome.EXPIRED] == sum(s is State.EXPIRED for s in left.values())
    for key in range(3):  # each key runs in submission order
        mine = [x for x in ran if key_of[x] == key]
        assert mine == sorted(mine)
    assert ran  # the run exercised batches
    drained = q.take_all()
    assert q.live == 0 and len(drained) == len(queued)
    assert q.counters.submitted == len(left) + len(drained)
