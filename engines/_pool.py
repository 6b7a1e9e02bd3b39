"""A bounded pool of per-worker runtime objects (OpenVINO infer requests, TensorRT contexts).

Runtimes whose request/context objects are not thread-safe get one object per concurrent caller:
``with pool.slot() as obj:`` hands out an idle object, creates a new one while fewer than ``size``
exist, and otherwise blocks until one is returned. Objects are created lazily, so a Predictor used
by one thread holds one object. Threads are not tied to objects, which keeps batcher threads and
web-server thread pools (which come and go) from leaking per-thread state.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Callable, Generic, Iterator, TypeVar

from .._errors import ModelserveError

__all__ = ["SlotPool"]

T = TypeVar("T")


class SlotPool(Generic[T]):
    def __init__(self, factory: Callable[[], T], size: int, what: str = "engine") -> None:
        if size < 1:
            raise ValueError("pool size must be >= 1")
        self._factory = factory
        self.size = size
        self._what = what
        self._idle: "queue.LifoQueue[T]" = queue.LifoQueue()
        self._all: list[T] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def slot(self) -> Iterator[T]:
        obj = self._acquire()
        try:
            yield obj
        finally:
            self._idle.put(obj)

    def _acquire(self) -> T:
        if self._closed:
            raise ModelserveError(f"this {self._what} engine is closed")
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._closed:
                raise ModelserveError(f"this {self._what} engine is closed")
            create = len(self._all) < self.size
            if create:
                obj = self._factory()
                self._all.append(obj)
                return obj
        return self._idle.get()

    @property
    def created(self) -> int:
        """How many objects exist (at most ``size``)."""
        return len(self._all)

    def close(self) -> list[T]:
        """Mark closed and hand back every object created, for the caller to release."""
        with self._lock:
            self._closed = True
            objs, self._all = self._all, []
        while True:
            try:
                self._idle.get_nowait()
            except queue.Empty:
                break
        return objs
