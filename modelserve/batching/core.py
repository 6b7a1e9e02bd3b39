"""The batcher's pure core: admission, the bounded queue, deadlines, grouping and cancellation
bookkeeping. No threads, no locks, no waiting: the time comes from an injectable ``clock`` (or
is passed in as ``now``), and every method returns at once.

:class:`BatchQueue` is not thread-safe; :class:`~modelserve.MicroBatcher` calls it under its
lock and does everything around it (waking threads, resolving futures, calling ``fn``).

A request moves through :class:`State` once: ``NEW`` -> ``QUEUED`` -> one of ``TAKEN`` (for a
batch, or to be failed by ``close``), ``CANCELLED`` or ``EXPIRED``. Only the code that moves it
out of ``QUEUED`` may resolve its future, which is what makes every future resolve exactly once.

Example (a fake clock; nothing sleeps)::

    >>> t = [0.0]
    >>> q = BatchQueue(max_batch_size=2, max_delay_ms=10, bound=8, clock=lambda: t[0])
    >>> for x in "abc":
    ...     q.admit(q.new_request(x, None, key=None, timeout_ms=None))
    True
    True
    True
    >>> [r.item for r in q.take_batch().batch]     # a full group fires at once
    ['a', 'b']
    >>> q.take_batch().wait_s                      # 'c' waits up to 10 ms for a companion
    0.01
    >>> t[0] = 0.01; [r.item for r in q.take_batch().batch]
    ['c']
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Hashable, NamedTuple

from .._errors import DeadlineExceededError
from .stats import Counters, Outcome

__all__ = ["BatchQueue", "Group", "Request", "State", "Taken"]


class State(enum.Enum):
    NEW = "new"  # built, not yet admitted
    QUEUED = "queued"  # waiting in its group
    TAKEN = "taken"  # out of the queue, to run (or to be failed by close / a dead loop)
    CANCELLED = "cancelled"  # its future was cancelled while queued
    EXPIRED = "expired"  # its deadline passed before it was taken


class Request:
    """One item. Once its future is resolved the request lets go of the item and the future
    (:meth:`release`): the deadline heap may keep the request itself until its deadline, and must
    not keep a caller's input or result alive that long."""

    __slots__ = ("item", "future", "key", "group", "enqueued", "deadline", "timeout_ms", "state")

    def __init__(self, item: Any, future: Future | None, key: Hashable, enqueued: float,
                 timeout_ms: float | None) -> None:
        self.item = item
        self.future = future
        self.key = key
        self.group: Group | None = None
        self.enqueued = enqueued
        self.timeout_ms = timeout_ms  # None: no deadline
        self.deadline = None if timeout_ms is None else enqueued + timeout_ms / 1000.0
        self.state = State.NEW

    def release(self) -> Future:
        """The future, for the caller to resolve; the request keeps neither it nor the item."""
        future = self.future
        if future is None:
            raise RuntimeError("request released twice")  # a bug in the batcher, never a user's
        self.item = self.future = None
        return future


class Group:
    """The queue of one group key. ``live`` counts its queued requests; ``dead`` counts cancelled
    or expired ones still sitting in ``queue`` (skipped when met, compacted when they pile up)."""

    __slots__ = ("key", "queue", "live", "dead")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.queue: deque[Request] = deque()
        self.live = 0
        self.dead = 0


class Taken(NamedTuple):
    """What :meth:`BatchQueue.take_batch` took: ``batch`` to run (one group, oldest first) and
    ``expired`` requests met on the way (to fail). When both are empty nothing is ready, and
    ``wait_s`` says when the next group will be (``None``: nothing is queued)."""

    batch: list[Request]
    expired: list[Request]
    wait_s: float | None


#: Dead entries a group keeps before it is compacted (and only while they outnumber the live).
_COMPACT_DEAD = 64
#: Stale deadline-heap entries tolerated beyond twice the queued count before the heap is rebuilt.
_COMPACT_HEAP = 1024


