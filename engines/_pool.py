"""A bounded pool of per-worker runtime objects (OpenVINO infer requests, TensorRT contexts).

Runtimes whose request/context objects are not thread-safe get one object per concurrent caller:
``with pool.slot() as obj:`` hands out an idle object, creates a new one while fewer than ``size``
exist, and otherwise blocks until one is returned. Objects are created lazily (outside the pool's
lock, so returns and other acquisitions go on meanwhile), so a Predictor used by one thread holds
one object. Threads are not tied to objects, which keeps batcher threads and web-server thread
pools (which come and go) from leaking per-thread state.

Closing: :meth:`SlotPool.close` refuses every later (and every waiting) acquisition with
:class:`ModelserveError`, waits up to ``timeout`` seconds for objects in use to come back, and
hands the idle ones to the caller to release. An object still in use when the wait ends is never
handed out for release while its run may be using it: it goes to ``on_late(obj)`` when its run
returns it (or is dropped, if there is no ``on_late``), and ``on_drained()`` follows the last one,
so a caller can free what those objects share (a device context) only when nothing uses it.

>>> pool = SlotPool(lambda: object(), size=2, what="demo")
>>> with pool.slot() as obj:
...     pass
>>> len(pool.close())
1
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from .._errors import ModelserveError

__all__ = ["SlotPool"]

T = TypeVar("T")


class SlotPool(Generic[T]):
    """At most ``size`` objects made by ``factory()``, each used by one caller at a time.

    ``initial``: objects already made (they count towards ``size``), e.g. one created eagerly at
    load so that its errors surface there.
    """

    def __init__(self, factory: Callable[[], T], size: int, what: str = "engine", initial: Iterable[T] = ()) -> None:
        if size < 1:
            raise ValueError("pool size must be >= 1")
        self._factory = factory
        self.size = size
        self._what = what
        self._cond = threading.Condition(threading.Lock())
        self._idle: list[T] = list(initial)  # LIFO: the most recently used object is reused first
        if len(self._idle) > size:
            raise ValueError(f"{len(self._idle)} initial objects exceed the pool size {size}")
        self._all: list[T] = list(self._idle)
        self._busy: dict[int, T] = {}
        self._creating = 0
        self._closed = False
        self._close_returned = False  # close() has stopped waiting: returns now go to on_late
        self._on_late: Callable[[T], None] | None = None
        self._on_drained: Callable[[], None] | None = None
        self._late = 0  # objects still out when close() stopped waiting, not yet dealt with

    @contextlib.contextmanager
    def slot(self) -> Iterator[T]:
        """An object for the caller's exclusive use until the ``with`` block ends."""
        obj = self._acquire()
        try:
            yield obj
        finally:
            self._return(obj)

    def _closed_error(self) -> ModelserveError:
        return ModelserveError(f"this {self._what} engine is closed")

    def _acquire(self) -> T:
        with self._cond:
            while True:
                if self._closed:
                    raise self._closed_error()
                if self._idle:
                    obj = self._idle.pop()
                    self._busy[id(obj)] = obj
                    return obj
                if len(self._all) + self._creating < self.size:
                    self._creating += 1
                    break
                self._cond.wait()
        try:
            obj = self._factory()
        except BaseException:
            with self._cond:
                self._creating -= 1
                late = self._close_returned
                self._cond.notify_all()
            if late:
                self._settle_late()
            raise
        with self._cond:
            self._creating -= 1
            if not self._closed:
                self._all.append(obj)
                self._busy[id(obj)] = obj
                return obj
        # closed while the object was being made: hand it to close() (or on_late), not the caller
        self._return(obj)
        raise self._closed_error()

    def _return(self, obj: T) -> None:
        with self._cond:
            self._busy.pop(id(obj), None)
            late = self._close_returned
            if not late:
                self._idle.append(obj)
            self._cond.notify_all()
        if late:
            try:
                if self._on_late is not None:
                    self._on_late(obj)
            finally:
                self._settle_late()

    def _settle_late(self) -> None:
        # counted down only after on_late has finished, so that "drained" means every late
        # object has been dealt with
        with self._cond:
            self._late -= 1
            drained = self._late == 0
        if drained and self._on_drained is not None:
            self._on_drained()

    @property
    def created(self) -> int:
        """How many objects exist (at most ``size``)."""
        return len(self._all)

    @property
    def in_use(self) -> int:
        """Objects handed out (or being made) and not yet returned."""
        with self._cond:
            return len(self._busy) + self._creating

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """After :meth:`close`: objects that were still in use when it stopped waiting and have
        not been returned (and passed to ``on_late``) yet."""
        with self._cond:
            return self._late

    def close(
        self,
        timeout: float | None = 30.0,
        on_late: Callable[[T], None] | None = None,
        on_drained: Callable[[], None] | None = None,
    ) -> list[T]:
        """Refuse new acquisitions, wait up to ``timeout`` seconds (None: no limit) for objects in
        use, and return the idle ones for the caller to release (a second call returns ``[]``).

        Objects still in use when the wait ends (:attr:`pending`) are passed to ``on_late`` as
        their callers return them, on the returning thread (or dropped when ``on_late`` is None);
        once the last of them has been dealt with, ``on_drained()`` is called. Neither is called
        when nothing was still in use.
        """
        with self._cond:
            if self._closed:
                return []
            self._closed = True
            self._on_late, self._on_drained = on_late, on_drained
            self._cond.notify_all()  # waiting acquirers raise
            deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
            while self._busy or self._creating:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(None if remaining is None else min(remaining, 3600.0))  # <= TIMEOUT_MAX
            self._late = len(self._busy) + self._creating
            self._close_returned = True
            objs, self._idle, self._all = self._idle, [], []
        return objs
