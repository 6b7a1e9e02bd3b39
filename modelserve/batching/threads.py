"""The batcher's threads: workers that take batches from the core and run ``fn``, and the
deadline thread that fails queued requests whose deadline passes while every worker is busy.

All daemon threads, named ``<batcher name>-<i>`` and ``<batcher name>-deadlines``. A thread that
dies (``fn`` raised a ``BaseException`` that is not an ``Exception``) closes the batcher through
:meth:`BatcherState.die <modelserve.batching.state.BatcherState.die>`.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import Future
from typing import Any, Callable, Sequence, cast

from .core import Request, Taken
from .execute import ItemOutcome, call_isolated
from .state import BatcherState, wait_arg
from .stats import BatchRecord, Outcome

__all__ = ["Workers"]

_log = logging.getLogger("modelserve.batcher")


class Workers:
    """``count`` worker threads (started here) and, from the first request with a deadline on,
    one deadline thread, all serving ``state``."""

    def __init__(self, state: BatcherState, fn: Callable[[list[Any]], Sequence[Any]], count: int) -> None:
        self._state = state
        self._fn = fn
        self._deadline_thread: threading.Thread | None = None
        self._threads = [
            threading.Thread(target=self._worker_loop, name=f"{state.name}-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def admitted_locked(self, req: Request, may_be_ready: bool) -> None:
        """``req`` was just queued: start or wake the deadline thread if its deadline is the
        earliest, and wake a worker if ``req`` may have made a batch ready."""
        state = self._state
        if req.deadline is not None and (self._deadline_thread is None or req.deadline < state.deadline_wake):
            if self._deadline_thread is None:
                self._deadline_thread = threading.Thread(
                    target=self._deadline_loop, name=f"{state.name}-deadlines", daemon=True)
                self._deadline_thread.start()
            else:
                state.deadline_cv.notify()
        if may_be_ready and state.idle and not state.paused:
            state.work_cv.notify()

    def owns_current_thread(self) -> bool:
        """Whether the calling thread is one of these (``close`` from inside ``fn``)."""
        me = threading.current_thread()
        return me in self._threads or me is self._deadline_thread

    def join(self, end: float) -> None:
        """Wait for every thread to exit, until the state's clock reaches ``end``."""
        threads = [*self._threads, *([self._deadline_thread] if self._deadline_thread is not None else [])]
        for thread in threads:
            while thread.is_alive():
                remaining = end - self._state.clock()
                if remaining <= 0:
                    return
                thread.join(wait_arg(remaining))

    # ---------------------------------------------------------------- workers

    def _worker_loop(self) -> None:
        state = self._state
        batch: list[Request] = []
        running = False
        try:
            while True:
                with state.lock:
                    if running:
                        state.inflight -= 1
                        running = False
                        state.batch_done_locked()
                    taken = self._next_batch_locked()
                    if taken is None:
                        return
                    batch = taken.batch
                    state.inflight += 1
                    running = True
                if taken.expired:
                    state.fail_unrun(taken.expired, state.core.deadline_error, Outcome.EXPIRED)
                self._run_batch(batch)
                batch = []
        except BaseException as exc:  # never die silently: fail everything, refuse new work
            state.die(exc, batch)

    def _next_batch_locked(self) -> Taken | None:
        """Wait for a ready group and take a batch from it; None when the worker should exit."""
        state = self._state
        core = state.core
        while True:
            if state.finished:
                return None
            wait_s: float | None = None
            if not state.paused or state.closed:
                taken = core.take_batch(drain=state.closed)  # closing: do not wait for max_delay_ms
                if taken.batch or taken.expired:
                    state.space_freed_locked()
                    if core.live and state.idle:
                        state.work_cv.notify()  # more may be ready for another worker
                    return taken
                wait_s = taken.wait_s
            state.idle += 1
            try:
                state.work_cv.wait(wait_arg(wait_s))
            finally:
                state.idle -= 1

    def _run_batch(self, batch: list[Request]) -> None:
        state = self._state
        run = []
        for r in batch:
            if cast(Future, r.future).set_running_or_notify_cancel():
                run.append(r)
            else:  # cancelled after it was taken: never run
                r.release()
        outcomes: list[ItemOutcome] = []
        calls = 0
        t0 = state.clock()
        if run:
            outcomes, calls = call_isolated(self._fn, [r.item for r in run], state.name)
        t1 = state.clock()
        waits, failed = [t0 - r.enqueued for r in run], sum(1 for error, _ in outcomes if error is not None)
        with state.lock:  # count before resolving, so a caller who sees its result sees the stats
            counters = state.core.counters
            if len(run) < len(batch):
                counters.end(Outcome.CANCELLED, len(batch) - len(run))
            if run:
                counters.record_batch(waits, t1 - t0, calls, failed)
        if run and state.observers:  # before resolving too, so metrics include what a caller saw
            self._notify(BatchRecord(len(run), tuple(waits), t1 - t0, failed))
        for r, (error, value) in zip(run, outcomes):
            future = r.release()  # the deadline heap may hold r for long
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    def _notify(self, record: BatchRecord) -> None:
        for observer in self._state.observers:
            try:
                observer(record)
            except Exception:  # noqa: BLE001 - an observer never fails a batch
                _log.exception("%s: a batch observer raised (ignored)", self._state.name)

    # ---------------------------------------------------------------- deadlines

    def _deadline_loop(self) -> None:
        state = self._state
        core = state.core
        try:
            while True:
                with state.lock:
                    while True:
                        if state.finished:
                            return
                        now = state.clock()
                        expired = core.expire_due(now)
                        if expired:
                            state.deadline_wake = -math.inf
                            state.space_freed_locked()
                            break
                        deadline = core.next_deadline()
                        state.deadline_wake = math.inf if deadline is None else deadline
                        state.deadline_cv.wait(wait_arg(None if deadline is None else deadline - now))
                        state.deadline_wake = -math.inf
                state.fail_unrun(expired, core.deadline_error, Outcome.EXPIRED)
        except BaseException as exc:
            state.die(exc, [])
