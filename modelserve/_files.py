"""Opening paths that must be regular files, without ever blocking.

A FIFO given where a file belongs would block ``open`` until a writer comes (forever, for a
library in a web service), and a device or socket is no file at all. :func:`open_regular` opens
with ``O_NONBLOCK`` and checks what it got with ``fstat``, so whatever is at the path at that
moment (also something swapped in after an earlier check) is used only if it is a regular file.
Images, model paths and every file of the registry are opened, or checked, through here; each
caller chooses the typed error it raises (``refuse``).

:func:`atomic_write` replaces a file so that a reader sees the old bytes or the new ones, never
a mix or a truncated file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from typing import BinaryIO, Callable

__all__ = ["NONBLOCK", "OPEN_FLAGS", "atomic_write", "file_kind", "kind_at", "open_regular", "open_read"]

NONBLOCK = getattr(os, "O_NONBLOCK", 0)
#: Flags every open adds: binary on Windows, not inherited by child processes.
OPEN_FLAGS = getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)

_KINDS = ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink"),
          (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket"))


def file_kind(mode: int) -> str:
    """A word for what ``mode`` (``st_mode``) is: "regular file", "directory", "FIFO", ..."""
    for test, word in _KINDS:
        if test(mode):
            return word
    return "special file"


def kind_at(path: str | os.PathLike[str]) -> str | None:
    """What is at ``path`` (following symlinks) if it is not a regular file; None otherwise
    (also when nothing is there)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return None if stat.S_ISREG(mode) else file_kind(mode)


def open_regular(
    path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o644, *,
    refuse: Callable[[str], BaseException],
) -> int:
    """Open the regular file ``path`` and return a file descriptor in blocking mode.

    Anything but a regular file (a FIFO, a device, a socket, a directory) raises
    ``refuse(message)``, the message naming ``path`` and what it is. ``flags`` are ``os.open``
    flags (``O_WRONLY | O_APPEND | O_CREAT``, ...). Other errors (missing file, no permission)
    propagate as ``OSError``.
    """
    try:
        fd = os.open(path, flags | NONBLOCK | OPEN_FLAGS, mode)
    except FileNotFoundError:
        raise
    except OSError as exc:  # ENXIO (a FIFO without a reader, a socket), EISDIR, ...
        kind = kind_at(path)
        if kind is not None:
            raise refuse(f"{path} must be a regular file, got a {kind}") from exc
        raise
    try:
        st_mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(st_mode):
            raise refuse(f"{path} must be a regular file, got a {file_kind(st_mode)}")
        if NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_read(path: str | os.PathLike[str], *, refuse: Callable[[str], BaseException]) -> BinaryIO:
    """``open(path, "rb")`` for regular files only (see :func:`open_regular`)."""
    fd = open_regular(path, refuse=refuse)
    try:
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: into a temporary file beside it (``.tmp-*``), which
    is fsynced and then moved over ``path`` with ``os.replace``. On any failure (a full disk) the
    temporary file is removed and ``path`` is left as it was; the ``OSError`` propagates."""
    directory = os.path.dirname(os.fspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
