"""A bounded read-ahead: one thread decodes a source's frames into a small queue while the caller
runs inference on the frames before them.

The queue holds at most ``size`` frames, so a two-hour video is never held whole: the reader
waits for room (files), or, for live streams (``drop_oldest``), drops the oldest queued frame so
the caller always gets the freshest ones, as Ultralytics' streams do (a dropped frame shows as a
gap in ``Origin.frame``). The reader's error, if any, reaches the caller after the frames read
before it. ``stall``: the caller gives up with :class:`SourceError` when no frame, end or error came
for that many seconds (a backstop; the readers' own timeouts come first). :meth:`close` stops the
reader, which closes its source in its own thread.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator

from .._errors import SourceError
from .frames import Frame

__all__ = ["ReadAhead"]

_POLL = 0.05  # how often a reader waiting for room checks whether it was stopped


class _End:
    pass


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class ReadAhead:
    """Iterate over ``frames`` through a background thread and a queue of ``size`` frames."""

    def __init__(self, frames: Iterator[Frame], size: int, *, name: str, drop_oldest: bool = False,
                 stall: float | None = None) -> None:
        self._frames = frames
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, size))
        self._stop = threading.Event()
        self._name = name
        self._drop = drop_oldest
        self._stall = stall
        self._done = False
        self._thread = threading.Thread(target=self._run, name=f"modelserve-source {name}"[:60], daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for frame in self._frames:
                if not self._put(frame, droppable=self._drop):
                    return
            self._put(_End())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in order
            self._put(_Failed(exc))
        finally:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()  # a generator's finally (closing its container) runs in this thread

    def _put(self, item: Any, droppable: bool = False) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                if droppable:
                    try:
                        old = self._queue.get_nowait()
                    except queue.Empty:
                        continue
                    if not isinstance(old, Frame):  # never drop the end or an error (not queued before frames)
                        self._queue.put(old)
        return False

    def __iter__(self) -> "ReadAhead":
        return self

    def __next__(self) -> Frame:
        if self._done:
            raise StopIteration
        try:
            item = self._queue.get(timeout=self._stall)
        except queue.Empty:
            self.close()
            raise SourceError(f"{self._name} gave no frame for {self._stall:g} s") from None
        if isinstance(item, Frame):
            return item
        self._done = True
        self._stop.set()
        if isinstance(item, _Failed):
            raise item.error
        raise StopIteration

    def close(self) -> None:
        """Stop the reader and drop what it queued (it closes its source when its current read ends)."""
        self._done = True
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
