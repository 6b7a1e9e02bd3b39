"""The batcher users hold: :class:`MicroBatcher`, its futures, submission and ``close``.

The queue's bookkeeping is :class:`~modelserve.batching.core.BatchQueue`'s; the lock, the flags
and the wake-ups are :class:`~modelserve.batching.state.BatcherState`'s; the threads that run
``fn`` are :class:`~modelserve.batching.threads.Workers`. The contract is in
:mod:`modelserve.batching`'s docstring.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
from concurrent.futures import Future
from typing import Any, Callable, Generic, Hashable, Literal, Sequence, TypeVar, cast

from .._errors import BatcherClosedError, InvalidInputError, QueueFullError
from .core import BatchQueue, Request
from .options import Batching, check_ms
from .state import BatcherState, wait_arg
from .stats import BatcherStats, BatchRecord, Outcome
from .testing import TestingHooks
from .threads import Workers

__all__ = ["MicroBatcher"]

T = TypeVar("T")
R = TypeVar("R")

_ids = itertools.count(1)


class _RequestFuture(Future):
    """A Future whose successful ``cancel()`` also frees the request's queue slot at once."""

    _ms_batcher: MicroBatcher | None = None
    _ms_request: Request | None = None

    def cancel(self) -> bool:
        cancelled = super().cancel()
        batcher, request = self._ms_batcher, self._ms_request
        if cancelled and batcher is not None and request is not None:
            batcher._on_cancel(request)
        return cancelled


