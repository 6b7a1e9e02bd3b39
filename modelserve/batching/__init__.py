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

Modules, each with one job:

==============  ==================================================================================
``options``     :class:`Batching`, the options and their validation
``core``        the pure queue: admission, bound, deadlines, grouping, cancellation (no threads;
                an injectable clock)
``execute``     calling ``fn`` with error isolation (bisection, result checks)
``stats``       the counters and their snapshot, :class:`BatcherStats`
``state``       what the threads share under one lock: flags, conditions, wake-ups
``threads``     the worker threads and the deadline thread
``batcher``     :class:`MicroBatcher`: submission, futures, ``close``
``testing``     test-only hooks (``batcher._testing``: pause, resume, wait_queued); not public API
==============  ==================================================================================
"""

from .batcher import MicroBatcher
from .options import Batching
from .stats import BatcherStats, BatchRecord

__all__ = ["Batching", "BatcherStats", "BatchRecord", "MicroBatcher"]
