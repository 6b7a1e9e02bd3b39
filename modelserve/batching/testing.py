"""Test-only controls of a batcher, reached as ``batcher._testing``; not public API.

``pause()`` stops workers from forming new batches (running ones finish; requests still queue up
to the bound, expire and can be cancelled; ``close`` drains anyway), so with ``wait_queued`` a
test fixes the composition of the next batches without depending on timing::

    hooks = b._testing
    hooks.pause(); [submit from N threads]; hooks.wait_queued(N); hooks.resume()
"""

from __future__ import annotations

import math

from .state import BatcherState

__all__ = ["TestingHooks"]


class TestingHooks:
    """The test hooks of the batcher whose state is ``state``."""

    __test__ = False  # not a pytest test class

    def __init__(self, state: BatcherState) -> None:
        self._state = state

    def pause(self) -> None:
        """Stop forming new batches until :meth:`resume` (or ``close``)."""
        with self._state.lock:
            self._state.paused = True

    def resume(self) -> None:
        """Undo :meth:`pause`: batches form again at once from what is queued."""
        state = self._state
        with state.lock:
            state.paused = False
            state.work_cv.notify_all()

    def wait_queued(self, n: int, timeout_s: float | None = 10.0) -> bool:
        """Block until at least ``n`` requests are queued; False on timeout. Meant for a paused
        batcher (otherwise workers keep draining the queue)."""
        state = self._state
        end = math.inf if timeout_s is None else state.clock() + timeout_s
        with state.lock:
            while state.core.live < n:
                remaining = end - state.clock()
                if remaining <= 0:
                    return False
                state.wait_progress_locked(remaining)
            return True

    def queue_entries(self) -> int:
        """Entries in the group queues, cancelled and expired ones not yet dropped included."""
        with self._state.lock:
            return sum(len(g.queue) for g in self._state.core.groups.values())

    def deadline_entries(self) -> int:
        """Entries in the deadline heap, those of requests no longer queued included."""
        with self._state.lock:
            return len(self._state.core.deadlines)