class MicroBatcher(Generic[T, R]):
    """Batch concurrent one-item calls into calls of ``fn(items) -> results``.

    ``fn`` receives a ``list`` of 1 to ``max_batch_size`` items (all with the same ``group_key``,
    oldest first) and returns a list, tuple or array of as many results, in order; an element may be an
    exception instance, which fails just that item. ``fn`` runs on the batcher's worker threads, up
    to ``max_concurrent_batches`` calls at once, and must be safe to call again with a subset of a
    batch (see :mod:`modelserve.batching` on error isolation). ``group_key(item)`` (called in the
    submitting thread) returns a hashable key; items with different keys never share a batch.

    Options are those of :class:`Batching` (validated the same way). Use the batcher as a context
    manager, or call :meth:`close`, so that its threads stop.

    Example::

        >>> b = MicroBatcher(lambda xs: [x * x for x in xs], max_batch_size=16, max_delay_ms=2)
        >>> b(3), b.submit(4).result()
        (9, 16)
        >>> b.close()
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        max_batch_size: int = 32,
        max_delay_ms: float = 0.0,
        max_queue_size: int | None = None,
        max_concurrent_batches: int = 1,
        timeout_ms: float | None = None,
        group_key: Callable[[T], Hashable] | None = None,
        on_full: Literal["reject", "block"] = "reject",
    ) -> None:
        if not callable(fn):
            raise InvalidInputError(f"fn must be callable (list of items -> results), got {type(fn).__name__}")
        if group_key is not None and not callable(group_key):
            raise InvalidInputError(
                f"group_key must be a callable (item -> hashable key) or None, got {type(group_key).__name__}"
            )
        config = Batching(max_batch_size=max_batch_size, max_delay_ms=max_delay_ms,
                          max_queue_size=max_queue_size, max_concurrent_batches=max_concurrent_batches,
                          timeout_ms=timeout_ms, on_full=on_full)
        self._config = config
        self._group_key = group_key
        self._default_timeout_ms = (
            None if config.timeout_ms is None or math.isinf(config.timeout_ms) else config.timeout_ms)
        self._block = config.on_full == "block"
        self._name = f"modelserve-batcher-{next(_ids)}"
        self._core = BatchQueue(max_batch_size=config.max_batch_size, max_delay_ms=config.max_delay_ms,
                                bound=config.queue_bound)
        self._state = BatcherState(self._core, self._name)
        self._testing = TestingHooks(self._state)
        self._workers = Workers(self._state, fn, config.max_concurrent_batches)

    # ---------------------------------------------------------------- public API

    @property
    def config(self) -> Batching:
        """The validated options this batcher runs with."""
        return self._config

    @property
    def name(self) -> str:
        """``modelserve-batcher-<id>``, the prefix of its threads' names."""
        return self._name

    def add_observer(self, observer: Callable[[BatchRecord], None]) -> None:
        """Call ``observer(record)`` (a :class:`BatchRecord`) after each batch runs, on the worker
        thread, before its results are delivered; e.g. metrics of batch sizes and queue waits. An
        observer that raises is logged and otherwise ignored. Keep it quick: the batch's callers wait."""
        if not callable(observer):
            raise InvalidInputError(f"an observer must be callable, got {observer!r}")
        with self._state.lock:
            self._state.observers = (*self._state.observers, observer)

    def remove_observer(self, observer: Callable[[BatchRecord], None]) -> None:
        """Stop calling ``observer`` (nothing happens if it was not added)."""
        with self._state.lock:
            self._state.observers = tuple(o for o in self._state.observers if o is not observer)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the batch loop died."""
        return self._state.closed

    def submit(self, item: T, *, timeout_ms: float | None = None, block: bool | None = None) -> Future[R]:
        """Queue ``item`` and return a :class:`concurrent.futures.Future` of its result.

        ``timeout_ms`` (> 0; default: the batcher's ``timeout_ms``; ``inf``: none) is the item's
        deadline from now: if it has not started running by then, the future fails with
        :class:`DeadlineExceededError` and ``fn`` never sees it. Cancelling the future before the
        item starts removes it from the queue. Raises :class:`QueueFullError` at once when the
        queue is full and ``on_full="reject"``; with ``on_full="block"`` waits for room (up to the
        deadline, after which the returned future has failed with :class:`DeadlineExceededError`).
        ``block`` overrides ``on_full`` for this request (``True``: wait for room, ``False``: reject);
        e.g. a caller whose first item was admitted can wait for room for the rest of its items.
        Raises :class:`BatcherClosedError` after :meth:`close` (also when close happens while
        blocked), :class:`InvalidInputError` for a bad ``timeout_ms`` or when ``group_key`` fails.
        """
        req = self._new_request(item, timeout_ms)
        future = cast(Future, req.future)  # a worker may resolve it (and drop it) once queued
        blocking = self._block if block is None else bool(block)
        state, core = self._state, self._core
        with state.lock:
            state.check_open_locked()
            admitted = True
            if core.full:
                if not blocking:
                    core.reject()
                    raise QueueFullError(
                        f"{self._name}: queue full ({core.live} of max_queue_size={core.bound} requests"
                        " waiting); retry later, add capacity, or use on_full='block'"
                    )
                admitted = state.wait_space_locked(req)
            if admitted:
                self._admit_locked(req)
            else:
                core.expire_unadmitted(req)
        if not admitted:
            state.fail_unrun([req], core.deadline_error, Outcome.EXPIRED)
        return future

    def __call__(self, item: T, *, timeout_ms: float | None = None) -> R:
        """Submit ``item`` and block until its result; re-raises the item's exception.

        Do not call it from an event loop's thread (use :meth:`acall`) nor from inside ``fn``.
        If the wait is interrupted (e.g. ``KeyboardInterrupt``), the request is cancelled if it
        has not started.
        """
        future = self.submit(item, timeout_ms=timeout_ms)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def acall(self, item: T, *, timeout_ms: float | None = None, block: bool | None = None) -> R:
        """Asyncio version of :meth:`__call__`; never blocks the event loop.

        Cancelling the awaiting task cancels the request if it has not started (it then never
        runs); a request that has started runs to completion and its result is dropped. With
        ``on_full="block"`` (or ``block=True``, as for :meth:`submit`) a full queue is waited on
        asynchronously.
        """
        future = await self.asubmit(item, timeout_ms=timeout_ms, block=block)
        return await asyncio.wrap_future(future, loop=asyncio.get_running_loop())

    async def asubmit(self, item: T, *, timeout_ms: float | None = None, block: bool | None = None) -> Future[R]:
        """Asyncio version of :meth:`submit`: returns the request's future once it is queued.

        Waiting for room (``on_full="block"`` or ``block=True``) never blocks the event loop; the
        arguments and errors are :meth:`submit`'s. Awaiting the returned future (e.g. with
        :func:`asyncio.wrap_future`) gives the result; :meth:`acall` does both steps.
        """
        if self._block if block is None else block:
            return await self._asubmit_blocking(item, timeout_ms, asyncio.get_running_loop())
        return self.submit(item, timeout_ms=timeout_ms, block=False)

    def reconfigure(self, **changes: Any) -> Batching:
        """Change ``max_batch_size``, ``max_delay_ms``, ``max_queue_size``, ``timeout_ms`` or
        ``on_full`` while the batcher runs (validated as :class:`Batching` does; the new options
        returned). Queued requests stay queued and are batched under the new options from the next
        batch on; running batches are not touched. A smaller ``max_queue_size`` rejects (or blocks)
        new requests until the queue has drained below it; nothing queued is dropped.
        ``max_concurrent_batches`` is the number of worker threads and cannot change live
        (:class:`InvalidInputError`). Raises :class:`BatcherClosedError` once closed.
        """
        live = {"max_batch_size", "max_delay_ms", "max_queue_size", "timeout_ms", "on_full"}
        unknown = sorted(set(changes) - live)
        if unknown:
            fixed = " (the worker threads are made at construction)" if "max_concurrent_batches" in unknown else ""
            raise InvalidInputError(f"cannot change {', '.join(unknown)} of a running batcher{fixed}; "
                                    f"changeable: {', '.join(sorted(live))}")
        config = dataclasses.replace(self._config, **changes)
        state = self._state
        with state.lock:
            state.check_open_locked()
            core = state.core
            core.max_batch, core.delay_s, core.bound = (config.max_batch_size, config.max_delay_ms / 1000.0,
                                                        config.queue_bound)
            self._config = config
            self._default_timeout_ms = (
                None if config.timeout_ms is None or math.isinf(config.timeout_ms) else config.timeout_ms)
            self._block = config.on_full == "block"
            state.notify_all_locked()  # workers re-check readiness; room waiters re-check the bound
        return config

    def stats(self) -> BatcherStats:
        """A consistent snapshot of the counters (see :class:`BatcherStats`)."""
        state = self._state
        with state.lock:
            counters = state.core.counters.copy()
            depth, inflight, closed = state.core.live, state.inflight, state.closed
        # percentiles are sorted outside the lock
        return counters.snapshot(queue_depth=depth, in_flight_batches=inflight, closed=closed)

    def close(self, drain: bool = True, timeout_s: float = 30.0) -> None:
        """Stop taking requests; finish (``drain=True``) or fail (``drain=False``) the queued ones.

        After it starts, :meth:`submit` raises :class:`BatcherClosedError`, and so do submitters
        blocked on a full queue. With ``drain=True`` the queued requests run (without waiting for
        ``max_delay_ms``) until the queue is empty or ``timeout_s`` has passed; those still queued
        then fail with :class:`BatcherClosedError`.
        With ``drain=False`` every queued request fails so at once. Batches already running cannot
        be interrupted: ``close`` waits for them within the same ``timeout_s`` and returns anyway
        when it passes (their futures resolve when ``fn`` returns). Idempotent; called from
        inside ``fn`` it does not wait.
        """
        timeout = check_ms("timeout_s", timeout_s, allow_zero=True, allow_inf=True, unit="seconds")
        state = self._state
        end = state.clock() + timeout
        with state.lock:
            state.closed = True
            state.paused = False
            unrun = [] if drain else state.take_all_locked()
            state.notify_all_locked()
        state.fail_unrun(unrun, lambda r: BatcherClosedError(
            f"{self._name} was closed with drain=False before this request ran"), Outcome.ABORTED)
        if self._workers.owns_current_thread():
            return
        with state.lock:
            while (state.core.live or state.inflight) and state.dead is None:
                remaining = end - state.clock()
                if remaining <= 0:
                    break
                state.wait_progress_locked(remaining)
            unrun = state.take_all_locked()
            state.notify_all_locked()
        state.fail_unrun(unrun, lambda r: BatcherClosedError(
            f"{self._name}.close(timeout_s={timeout:g}) ran out of time before this request ran"),
            Outcome.ABORTED)
        self._workers.join(end)

    def __enter__(self) -> MicroBatcher[T, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(drain=True)

    def __repr__(self) -> str:
        c, s = self._config, self._state
        state = "dead" if s.dead is not None else "closed" if s.closed else "open"
        return (f"<MicroBatcher {self._name} {state} max_batch_size={c.max_batch_size} "
                f"max_delay_ms={c.max_delay_ms:g} queued={s.core.live} in_flight={s.inflight}>")

    # ---------------------------------------------------------------- internals

    def _new_request(self, item: Any, timeout_ms: float | None) -> Request:
        key: Hashable = None
        if self._group_key is not None:
            try:
                key = self._group_key(item)
                hash(key)
            except Exception as exc:
                raise InvalidInputError(
                    f"group_key(item) must return a hashable key; it failed with {exc!r}"
                ) from exc
        if timeout_ms is None:
            t_ms = self._default_timeout_ms
        else:
            t_ms = check_ms("timeout_ms", timeout_ms, allow_zero=False, allow_inf=True)
            if math.isinf(t_ms):
                t_ms = None
        future = _RequestFuture()
        req = self._core.new_request(item, future, key, t_ms)
        future._ms_batcher = self
        future._ms_request = req
        return req

    async def _asubmit_blocking(self, item: Any, timeout_ms: float | None,
                                loop: asyncio.AbstractEventLoop) -> Future:
        req = self._new_request(item, timeout_ms)
        future = cast(Future, req.future)
        state, core = self._state, self._core
        while True:
            with state.lock:
                state.check_open_locked()
                if not core.full:
                    self._admit_locked(req)
                    return future
                remaining = None if req.deadline is None else req.deadline - state.clock()
                if remaining is not None and remaining <= 0:
                    core.expire_unadmitted(req)
                    break
                waiter = state.async_waiter_locked(loop)
            try:
                await asyncio.wait_for(waiter, wait_arg(remaining))
            except (TimeoutError, asyncio.TimeoutError):  # distinct classes before Python 3.11
                pass
            finally:
                if not waiter.done() or waiter.cancelled():  # not woken: unregister it
                    state.drop_async_waiter(loop, waiter)
        state.fail_unrun([req], core.deadline_error, Outcome.EXPIRED)
        return future

    def _admit_locked(self, req: Request) -> None:
        may_be_ready = self._core.admit(req)
        self._workers.admitted_locked(req, may_be_ready)
        self._state.queued_locked()

    def _on_cancel(self, req: Request) -> None:
        state = self._state
        with state.lock:
            if not self._core.cancel(req):
                return  # not queued (yet/any more): whoever took it sees the cancellation
            state.space_freed_locked()
        # What an executor does when it dequeues a cancelled future: without it,
        # concurrent.futures.wait() and as_completed() would never see this one as done.
        req.release().set_running_or_notify_cancel()
