"""Counting and failing the registry's file writes (``_fs._os_write``), for the ENOSPC tests."""

from __future__ import annotations

import errno
from typing import Any, Callable

from modelserve._registry import _fs


def count_writes(monkeypatch: Any, fn: Callable[[], Any]) -> int:
    """How many ``os.write`` calls the registry makes while ``fn()`` runs."""
    n = [0]
    real = _fs._os_write

    def counting(fd: int, data: bytes) -> int:
        n[0] += 1
        return real(fd, data)

    monkeypatch.setattr(_fs, "_os_write", counting)
    fn()
    monkeypatch.setattr(_fs, "_os_write", real)
    return n[0]


def fail_writes_after(monkeypatch: Any, fail_at: int) -> Callable[[], None]:
    """Make every registry write after the first ``fail_at`` raise ENOSPC; returns the undo."""
    real = _fs._os_write
    n = [0]

    def failing(fd: int, data: bytes) -> int:
        n[0] += 1
        if n[0] > fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(_fs, "_os_write", failing)
    return lambda: monkeypatch.setattr(_fs, "_os_write", real)
