"""The engines' slot pool (OpenVINO infer requests, TensorRT execution contexts): closing while
objects are in use, objects created while closing, and a hostile close timeout (issue 10:
``close(timeout=1e12)`` raised ``OverflowError`` from the condition wait while a slot was in use)."""

from __future__ import annotations

import threading
import time

import pytest

import modelserve as ms
from modelserve.engines._pool import SlotPool


@pytest.mark.parametrize("timeout", [1e12, 1e300, float("inf"), None], ids=["1e12", "1e300", "inf", "none"])
def test_close_with_huge_timeout_waits_for_the_slot_in_use(timeout):
    pool: SlotPool[object] = SlotPool(object, 2, "test")
    taken, release = threading.Event(), threading.Event()

    def user():
        with pool.slot():
            taken.set()
            release.wait(30)

    t = threading.Thread(target=user)
    t.start()
    assert taken.wait(30)
    closed: list = []
    closer = threading.Thread(target=lambda: closed.append(pool.close(timeout)))
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # waiting for the slot, not crashed
    release.set()
    closer.join(30)
    t.join(30)
    assert not closer.is_alive() and len(closed) == 1 and pool.pending == 0


# -- closing while objects are in use, and objects created while closing ----------------------


class _Obj:
    def __init__(self, n):
        self.n = n


def _counter_pool(size=2, **kw):
    made = []

    def factory():
        made.append(_Obj(len(made)))
        return made[-1]

    return SlotPool(factory, size, "tensorrt", **kw), made


def _hold(pool, release: threading.Event, got: threading.Event, box: list):
    def body():
        try:
            with pool.slot() as obj:
                box.append(obj)
                got.set()
                release.wait(10)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            box.append(exc)
            got.set()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def test_pool_close_waits_for_busy_objects_and_then_hands_all_back():
    pool, made = _counter_pool()
    with pool.slot():
        pass
    release, got, box = threading.Event(), threading.Event(), []
    t = _hold(pool, release, got, box)
    assert got.wait(5)
    threading.Timer(0.1, release.set).start()
    t0 = time.monotonic()
    objs = pool.close(timeout=5, on_late=lambda o: pytest.fail("nothing is late"))
    assert 0.05 < time.monotonic() - t0 < 5  # it waited for the run, not for the timeout
    assert {id(o) for o in objs} == {id(o) for o in made} and pool.pending == 0
    t.join(5)
    assert pool.close() == []  # idempotent


def test_pool_close_never_hands_out_an_object_still_in_use():
    pool, made = _counter_pool()
    with pool.slot():  # makes an idle object
        pass
    release, got, box = threading.Event(), threading.Event(), []
    t = _hold(pool, release, got, box)
    assert got.wait(5)
    late, drained = [], []
    objs = pool.close(timeout=0.05, on_late=late.append, on_drained=lambda: drained.append(list(late)))
    busy = box[0]
    assert busy is made[0] and objs == []  # the only object is in use: nothing to release yet
    assert pool.pending == 1 and late == [] and drained == []
    release.set()
    t.join(5)
    assert late == [busy] and drained == [[busy]]  # on_drained after the last on_late
    assert pool.pending == 0


def test_pool_refuses_new_and_waiting_callers_once_closed():
    pool, _ = _counter_pool(size=1)
    release, got, box = threading.Event(), threading.Event(), []
    t = _hold(pool, release, got, box)
    assert got.wait(5)
    waiter_got, waiter_box = threading.Event(), []
    w = _hold(pool, threading.Event(), waiter_got, waiter_box)  # blocks: the one object is busy
    time.sleep(0.05)
    assert not waiter_got.is_set()
    closer = threading.Thread(target=pool.close, kwargs={"timeout": 5}, daemon=True)
    closer.start()
    assert waiter_got.wait(5)
    assert isinstance(waiter_box[0], ms.ModelserveError) and "tensorrt engine is closed" in str(waiter_box[0])
    with pytest.raises(ms.ModelserveError, match="this tensorrt engine is closed"):
        with pool.slot():
            pass
    release.set()
    for th in (t, w, closer):
        th.join(5)


def test_pool_object_made_while_closing_goes_to_close_not_the_caller():
    started, finish = threading.Event(), threading.Event()

    def slow_factory():
        started.set()
        finish.wait(5)
        return _Obj(0)

    pool = SlotPool(slow_factory, 1, "tensorrt")
    box, got = [], threading.Event()
    t = _hold(pool, threading.Event(), got, box)
    assert started.wait(5)
    threading.Timer(0.05, finish.set).start()
    objs = pool.close(timeout=5)
    t.join(5)
    assert len(objs) == 1 and isinstance(box[0], ms.ModelserveError)
    assert pool.pending == 0


def test_pool_failed_creation_after_close_still_drains():
    started, finish = threading.Event(), threading.Event()

    def failing_factory():
        started.set()
        finish.wait(5)
        raise RuntimeError("out of memory")

    pool = SlotPool(failing_factory, 1, "tensorrt")
    box, got = [], threading.Event()
    t = _hold(pool, threading.Event(), got, box)
    assert started.wait(5)
    drained = []
    assert pool.close(timeout=0.01, on_late=lambda o: pytest.fail("no object"), on_drained=lambda: drained.append(1)) == []
    assert pool.pending == 1
    finish.set()
    t.join(5)
    assert isinstance(box[0], RuntimeError) and drained == [1] and pool.pending == 0


def test_pool_initial_objects_count_towards_size():
    first = _Obj("first")
    pool, made = _counter_pool(size=2, initial=[first])
    with pool.slot() as a:
        assert a is first and pool.created == 1
        with pool.slot() as b:
            assert b is made[0] and pool.created == 2
    with pytest.raises(ValueError, match="exceed the pool size"):
        SlotPool(lambda: None, 1, initial=[1, 2])
