"""Micro-batching: many concurrent one-item calls become few batched calls of one function.

A :class:`MicroBatcher` wraps ``fn(items: list) -> Sequence[result]``. Callers hand it one item at a
time, from any number of threads (:meth:`MicroBatcher.submit`, :meth:`MicroBatcher.__call__`) or
coroutines (:meth:`MicroBatcher.acall`); the batcher queues the items, forms batches and calls
``fn`` on its own worker threads, then delivers each item's result to its caller.

Contract, in short (each point is detailed on the method it belongs to):

* **When a batch fires.** As soon as a worker is free and some group of queued items is *ready*:
  it holds ``max_batch_size`` items, or its oldest item has waited ``max_delay_ms`` (``0``: greedy,
  take whatever is queued). Workers sleep on condition variables with computed timeouts; nothing
  polls. A batch holds items of one ``group_key`` only, oldest first; a request is never split.
* **Threads.** The batcher owns ``max_concurrent_batches`` daemon worker threads named
  ``modelserve-batcher-<id>-<i>`` (``fn`` runs on them, so up to that many calls of ``fn`` run at
  once) plus, once a request carries a deadline, one daemon thread ``modelserve-batcher-<id>-deadlines``
  that fails queued requests when their deadline passes, even while every worker is busy. Futures
  are resolved outside the batcher's lock, so done-callbacks may call back into the batcher.
* **Errors are isolated.** An element of ``fn``'s result that is an exception instance fails only its
  item. If ``fn`` *raises* for a batch of ``n > 1`` items, the batch is bisected and each half run
  again, recursively, so only the items that fail on their own get an exception (the exception that
  ``fn`` raised for that single item). One poisoned item among ``n`` costs about ``2*log2(n)`` extra
  calls; ``k`` poisoned items cost ``O(k log n)``, at most ``2n - 2`` extra calls. ``fn`` must
  therefore be safe to call again with any subset of a batch. A result that is not a list, tuple or
  array (a dict, set, str or generator is never read as results), or whose length differs from the
  batch's, fails every item of that call with a :class:`BatchResultError` (no retry: that is a bug
  in ``fn``, not in an item). ``fn`` raising a ``BaseException`` that is not an ``Exception``
  (``SystemExit``, ...) kills the batch loop: it is logged on the ``modelserve.batcher`` logger,
  every pending request fails with :class:`BatcherClosedError`, and later submits raise it.
* **Bounded.** At most ``max_queue_size`` requests wait (default
  ``8 * max_batch_size * max_concurrent_batches``). When full, ``submit`` raises
  :class:`QueueFullError` at once (``on_full="reject"``) or waits for room (``on_full="block"``;
  ``acall`` then waits without blocking the event loop). A request whose deadline (``timeout_ms``)
  passes before it starts fails with :class:`DeadlineExceededError` and is never run; once it has
  started it runs to completion. A cancelled future frees its queue slot at once and is never run.

Example::

    >>> import modelserve as ms
    >>> def double(xs):
    ...     return [2 * x for x in xs]
    >>> with ms.MicroBatcher(double, max_batch_size=8) as b:
    ...     b(21)
    42
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import math
import numbers
import threading
import time
from collections import abc, deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Generic, Hashable, Literal, Sequence, TypeVar, cast

import numpy as np

from ._errors import (
    BatchResultError,
    BatcherClosedError,
    DeadlineExceededError,
    InvalidInputError,
    QueueFullError,
)

__all__ = ["Batching", "BatcherStats", "MicroBatcher"]

_log = logging.getLogger("modelserve.batcher")

T = TypeVar("T")
R = TypeVar("R")

_MAX_WORKERS = 1024  # max_concurrent_batches: each is an OS thread
_SAMPLES = 4096  # wait/exec time samples kept for percentiles (the most recent ones)
_ids = itertools.count(1)
_monotonic = time.monotonic

# Request states. Only the thread that moves a request out of _QUEUED (under the lock) may
# resolve its future, which is what makes every future resolve exactly once.
_NEW, _QUEUED, _TAKEN, _CANCELLED, _EXPIRED = range(5)


# --------------------------------------------------------------------------------------------
# Options


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_ms(name: str, value: object, *, allow_zero: bool, allow_inf: bool,
              unit: str = "milliseconds") -> float:
    bound = ">= 0" if allow_zero else "> 0"
    kind = "a number" if allow_inf else "a finite number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{name} must be {kind} {bound} ({unit}), got {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float's range (10**400): as good as infinite
        v = math.inf if value > 0 else -math.inf  # type: ignore[operator]
    if math.isnan(v) or v < 0 or (v == 0 and not allow_zero) or (math.isinf(v) and not allow_inf):
        raise InvalidInputError(f"{name} must be {kind} {bound} ({unit}), got {value!r}")
    return v


@dataclass(frozen=True)
class Batching:
    """Options of a :class:`MicroBatcher`, validated on construction (:class:`InvalidInputError`).

    ``max_batch_size``: most items per call of ``fn`` (>= 1).
    ``max_delay_ms``: how long the oldest queued item of a group may wait for companions before
    its batch fires anyway (>= 0; ``0`` is greedy: run whatever is queued as soon as a worker is free).
    ``max_queue_size``: most requests waiting (not yet running); ``None`` means
    ``8 * max_batch_size * max_concurrent_batches`` (see :attr:`queue_bound`).
    ``max_concurrent_batches``: worker threads, i.e. calls of ``fn`` that may run at once (1..1024).
    ``timeout_ms``: default deadline of a request, counted from its submission; ``None`` (or
    ``inf``): no deadline.
    ``on_full``: ``"reject"`` (raise :class:`QueueFullError` at once) or ``"block"`` (wait for room).

    ``MicroBatcher(fn, group_key=key, **dataclasses.asdict(batching))`` builds a batcher from it.
    """

    max_batch_size: int = 32
    max_delay_ms: float = 0.0
    max_queue_size: int | None = None
    max_concurrent_batches: int = 1
    timeout_ms: float | None = None
    on_full: Literal["reject", "block"] = "reject"

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "max_batch_size", _check_int("max_batch_size", self.max_batch_size))
        put(self, "max_delay_ms", _check_ms("max_delay_ms", self.max_delay_ms, allow_zero=True, allow_inf=False))
        if self.max_queue_size is not None:
            put(self, "max_queue_size", _check_int("max_queue_size", self.max_queue_size))
        put(self, "max_concurrent_batches", _check_int("max_concurrent_batches", self.max_concurrent_batches))
        if self.max_concurrent_batches > _MAX_WORKERS:
            raise InvalidInputError(f"max_concurrent_batches must be at most {_MAX_WORKERS} (one thread each), "
                                    f"got {self.max_concurrent_batches}")
        if self.timeout_ms is not None:
            put(self, "timeout_ms", _check_ms("timeout_ms", self.timeout_ms, allow_zero=False, allow_inf=True))
        if self.on_full not in ("reject", "block"):
            raise InvalidInputError(f"on_full must be 'reject' or 'block', got {self.on_full!r}")

    @property
    def queue_bound(self) -> int:
        """The effective queue bound: ``max_queue_size``, or its default when that is ``None``."""
        if self.max_queue_size is not None:
            return self.max_queue_size
        return 8 * self.max_batch_size * self.max_concurrent_batches


@dataclass(frozen=True)
class BatcherStats:
    """A snapshot of a :class:`MicroBatcher`'s counters (all since construction).

    Every accepted request ends in exactly one of ``succeeded``, ``failed`` (``fn`` failed it),
    ``expired`` (deadline passed before it ran), ``cancelled`` (never ran) or ``aborted`` (failed
    by ``close`` or a dead loop before it ran); until then it is queued or running. So
    ``submitted == succeeded + failed + expired + cancelled + aborted + queue_depth + <running>``.
    ``rejected`` counts :class:`QueueFullError` refusals, which are not in ``submitted``.
    ``fn_calls - batches`` is the number of extra calls made to isolate failing items.
    Wait time is submission to start of its batch; exec time is one batch from first call of ``fn``
    to last (retries included). Percentiles cover the most recent 4096 samples; ``None`` if none.
    """

    queue_depth: int
    in_flight_batches: int
    submitted: int
    batches: int
    items: int
    fn_calls: int
    batch_size_histogram: dict[int, int]
    succeeded: int
    failed: int
    rejected: int
    expired: int
    cancelled: int
    aborted: int
    wait_ms_p50: float | None
    wait_ms_p99: float | None
    exec_ms_p50: float | None
    exec_ms_p99: float | None
    closed: bool

    @property
    def mean_batch_size(self) -> float:
        """Items run per batch, on average (``0.0`` before the first batch)."""
        return self.items / self.batches if self.batches else 0.0


def _percentile_ms(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    samples.sort()
    rank = min(len(samples) - 1, max(0, math.ceil(q * len(samples)) - 1))
    return samples[rank] * 1000.0


# --------------------------------------------------------------------------------------------
# Internals


class _Group:
    """The queue of one group key. ``live`` counts its _QUEUED requests; ``dead`` counts cancelled
    or expired ones still sitting in ``queue`` (skipped when met, compacted when they pile up)."""

    __slots__ = ("key", "queue", "live", "dead")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.queue: deque[_Request] = deque()
        self.live = 0
        self.dead = 0


class _Request:
    """One queued item. Once its future is resolved the request lets go of the item and the
    future (``item`` and ``future`` become None): the deadline heap may keep the request itself
    until its deadline, and must not keep a caller's input or result alive that long."""

    __slots__ = ("item", "future", "key", "group", "enqueued", "deadline", "timeout_ms", "state")

    def __init__(self, item: Any, future: Future, key: Hashable, enqueued: float,
                 timeout_ms: float | None) -> None:
        self.item = item
        self.future: Future | None = future
        self.key = key
        self.group: _Group | None = None
        self.enqueued = enqueued
        self.timeout_ms = timeout_ms
        self.deadline = None if timeout_ms is None else enqueued + timeout_ms / 1000.0
        self.state = _NEW

    def release(self) -> Future:
        """The future, to be resolved by the caller; the request keeps neither it nor the item."""
        future = cast(Future, self.future)
        self.item = self.future = None
        return future


