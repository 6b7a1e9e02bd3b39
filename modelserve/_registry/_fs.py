"""File-system primitives of the registry: staged writes, atomic publication, fsync, removal.

Every byte the registry writes goes through :func:`write_all`, so a test can inject ``ENOSPC``
(or any ``OSError``) in one place by replacing ``_fs._os_write``; every directory it creates goes
through :func:`make_dir` (``_fs._os_mkdir``) the same way. Publication is always one of:

* :func:`link_new` - ``os.link`` of a complete staged file; fails if the target exists, which
  gives write-once files (version pointers, blobs) without any lock;
* :func:`replace_bytes` - a staged file moved over the target with ``os.replace``;
* :func:`rename_dir_new` - a complete staged directory renamed into place, failing if the target
  exists.

Readers therefore see a whole file or no file, never a partial one. A staged write that fails
removes what it created. Staging names are made in ``_staging``; trees are removed and walked
(iteratively, at any depth) by ``_dirs``.

Every file the registry opens is opened with :func:`open_regular`: without blocking, then checked
with ``fstat``, so a FIFO, device or socket planted anywhere in the registry (or handed in as a
lock file, archive or source) is refused with :class:`FileKindError` instead of hanging the
process or being read forever. :class:`FileKindError` is a :class:`~modelserve.RegistryError` and
also an ``OSError``, so code that maps ``OSError`` s to its own typed error (an unreadable version
pointer is an :class:`~modelserve.IntegrityError`, ...) treats it like any unreadable file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
from pathlib import Path
from typing import IO, BinaryIO, Callable

from .. import _files
from .._errors import RegistryError
from .._files import file_kind
from .._files import kind_at as _kind_at
from . import _faults
from ._dirs import remove_path
from ._staging import staging_done, staging_name

__all__ = [
    "CHUNK",
    "FileKindError",
    "open_regular",
    "open_read",
    "make_dir",
    "list_dir",
    "refuse_special",
    "write_all",
    "write_new_file",
    "copy_hashing",
    "file_kind",
    "stream_hashing",
    "hash_file",
    "fsync_fd",
    "fsync_dir",
    "link_new",
    "replace_bytes",
    "rename_dir_new",
    "make_readonly",
    "read_small",
    "is_enospc",
    "os_error",
]

CHUNK = 1 << 20
_os_write: Callable[[int, bytes | memoryview], int] = os.write
_os_mkdir: Callable[..., None] = os.mkdir
_FSYNC = sys.platform != "win32"


class FileKindError(RegistryError, OSError):
    """A path holds the wrong kind of file: a FIFO, device, socket or directory where a regular
    file belongs, or a file where a directory belongs. The message names the path and what it is.

    Also an ``OSError`` (with no ``errno``), so every ``except OSError`` that turns an unreadable
    file into a typed error handles it too.
    """


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """Open the regular file ``path`` and return a file descriptor in blocking mode
    (``modelserve._files.open_regular``): a FIFO (which would block ``open`` until a writer
    comes), a device, a socket or a directory raises :class:`FileKindError` naming ``path`` and
    what it is. ``flags`` are ``os.open`` flags (``O_WRONLY | O_APPEND | O_CREAT``, ...). Other
    errors (missing file, no permission) propagate as ``OSError``.
    """
    return _files.open_regular(path, flags, mode, refuse=FileKindError)


def open_read(path: Path) -> BinaryIO:
    """``open(path, "rb")`` for regular files only (see :func:`open_regular`)."""
    return _files.open_read(path, refuse=FileKindError)


def _mkdir_one(path: Path, exist_ok: bool) -> None:
    try:
        _os_mkdir(path, 0o777)
    except FileExistsError:
        if not exist_ok:
            raise
        if not os.path.isdir(path):
            kind = _kind_at(path) or "broken symlink"
            raise FileKindError(f"{path} should be a directory but is a {kind}; move it away") from None


def make_dir(path: Path, *, parents: bool = False, exist_ok: bool = False) -> None:
    """Create the directory ``path`` (like ``Path.mkdir``, but iterative): the registry's single
    mkdir point, so tests can inject ``ENOSPC`` by replacing ``_fs._os_mkdir``.

    With ``exist_ok`` an existing directory is fine, but a file or anything else squatting the
    name raises :class:`FileKindError`.
    """
    if parents:
        missing = []
        p = path.parent
        while p != p.parent and not os.path.lexists(p):
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            _mkdir_one(d, exist_ok=True)
    _mkdir_one(path, exist_ok)


def list_dir(path: Path) -> list[str]:
    """The names in the directory ``path``; ``[]`` if it does not exist.

    A file (or anything else) where the directory belongs raises :class:`FileKindError` naming
    it, so a damaged layout is reported rather than read as "empty" (gc would then take every
    blob for garbage). Other errors propagate as ``OSError``.
    """
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
    except NotADirectoryError as exc:
        kind = _kind_at(path)
        where = f"{path} is a {kind}" if kind else f"a parent of {path} is not a directory"
        raise FileKindError(f"{where}, where the registry keeps a directory; move it away") from exc


def refuse_special(dest: Path, what: str) -> None:
    """Raise :class:`FileKindError` if ``dest`` exists and is not a regular file (symlinks followed).

    For outputs the registry replaces with ``os.replace`` (archives, lock files): a FIFO, a
    device such as ``/dev/full``, a socket or a directory there is left untouched.
    """
    kind = _kind_at(dest)
    if kind is not None:
        raise FileKindError(
            f"{what} {dest} is a {kind}, not a regular file; it was left untouched (write to a file path instead)"
        )


def os_error(action: str, exc: OSError) -> RegistryError:
    """The :class:`RegistryError` for an ``OSError`` that stopped ``action`` (a full disk named as such)."""
    if is_enospc(exc):
        return RegistryError(f"{action} failed: no space left on device ({exc}); the registry is unchanged")
    return RegistryError(f"{action} failed: {exc}")


def is_enospc(exc: BaseException) -> bool:
    """True for 'no space left' and 'quota exceeded' errors."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (looping over short writes); the single write path."""
    view = memoryview(data)
    while view:
        n = _os_write(fd, view)
        view = view[n:]


