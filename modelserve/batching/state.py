"""What a batcher's threads share under its one lock, and the wake-ups that follow each change.

:class:`BatcherState` holds the core (:class:`~modelserve.batching.core.BatchQueue`), the
lifecycle flags, and four conditions on the lock, each with one kind of waiter:

* ``work_cv``: workers (a batch may be ready; resume; close);
* ``space_cv``: submitter threads blocked on a full queue (coroutines wait on asyncio futures
  in ``async_waiters`` instead);
* ``progress_cv``: ``close`` waiting for the drain, and the test hook ``wait_queued``;
* ``deadline_cv``: the deadline thread (an earlier deadline; nothing left to expire).

Methods ending in ``_locked`` must be called with the lock held. Futures are resolved outside it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from typing import Callable

from .._errors import BatcherClosedError
from .core import BatchQueue, Request
from .stats import BatchRecord, Outcome

__all__ = ["BatcherState", "MAX_WAIT_S", "wait_arg"]

_log = logging.getLogger("modelserve.batcher")

#: The longest single wait on a condition or a thread. Every wait sits in a loop that checks
#: its condition again, so a longer timeout (a deadline of years) is waited out in pieces; the
#: C-level lock cannot take timeouts beyond ``threading.TIMEOUT_MAX`` (``OverflowError``).
MAX_WAIT_S = 3600.0


def wait_arg(remaining: float | None) -> float | None:
    """A timeout Condition.wait / Thread.join / asyncio.wait_for accept: ``None`` for 'forever'
    (``None`` or ``inf``), else ``remaining`` clamped to ``[0, MAX_WAIT_S]``."""
    if remaining is None or remaining == math.inf:
        return None
    return min(max(remaining, 0.0), MAX_WAIT_S)


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class BatcherState:
    """The lock, the core it guards, the lifecycle flags and the conditions of one batcher."""

    def __init__(self, core: BatchQueue, name: str) -> None:
        self.core = core
        self.name = name
        self.observers: tuple[Callable[[BatchRecord], None], ...] = ()  # replaced whole, read without the lock
        self.clock = core.clock
        lock = threading.Lock()
        self.lock = lock
        self.work_cv = threading.Condition(lock)
        self.space_cv = threading.Condition(lock)
        self.progress_cv = threading.Condition(lock)
        self.deadline_cv = threading.Condition(lock)
        self.space_waiters = 0  # threads waiting on space_cv
        self.progress_waiters = 0  # threads waiting on progress_cv
        self.async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.inflight = 0  # batches taken and not yet resolved
        self.idle = 0  # workers waiting on work_cv
        self.paused = False  # set by the test hooks only
        self.closed = False
        self.dead: BaseException | None = None  # what killed a thread: no more work
        self.deadline_wake = -math.inf  # when the deadline thread next wakes by itself

    # ---------------------------------------------------------------- lifecycle

    def check_open_locked(self) -> None:
        """Raise :class:`BatcherClosedError` once closed or dead."""
        if self.dead is not None:
            raise BatcherClosedError(
                f"{self.name}: the batch loop died ({self.dead!r}); create a new batcher"
            ) from self.dead
        if self.closed:
            raise BatcherClosedError(f"{self.name} is closed; submit() after close()")

    @property
    def finished(self) -> bool:
        """The threads have nothing left to do: dead, or closed with nothing queued."""
        return self.dead is not None or (self.closed and self.core.live == 0)

    # ---------------------------------------------------------------- waiting

    def wait_space_locked(self, req: Request) -> bool:
        """Wait for room in the queue for ``req``. True: room; False: its deadline passed first.
        Raises :class:`BatcherClosedError` when the batcher closes meanwhile."""
        while self.core.full:
            if req.deadline is None:
                remaining = None
            else:
                remaining = req.deadline - self.clock()
                if remaining <= 0:
                    return False
            self.space_waiters += 1
            try:
                self.space_cv.wait(wait_arg(remaining))
            finally:
                self.space_waiters -= 1
            self.check_open_locked()
        return True

    def wait_progress_locked(self, remaining: float | None) -> None:
        """Wait (once, up to ``remaining`` seconds) for a request to be queued or to leave the
        queue, or for a batch to finish."""
        self.progress_waiters += 1
        try:
            self.progress_cv.wait(wait_arg(remaining))
        finally:
            self.progress_waiters -= 1

    def async_waiter_locked(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        """An asyncio future of ``loop`` that is set when room may have been freed (or on close)."""
        waiter = loop.create_future()
        self.async_waiters.append((loop, waiter))
        return waiter

    def drop_async_waiter(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future) -> None:
        """Unregister a waiter that was not woken (timed out or cancelled). Takes the lock."""
        with self.lock:
            try:
                self.async_waiters.remove((loop, waiter))
            except ValueError:
                pass

    # ---------------------------------------------------------------- wake-ups

    def queued_locked(self) -> None:
        """A request was queued."""
        if self.progress_waiters:
            self.progress_cv.notify_all()

    def batch_done_locked(self) -> None:
        """A batch finished (its futures are resolved)."""
        if self.progress_waiters:
            self.progress_cv.notify_all()

    def space_freed_locked(self) -> None:
        """Requests left the queue (taken, cancelled, expired or aborted)."""
        if self.space_waiters:
            self.space_cv.notify_all()
        if self.async_waiters:
            self._wake_async_locked()
        if self.progress_waiters:
            self.progress_cv.notify_all()
        if self.closed and self.core.live == 0:
            self.deadline_cv.notify()  # nothing left to expire: let the deadline thread exit

    def notify_all_locked(self) -> None:
        """Wake every waiter (close, death)."""
        for cv in (self.work_cv, self.space_cv, self.progress_cv, self.deadline_cv):
            cv.notify_all()
        if self.async_waiters:
            self._wake_async_locked()

    def _wake_async_locked(self) -> None:
        waiters, self.async_waiters = self.async_waiters, []
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # that loop is closed; nobody waits any more
                pass

    # ---------------------------------------------------------------- failing requests

    def take_all_locked(self) -> list[Request]:
        """Take every queued request (to fail it); the core counts them as aborted."""
        taken = self.core.take_all()
        self.space_freed_locked()
        return taken

    def fail_unrun(self, reqs: list[Request], make_error: Callable[[Request], BaseException],
                   counted: Outcome) -> None:
        """Fail requests this thread took before they ran (call without the lock); they were
        counted as ``counted``. Those cancelled in the meantime are recounted as cancelled."""
        late = 0
        for r in reqs:
            future = r.release()
            if future.set_running_or_notify_cancel():
                future.set_exception(make_error(r))
            else:
                late += 1
        if late:
            with self.lock:
                self.core.counters.recount(counted, Outcome.CANCELLED, late)

    def die(self, exc: BaseException, batch: list[Request]) -> None:
        """A thread of the batcher is dying of ``exc`` while running ``batch``: log it, close,
        fail the batch and everything queued with :class:`BatcherClosedError`."""
        _log.error("%s: batch loop died; failing all pending requests", self.name,
                   exc_info=(type(exc), exc, exc.__traceback__))
        unfinished = [r for r in batch if r.future is not None and not r.future.done()]
        with self.lock:
            if self.dead is None:
                self.dead = exc
            self.closed = True
            pending = self.take_all_locked()
            self.core.counters.end(Outcome.ABORTED, len(unfinished))
            self.notify_all_locked()
        for r in [*unfinished, *pending]:
            future = r.future
            if future is None or future.done():
                continue
            error = BatcherClosedError(f"{self.name}: the batch loop died ({exc!r}) before this request completed")
            error.__cause__ = exc
            try:
                if future.running() or future.set_running_or_notify_cancel():
                    future.set_exception(error)
            except Exception:  # resolved meanwhile; nothing left to do
                pass