class _RequestFuture(Future):
    """A Future whose successful ``cancel()`` also frees the request's queue slot at once."""

    _ms_batcher: MicroBatcher | None = None
    _ms_request: _Request | None = None

    def cancel(self) -> bool:
        cancelled = super().cancel()
        batcher = self._ms_batcher
        if cancelled and batcher is not None:
            batcher._on_cancel(self._ms_request)  # type: ignore[arg-type]
        return cancelled


def _as_results(results: object) -> list[Any] | None:
    """``fn``'s result as a list, or None unless it is an ordered sequence of results: a list,
    a tuple, a numpy array with at least one dimension, or another ``Sequence`` that is not text
    or bytes. A dict, set, str or generator of the right length is refused, never read as results
    (a dict would hand out its keys)."""
    if isinstance(results, (list, tuple)):
        return list(results)
    if isinstance(results, np.ndarray):
        return list(results) if results.ndim >= 1 else None
    if isinstance(results, (str, bytes, bytearray, memoryview)) or not isinstance(results, abc.Sequence):
        return None
    try:
        return list(results)
    except Exception:  # noqa: BLE001 - a broken sequence is a broken result
        return None


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


#: The longest single wait on a condition or a thread. Every wait sits in a loop that checks
#: its condition again, so a longer timeout (a deadline of years) is waited out in pieces; the
#: C-level lock cannot take timeouts beyond ``threading.TIMEOUT_MAX`` (``OverflowError``).
_MAX_WAIT_S = 3600.0