def _open_new(path: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, 0o644)


def write_new_file(path: Path, data: bytes, *, readonly: bool = False) -> None:
    """Create ``path`` (must not exist) with ``data``, fsync it, and optionally make it 0444.

    If anything fails after the file was created (a full disk), the file is removed again.
    """
    fd = _open_new(path)
    try:
        try:
            write_all(fd, data)
            if _FSYNC:
                os.fsync(fd)
        finally:
            os.close(fd)
        if readonly:
            make_readonly(path)
    except BaseException:
        _remove_quietly(path)
        raise


def _remove_quietly(path: Path) -> None:
    try:
        remove_path(path)
    except OSError:  # pragma: no cover - the original error matters more
        pass


def stream_hashing(src: IO[bytes], dest: Path, *, limit: int | None = None, fault: str | None = None) -> tuple[str, int]:
    """Copy the stream ``src`` into the new file ``dest``; return ``(sha256 hex, size)``.

    With ``limit`` the copy stops with ``ValueError`` once more than ``limit`` bytes arrive.
    ``fault`` names a fault point hit after the first chunk is written (for crash tests).
    A failed copy removes ``dest``.
    """
    h = hashlib.sha256()
    size = 0
    fd = _open_new(dest)
    try:
        first = True
        while True:
            buf = src.read(CHUNK)
            if not buf:
                break
            size += len(buf)
            if limit is not None and size > limit:
                raise ValueError(f"stream is longer than the expected {limit} bytes")
            h.update(buf)
            write_all(fd, buf)
            if first and fault:
                _faults.point(fault)
                first = False
        if _FSYNC:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _remove_quietly(dest)
        raise
    os.close(fd)
    return h.hexdigest(), size


def copy_hashing(src: Path, dest: Path, *, fault: str | None = None) -> tuple[str, int]:
    """Copy the regular file ``src`` to the new file ``dest``; return ``(sha256 hex, size)``.

    ``src`` is opened without blocking and checked with ``fstat`` (so a FIFO or device swapped
    in after any earlier check is refused, never read): anything but a regular file raises
    :class:`FileKindError` (a :class:`~modelserve.RegistryError`).
    """
    with open_read(src) as fh:
        return stream_hashing(fh, dest, fault=fault)


def hash_file(path: Path) -> tuple[str, int]:
    """Return ``(sha256 hex, size)`` of the regular file at ``path`` (anything else raises
    :class:`FileKindError`, see :func:`open_regular`)."""
    h = hashlib.sha256()
    size = 0
    with open_read(path) as fh:
        while True:
            buf = fh.read(CHUNK)
            if not buf:
                break
            size += len(buf)
            h.update(buf)
    return h.hexdigest(), size


def fsync_fd(fd: int) -> None:
    """fsync an open file so its bytes survive a power loss (no-op on Windows, as for every write here)."""
    if _FSYNC:
        os.fsync(fd)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or link inside it survives a power loss (no-op on Windows)."""
    if not _FSYNC:
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _files.NONBLOCK | _files.OPEN_FLAGS)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def link_new(staged: Path, target: Path) -> bool:
    """Publish ``staged`` at ``target`` with ``os.link``; True if published, False if it existed.

    The parent directory is created if needed and fsynced afterwards.
    """
    make_dir(target.parent, parents=True, exist_ok=True)
    try:
        os.link(staged, target)
    except FileExistsError:
        return False
    fsync_dir(target.parent)
    return True


def replace_bytes(staging_dir: Path, target: Path, data: bytes) -> None:
    """Atomically replace ``target`` with ``data`` via a file staged in ``staging_dir``; a
    failure (a full disk) leaves ``target`` as it was and nothing in ``staging_dir``."""
    make_dir(staging_dir, parents=True, exist_ok=True)
    name = staging_name("w")
    tmp = staging_dir / f"{name}.tmp"
    try:
        write_new_file(tmp, data)
        try:
            make_dir(target.parent, parents=True, exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            remove_path(tmp)
            raise
    finally:
        staging_done(name)
    fsync_dir(target.parent)


def rename_dir_new(staged: Path, target: Path) -> bool:
    """Rename the complete directory ``staged`` to ``target``; False if ``target`` already exists."""
    make_dir(target.parent, parents=True, exist_ok=True)
    if target.exists():
        return False
    try:
        os.rename(staged, target)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or target.exists():
            return False
        raise
    fsync_dir(target.parent)
    return True


def make_readonly(path: Path) -> None:
    """chmod 0444 (files are immutable once published)."""
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def read_small(path: Path, limit: int = 16 << 20) -> bytes:
    """Read a small regular file entirely; raises ``ValueError`` if it is larger than ``limit``
    and :class:`FileKindError` if it is not a regular file (see :func:`open_regular`)."""
    with open_read(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data
