"""The engines' slot pool under a hostile close timeout (issue 10): ``close(timeout=1e12)``
raised ``OverflowError`` from the condition wait while a slot was in use."""

from __future__ import annotations

import threading

import pytest

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