def _wait_arg(remaining: float | None) -> float | None:
    """A timeout Condition.wait / Thread.join accept: ``None`` for 'forever' (``None`` or
    ``inf``), else ``remaining`` clamped to ``[0, _MAX_WAIT_S]``."""
    if remaining is None or remaining == math.inf:
        return None
    return min(max(remaining, 0.0), _MAX_WAIT_S)


# --------------------------------------------------------------------------------------------
# The batcher


class MicroBatcher(Generic[T, R]):
    """Batch concurrent one-item calls into calls of ``fn(items) -> results``.

    ``fn`` receives a ``list`` of 1 to ``max_batch_size`` items (all with the same ``group_key``,
    oldest first) and returns a list, tuple or array of as many results, in order; an element may be an
    exception instance, which fails just that item. ``fn`` runs on the batcher's worker threads, up
    to ``max_concurrent_batches`` calls at once, and must be safe to call again with a subset of a
    batch (see the module docstring on error isolation). ``group_key(item)`` (called in the
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
        config = Batching(
            max_batch_size=max_batch_size,
            max_delay_ms=max_delay_ms,
            max_queue_size=max_queue_size,
            max_concurrent_batches=max_concurrent_batches,
            timeout_ms=timeout_ms,
            on_full=on_full,
        )
        self._fn = fn
        self._group_key = group_key
        self._config = config
        self._max_batch = config.max_batch_size
        self._delay_s = config.max_delay_ms / 1000.0
        self._bound = config.queue_bound
        self._default_timeout_ms = (
            None if config.timeout_ms is None or math.isinf(config.timeout_ms) else config.timeout_ms
        )
        self._block = config.on_full == "block"
        self._name = f"modelserve-batcher-{next(_ids)}"

        lock = threading.Lock()
        self._lock = lock
        self._work_cv = threading.Condition(lock)  # workers: a batch may be ready / close / resume
        self._space_cv = threading.Condition(lock)  # blocked submitters: room in the queue / close
        self._queued_cv = threading.Condition(lock)  # wait_queued()
        self._drained_cv = threading.Condition(lock)  # close(): queue empty and no batch running
        self._reaper_cv = threading.Condition(lock)  # deadline thread: an earlier deadline / close

        self._groups: dict[Hashable, _Group] = {}
        self._live = 0  # queued requests (the bounded quantity)
        self._inflight = 0  # batches taken and not yet resolved
        self._idle = 0  # workers waiting on _work_cv
        self._paused = False
        self._closed = False
        self._dead: BaseException | None = None
        self._deadlines: list[tuple[float, int, _Request]] = []  # heap; stale entries skipped
        self._seq = itertools.count()
        self._reaper: threading.Thread | None = None
        self._reaper_wake = -math.inf  # when the deadline thread next wakes by itself
        self._space_waiters = 0
        self._queued_waiters = 0
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

        self._submitted = 0
        self._batches = 0
        self._items = 0
        self._fn_calls = 0
        self._hist: dict[int, int] = {}
        self._succeeded = 0
        self._failed = 0
        self._rejected = 0
        self._expired = 0
        self._cancelled = 0
        self._aborted = 0
        self._wait_samples: deque[float] = deque(maxlen=_SAMPLES)
        self._exec_samples: deque[float] = deque(maxlen=_SAMPLES)

        self._workers = [
            threading.Thread(target=self._worker_loop, name=f"{self._name}-{i}", daemon=True)
            for i in range(config.max_concurrent_batches)
        ]
        for thread in self._workers:
            thread.start()

    # ---------------------------------------------------------------- public API

    @property
    def config(self) -> Batching:
        """The validated options this batcher runs with."""
        return self._config

    @property
    def name(self) -> str:
        """``modelserve-batcher-<id>``, the prefix of its threads' names."""
        return self._name

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the batch loop died."""
        return self._closed

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
        with self._lock:
            self._check_open_locked()
            if self._live >= self._bound:
                if not blocking:
                    self._rejected += 1
                    raise QueueFullError(
                        f"{self._name}: queue full ({self._live} of max_queue_size={self._bound} requests"
                        " waiting); retry later, add capacity, or use on_full='block'"
                    )
                if not self._wait_for_space_locked(req):
                    req.state = _EXPIRED
                    self._submitted += 1
                    self._expired += 1
                    expired = True
                else:
                    expired = False
            else:
                expired = False
            if not expired:
                self._enqueue_locked(req)
        if expired:
            self._fail_unrun([req], self._deadline_error, "_expired")
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

    def stats(self) -> BatcherStats:
        """A consistent snapshot of the counters (see :class:`BatcherStats`)."""
        with self._lock:
            waits = list(self._wait_samples)
            execs = list(self._exec_samples)
            snapshot = BatcherStats(
                queue_depth=self._live,
                in_flight_batches=self._inflight,
                submitted=self._submitted,
                batches=self._batches,
                items=self._items,
                fn_calls=self._fn_calls,
                batch_size_histogram=dict(sorted(self._hist.items())),
                succeeded=self._succeeded,
                failed=self._failed,
                rejected=self._rejected,
                expired=self._expired,
                cancelled=self._cancelled,
                aborted=self._aborted,
                wait_ms_p50=None,
                wait_ms_p99=None,
                exec_ms_p50=None,
                exec_ms_p99=None,
                closed=self._closed,
            )
        return dataclasses.replace(  # percentiles sorted outside the lock
            snapshot,
            wait_ms_p50=_percentile_ms(waits, 0.50),
            wait_ms_p99=_percentile_ms(waits, 0.99),
            exec_ms_p50=_percentile_ms(execs, 0.50),
            exec_ms_p99=_percentile_ms(execs, 0.99),
        )

    def close(self, drain: bool = True, timeout_s: float = 30.0) -> None:
        """Stop taking requests; finish (``drain=True``) or fail (``drain=False``) the queued ones.

        After it starts, :meth:`submit` raises :class:`BatcherClosedError`, and so do submitters
        blocked on a full queue. With ``drain=True`` the queued requests run (without waiting for
        ``max_delay_ms``, and even if :meth:`pause` was called) until the queue is empty or
        ``timeout_s`` has passed; those still queued then fail with :class:`BatcherClosedError`.
        With ``drain=False`` every queued request fails so at once. Batches already running cannot
        be interrupted: ``close`` waits for them within the same ``timeout_s`` and returns anyway
        when it passes (their futures resolve when ``fn`` returns). Idempotent; called from
        inside ``fn`` it does not wait.
        """
        timeout = _check_ms("timeout_s", timeout_s, allow_zero=True, allow_inf=True, unit="seconds")
        end = _monotonic() + timeout
        with self._lock:
            self._closed = True
            self._paused = False
            unrun = [] if drain else self._take_all_locked()
            self._notify_all_locked()
        self._fail_unrun(unrun, lambda r: BatcherClosedError(
            f"{self._name} was closed with drain=False before this request ran"), "_aborted")
        me = threading.current_thread()
        if me in self._workers or me is self._reaper:
            return
        with self._lock:
            while (self._live or self._inflight) and self._dead is None:
                remaining = end - _monotonic()
                if remaining <= 0:
                    break
                self._drained_cv.wait(_wait_arg(remaining))
            unrun = self._take_all_locked()
            self._notify_all_locked()
        self._fail_unrun(unrun, lambda r: BatcherClosedError(
            f"{self._name}.close(timeout_s={timeout:g}) ran out of time before this request ran"), "_aborted")
        threads = [*self._workers, *([self._reaper] if self._reaper is not None else [])]
        for thread in threads:
            while thread.is_alive():
                remaining = end - _monotonic()
                if remaining <= 0:
                    return
                thread.join(_wait_arg(remaining))

    def __enter__(self) -> MicroBatcher[T, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(drain=True)

    def __repr__(self) -> str:
        c = self._config
        state = "dead" if self._dead is not None else "closed" if self._closed else "open"
        return (f"<MicroBatcher {self._name} {state} max_batch_size={c.max_batch_size} "
                f"max_delay_ms={c.max_delay_ms:g} queued={self._live} in_flight={self._inflight}>")

    # ---------------------------------------------------------------- testing aids

    def pause(self) -> None:
        """Testing/operations aid: stop forming new batches (running ones finish).

        Requests still queue (up to the bound), expire and can be cancelled. With
        :meth:`wait_queued` this makes batch composition deterministic::

            b.pause(); [submit from N threads]; b.wait_queued(N); b.resume()
        """
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        """Undo :meth:`pause`: batches form again at once from what is queued."""
        with self._lock:
            self._paused = False
            self._work_cv.notify_all()

    def wait_queued(self, n: int, timeout_s: float | None = 10.0) -> bool:
        """Testing aid: block until at least ``n`` requests are queued; False on timeout.

        Meant to be used while :meth:`pause`\\ d (otherwise workers keep draining the queue).
        """
        end = math.inf if timeout_s is None else _monotonic() + timeout_s
        with self._lock:
            while self._live < n:
                remaining = end - _monotonic()
                if remaining <= 0:
                    return False
                self._queued_waiters += 1
                try:
                    self._queued_cv.wait(_wait_arg(remaining))
                finally:
                    self._queued_waiters -= 1
            return True

    # ---------------------------------------------------------------- submission internals

    def _new_request(self, item: Any, timeout_ms: float | None) -> _Request:
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
            t_ms = _check_ms("timeout_ms", timeout_ms, allow_zero=False, allow_inf=True)
            if math.isinf(t_ms):
                t_ms = None
        future = _RequestFuture()
        req = _Request(item, future, key, _monotonic(), t_ms)
        future._ms_batcher = self
        future._ms_request = req
        return req

    def _check_open_locked(self) -> None:
        if self._dead is not None:
            raise BatcherClosedError(
                f"{self._name}: the batch loop died ({self._dead!r}); create a new batcher"
            ) from self._dead
        if self._closed:
            raise BatcherClosedError(f"{self._name} is closed; submit() after close()")

    def _wait_for_space_locked(self, req: _Request) -> bool:
        """on_full='block': wait for room. True: room; False: the deadline passed."""
        while self._live >= self._bound:
            if req.deadline is None:
                remaining = None
            else:
                remaining = req.deadline - _monotonic()
                if remaining <= 0:
                    return False
            self._space_waiters += 1
            try:
                self._space_cv.wait(_wait_arg(remaining))
            finally:
                self._space_waiters -= 1
            self._check_open_locked()
        return True

    async def _asubmit_blocking(self, item: Any, timeout_ms: float | None,
                                loop: asyncio.AbstractEventLoop) -> Future:
        req = self._new_request(item, timeout_ms)
        future = cast(Future, req.future)
        while True:
            with self._lock:
                self._check_open_locked()
                if self._live < self._bound:
                    self._enqueue_locked(req)
                    return future
                remaining = None if req.deadline is None else req.deadline - _monotonic()
                if remaining is not None and remaining <= 0:
                    req.state = _EXPIRED
                    self._submitted += 1
                    self._expired += 1
                    break
                waiter = loop.create_future()
                self._async_waiters.append((loop, waiter))
            try:
                await asyncio.wait_for(waiter, _wait_arg(remaining))
            except (TimeoutError, asyncio.TimeoutError):  # distinct classes before Python 3.11
                pass
            finally:
                if not waiter.done() or waiter.cancelled():  # not woken: unregister it
                    with self._lock:
                        try:
                            self._async_waiters.remove((loop, waiter))
                        except ValueError:
                            pass
        self._fail_unrun([req], self._deadline_error, "_expired")
        return future

    def _enqueue_locked(self, req: _Request) -> None:
        group = self._groups.get(req.key)
        if group is None:
            group = self._groups[req.key] = _Group(req.key)
        was_empty = self._live == 0
        req.group = group
        req.state = _QUEUED
        group.queue.append(req)
        group.live += 1
        self._live += 1
        self._submitted += 1
        if req.deadline is not None:
            heap = self._deadlines
            heapq.heappush(heap, (req.deadline, next(self._seq), req))
            if len(heap) > 2 * self._live + 1024:  # drop entries of requests no longer queued
                heap[:] = [e for e in heap if e[2].state == _QUEUED]
                heapq.heapify(heap)
            if req.deadline < self._reaper_wake or self._reaper is None:
                if self._reaper is None:
                    self._reaper = threading.Thread(
                        target=self._reaper_loop, name=f"{self._name}-deadlines", daemon=True)
                    self._reaper.start()
                else:
                    self._reaper_cv.notify()
        # Wake a worker only if this request can change what it is waiting for: a batch became
        # ready (greedy mode, or the group is full) or the queue was empty (no timeout running).
        if self._idle and not self._paused and (
                self._delay_s == 0 or group.live >= self._max_batch or was_empty):
            self._work_cv.notify()
        if self._queued_waiters:
            self._queued_cv.notify_all()

    def _on_cancel(self, req: _Request) -> None:
        with self._lock:
            if req.state != _QUEUED:
                return  # not queued (yet/any more): whoever took it sees the cancellation
            req.state = _CANCELLED
            self._cancelled += 1
            self._unqueue_dead_locked(req)
        # What an executor does when it dequeues a cancelled future: without it,
        # concurrent.futures.wait() and as_completed() would never see this one as done.
        req.release().set_running_or_notify_cancel()

    def _unqueue_dead_locked(self, req: _Request) -> None:
        group = cast(_Group, req.group)  # a _QUEUED request always has its group
        group.live -= 1
        group.dead += 1
        self._live -= 1
        if group.dead > 64 and group.dead > group.live:
            group.queue = deque(r for r in group.queue if r.state == _QUEUED)
            group.dead = 0
        self._space_freed_locked()

    def _space_freed_locked(self) -> None:
        if self._space_waiters:
            self._space_cv.notify_all()
        if self._async_waiters:
            self._wake_async_locked()
        if self._closed:
            self._drained_cv.notify_all()
            if self._live == 0:
                self._reaper_cv.notify()  # nothing left to expire: let the deadline thread exit

    def _wake_async_locked(self) -> None:
        waiters, self._async_waiters = self._async_waiters, []
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # that loop is closed; nobody waits any more
                pass

    def _notify_all_locked(self) -> None:
        for cv in (self._work_cv, self._space_cv, self._queued_cv, self._drained_cv, self._reaper_cv):
            cv.notify_all()
        if self._async_waiters:
            self._wake_async_locked()

    def _take_all_locked(self) -> list[_Request]:
        """Take every queued request (to fail it); counts them as aborted."""
        taken = []
        for group in self._groups.values():
            for r in group.queue:
                if r.state == _QUEUED:
                    r.state = _TAKEN
                    taken.append(r)
        self._groups.clear()
        self._deadlines.clear()
        self._live = 0
        self._aborted += len(taken)
        self._space_freed_locked()
        return taken

    def _deadline_error(self, req: _Request) -> DeadlineExceededError:
        waited = (_monotonic() - req.enqueued) * 1000.0
        return DeadlineExceededError(
            f"request was not started within its timeout_ms={req.timeout_ms:g} "
            f"(waited {waited:.1f} ms); it was never run"
        )

    def _fail_unrun(self, reqs: list[_Request], make_error: Callable[[_Request], BaseException],
                    counter: str) -> None:
        """Fail requests this thread took before they ran (outside the lock). Those cancelled in
        the meantime are moved from ``counter`` to the cancelled count."""
        late = 0
        for r in reqs:
            future = r.release()
            if future.set_running_or_notify_cancel():
                future.set_exception(make_error(r))
            else:
                late += 1
        if late:
            with self._lock:
                setattr(self, counter, getattr(self, counter) - late)
                self._cancelled += late

    # ---------------------------------------------------------------- worker internals

    def _worker_loop(self) -> None:
        batch: list[_Request] = []
        running = False
        try:
            while True:
                expired: list[_Request] = []
                with self._lock:
                    if running:
                        self._inflight -= 1
                        running = False
                        if self._closed:
                            self._drained_cv.notify_all()
                    taken = self._next_batch_locked(expired)
                    if taken is None:
                        return
                    batch = taken
                    self._inflight += 1
                    running = True
                if expired:
                    self._fail_unrun(expired, self._deadline_error, "_expired")
                self._run_batch(batch)
                batch = []
        except BaseException as exc:  # never die silently: fail everything, refuse new work
            self._die(exc, batch)

    def _next_batch_locked(self, expired: list[_Request]) -> list[_Request] | None:
        """Wait for a ready group and take a batch from it; None when the worker should exit."""
        while True:
            if self._dead is not None or (self._closed and self._live == 0):
                return None
            timeout: float | None = None
            if not self._paused or self._closed:
                now = _monotonic()
                group, timeout = self._ready_group_locked(now)
                if group is not None:
                    batch = self._take_locked(group, now, expired)
                    if self._live and self._idle:
                        self._work_cv.notify()  # more may be ready for another worker
                    if batch or expired:
                        return batch
                    continue
            self._idle += 1
            try:
                self._work_cv.wait(_wait_arg(timeout))
            finally:
                self._idle -= 1

    def _ready_group_locked(self, now: float) -> tuple[_Group | None, float | None]:
        """The ready group with the oldest head, or None and how long until one is ready."""
        best: _Group | None = None
        best_t = math.inf
        next_ready = math.inf
        empty = []
        force = self._closed  # draining: do not wait for max_delay_ms
        delay = self._delay_s
        for key, group in self._groups.items():
            queue = group.queue
            while queue and queue[0].state != _QUEUED:
                queue.popleft()
                group.dead -= 1
            if not queue:
                empty.append(key)
                continue
            head_t = queue[0].enqueued
            if force or group.live >= self._max_batch or head_t + delay <= now:
                if head_t < best_t:
                    best, best_t = group, head_t
            elif head_t + delay < next_ready:
                next_ready = head_t + delay
        for key in empty:
            del self._groups[key]
        if best is not None or next_ready == math.inf:
            return best, None
        return None, next_ready - now

    def _take_locked(self, group: _Group, now: float, expired: list[_Request]) -> list[_Request]:
        queue = group.queue
        batch: list[_Request] = []
        n_expired = 0
        while queue and len(batch) < self._max_batch:
            r = queue.popleft()
            if r.state != _QUEUED:
                group.dead -= 1
                continue
            group.live -= 1
            self._live -= 1
            if r.deadline is not None and r.deadline <= now:
                r.state = _EXPIRED
                expired.append(r)
                n_expired += 1
                continue
            r.state = _TAKEN
            batch.append(r)
        self._expired += n_expired
        if not queue:
            del self._groups[group.key]
        self._space_freed_locked()
        return batch

    def _run_batch(self, batch: list[_Request]) -> None:
        run = []
        for r in batch:
            if cast(Future, r.future).set_running_or_notify_cancel():
                run.append(r)
            else:  # cancelled after it was taken: never run
                r.release()
        late_cancelled = len(batch) - len(run)
        outcomes: list[tuple[_Request, BaseException | None, Any]] = []
        calls = 0
        t0 = _monotonic()
        if run:
            calls = self._execute(run, outcomes)
        t1 = _monotonic()
        n_failed = sum(1 for _, exc, _ in outcomes if exc is not None)
        with self._lock:  # count before resolving, so a caller who sees its result sees the stats
            self._cancelled += late_cancelled
            if run:
                n = len(run)
                self._batches += 1
                self._items += n
                self._fn_calls += calls
                self._hist[n] = self._hist.get(n, 0) + 1
                self._succeeded += n - n_failed
                self._failed += n_failed
                self._wait_samples.extend(t0 - r.enqueued for r in run)
                self._exec_samples.append(t1 - t0)
        for r, exc, value in outcomes:
            future = r.release()  # the deadline heap may hold r for long
            if exc is None:
                future.set_result(value)
            else:
                future.set_exception(exc)

    def _execute(self, reqs: list[_Request],
                 outcomes: list[tuple[_Request, BaseException | None, Any]]) -> int:
        """Call fn on reqs; on an exception bisect and retry. Returns the number of calls."""
        n = len(reqs)
        try:
            results = self._fn([r.item for r in reqs])
        except Exception as exc:
            if n == 1:
                outcomes.append((reqs[0], exc, None))
                return 1
            mid = n // 2
            return 1 + self._execute(reqs[:mid], outcomes) + self._execute(reqs[mid:], outcomes)
        values = _as_results(results)
        if values is None or len(values) != n:
            got = (f"a {type(results).__name__} of length {len(values)}" if values is not None
                   else f"a {type(results).__name__} (not a sequence)")
            message = (f"{self._name}: fn returned {got} for a batch of {n} items; expected a "
                       f"sequence of {n} results, one per item (an exception instance fails just that item)")
            outcomes.extend((r, BatchResultError(message), None) for r in reqs)
            return 1
        for r, value in zip(reqs, values):
            if isinstance(value, BaseException):
                outcomes.append((r, value, None))
            else:
                outcomes.append((r, None, value))
        return 1

    def _reaper_loop(self) -> None:
        try:
            while True:
                expired: list[_Request] = []
                with self._lock:
                    while True:
                        if self._dead is not None or (self._closed and self._live == 0):
                            return
                        now = _monotonic()
                        heap = self._deadlines
                        while heap and heap[0][0] <= now:
                            r = heapq.heappop(heap)[2]
                            if r.state == _QUEUED:
                                r.state = _EXPIRED
                                expired.append(r)
                                self._unqueue_dead_locked(r)
                        if expired:
                            self._expired += len(expired)
                            self._reaper_wake = -math.inf
                            break
                        self._reaper_wake = heap[0][0] if heap else math.inf
                        self._reaper_cv.wait(_wait_arg(heap[0][0] - now if heap else None))
                        self._reaper_wake = -math.inf
                self._fail_unrun(expired, self._deadline_error, "_expired")
        except BaseException as exc:
            self._die(exc, [])

    def _die(self, exc: BaseException, batch: list[_Request]) -> None:
        _log.error("%s: batch loop died; failing all pending requests", self._name,
                   exc_info=(type(exc), exc, exc.__traceback__))
        unfinished = [r for r in batch if r.future is not None and not r.future.done()]
        with self._lock:
            if self._dead is None:
                self._dead = exc
            self._closed = True
            pending = self._take_all_locked()
            self._aborted += len(unfinished)
            self._notify_all_locked()
        for r in [*unfinished, *pending]:
            future = r.future
            if future is None or future.done():
                continue
            error = BatcherClosedError(f"{self._name}: the batch loop died ({exc!r}) before this request completed")
            error.__cause__ = exc
            try:
                if future.running() or future.set_running_or_notify_cancel():
                    future.set_exception(error)
            except Exception:  # resolved meanwhile; nothing left to do
                pass