class BatchQueue:
    """The bounded, grouped queue of a batcher and its counters.

    ``max_batch_size``: most requests per batch. ``max_delay_ms``: how long a group's oldest
    request waits for companions (``0``: a group is ready as soon as it has one). ``bound``: most
    queued requests (:attr:`full`; the caller enforces it before :meth:`admit`). ``clock``: the
    monotonic time in seconds (``time.monotonic``; a fake one in tests).
    """

    def __init__(self, *, max_batch_size: int, max_delay_ms: float, bound: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.max_batch = max_batch_size
        self.delay_s = max_delay_ms / 1000.0
        self.bound = bound
        self.counters = Counters()
        self.groups: dict[Hashable, Group] = {}
        self.live = 0  # queued requests (the bounded quantity)
        self.deadlines: list[tuple[float, int, Request]] = []  # a heap; stale entries skipped
        self._seq = itertools.count()

    # ---------------------------------------------------------------- admission

    def new_request(self, item: Any, future: Future | None, key: Hashable,
                    timeout_ms: float | None) -> Request:
        """A request submitted now (its wait and deadline count from here)."""
        return Request(item, future, key, self.clock(), timeout_ms)

    @property
    def full(self) -> bool:
        """No room for one more request."""
        return self.live >= self.bound

    def reject(self) -> None:
        """Count a request refused because the queue was full (it is not admitted)."""
        self.counters.rejected += 1

    def admit(self, req: Request) -> bool:
        """Queue ``req`` in its group. True if a waiting worker should look again: a batch became
        ready (greedy mode or a full group) or the queue was empty (no worker has a timeout)."""
        group = self.groups.get(req.key)
        if group is None:
            group = self.groups[req.key] = Group(req.key)
        was_empty = self.live == 0
        req.group = group
        req.state = State.QUEUED
        group.queue.append(req)
        group.live += 1
        self.live += 1
        self.counters.submitted += 1
        if req.deadline is not None:
            heap = self.deadlines
            heapq.heappush(heap, (req.deadline, next(self._seq), req))
            if len(heap) > 2 * self.live + _COMPACT_HEAP:  # drop entries of requests no longer queued
                heap[:] = [e for e in heap if e[2].state is State.QUEUED]
                heapq.heapify(heap)
        return self.delay_s == 0 or group.live >= self.max_batch or was_empty

    def expire_unadmitted(self, req: Request) -> None:
        """``req`` waited for room and its deadline passed first: it counts as submitted and
        expired, and was never queued."""
        req.state = State.EXPIRED
        self.counters.submitted += 1
        self.counters.end(Outcome.EXPIRED)

    # ---------------------------------------------------------------- leaving the queue early

    def cancel(self, req: Request) -> bool:
        """Take a cancelled request out of the queue. False if it is not queued (not yet, or
        already taken, expired or cancelled): whoever moved it on sees the cancellation."""
        if req.state is not State.QUEUED:
            return False
        req.state = State.CANCELLED
        self.counters.end(Outcome.CANCELLED)
        self._unqueue_dead(req)
        return True

    def expire_due(self, now: float | None = None) -> list[Request]:
        """Expire every queued request whose deadline is at or before ``now``; returns them."""
        now = self.clock() if now is None else now
        heap = self.deadlines
        expired = []
        while heap and heap[0][0] <= now:
            r = heapq.heappop(heap)[2]
            if r.state is State.QUEUED:
                r.state = State.EXPIRED
                expired.append(r)
                self._unqueue_dead(r)
        if expired:
            self.counters.end(Outcome.EXPIRED, len(expired))
        return expired

    def next_deadline(self) -> float | None:
        """The earliest deadline in the heap (possibly of a request no longer queued), or None."""
        return self.deadlines[0][0] if self.deadlines else None

    def take_all(self) -> list[Request]:
        """Take every queued request (to be failed); they count as aborted."""
        taken = []
        for group in self.groups.values():
            for r in group.queue:
                if r.state is State.QUEUED:
                    r.state = State.TAKEN
                    taken.append(r)
        self.groups.clear()
        self.deadlines.clear()
        self.live = 0
        self.counters.end(Outcome.ABORTED, len(taken))
        return taken

    def _unqueue_dead(self, req: Request) -> None:
        group = req.group
        if group is None:  # a queued request always has its group
            raise RuntimeError("queued request without a group")
        group.live -= 1
        group.dead += 1
        self.live -= 1
        if group.dead > _COMPACT_DEAD and group.dead > group.live:
            group.queue = deque(r for r in group.queue if r.state is State.QUEUED)
            group.dead = 0

    # ---------------------------------------------------------------- batches

    def take_batch(self, now: float | None = None, *, drain: bool = False) -> Taken:
        """Take a batch from the ready group whose oldest request is oldest.

        A group is ready when it holds ``max_batch_size`` requests, its oldest has waited
        ``max_delay_ms``, or ``drain`` (closing: do not wait for companions). Requests whose
        deadline has passed are expired on the way, not run.
        """
        now = self.clock() if now is None else now
        while True:
            group, wait_s = self._ready_group(now, drain)
            if group is None:
                return Taken([], [], wait_s)
            batch, expired = self._take(group, now)
            if batch or expired:
                return Taken(batch, expired, None)

    def _ready_group(self, now: float, drain: bool) -> tuple[Group | None, float | None]:
        """The ready group with the oldest head, or None and how long until one is ready."""
        best: Group | None = None
        best_t = math.inf
        next_ready = math.inf
        empty = []
        delay = self.delay_s
        for key, group in self.groups.items():
            queue = group.queue
            while queue and queue[0].state is not State.QUEUED:
                queue.popleft()
                group.dead -= 1
            if not queue:
                empty.append(key)
                continue
            head_t = queue[0].enqueued
            if drain or group.live >= self.max_batch or head_t + delay <= now:
                if head_t < best_t:
                    best, best_t = group, head_t
            elif head_t + delay < next_ready:
                next_ready = head_t + delay
        for key in empty:
            del self.groups[key]
        if best is not None or next_ready == math.inf:
            return best, None
        return None, next_ready - now

    def _take(self, group: Group, now: float) -> tuple[list[Request], list[Request]]:
        queue = group.queue
        batch: list[Request] = []
        expired: list[Request] = []
        while queue and len(batch) < self.max_batch:
            r = queue.popleft()
            if r.state is not State.QUEUED:
                group.dead -= 1
                continue
            group.live -= 1
            self.live -= 1
            if r.deadline is not None and r.deadline <= now:
                r.state = State.EXPIRED
                expired.append(r)
                continue
            r.state = State.TAKEN
            batch.append(r)
        if expired:
            self.counters.end(Outcome.EXPIRED, len(expired))
        if not queue:
            del self.groups[group.key]
        return batch, expired

    # ---------------------------------------------------------------- errors

    def deadline_error(self, req: Request, now: float | None = None) -> DeadlineExceededError:
        """The error an expired request fails with."""
        waited = ((self.clock() if now is None else now) - req.enqueued) * 1000.0
        return DeadlineExceededError(
            f"request was not started within its timeout_ms={req.timeout_ms:g} "
            f"(waited {waited:.1f} ms); it was never run"
        )
