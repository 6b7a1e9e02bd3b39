"""File-system primitives of the registry: staged writes, atomic publication, fsync, removal.

Every byte the registry writes goes through :func:`write_all`, so a test can inject ``ENOSPC``
(or any ``OSError``) in one place by replacing ``_fs._os_write``. Publication is always one of:

* :func:`link_new` - ``os.link`` of a complete staged file; fails if the target exists, which
  gives write-once files (version pointers, blobs) without any lock;
* :func:`replace_bytes` - a staged file moved over the target with ``os.replace``;
* :func:`rename_dir_new` - a complete staged directory renamed into place, failing if the target
  exists.

Readers therefore see a whole file or no file, never a partial one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import socket
import stat
import sys
import time
from pathlib import Path
from typing import IO, Callable

from . import _faults

__all__ = [
    "CHUNK",
    "write_all",
    "write_new_file",
    "copy_hashing",
    "file_kind",
    "stream_hashing",
    "hash_file",
    "fsync_dir",
    "link_new",
    "replace_bytes",
    "rename_dir_new",
    "make_readonly",
    "remove_path",
    "read_small",
    "staging_name",
    "staging_owner_alive",
    "is_enospc",
]

CHUNK = 1 << 20
_os_write: Callable[[int, bytes | memoryview], int] = os.write
_HOST = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in socket.gethostname())[:40] or "host"
_FSYNC = sys.platform != "win32"


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
    """Create ``path`` (must not exist) with ``data``, fsync it, and optionally make it 0444."""
    fd = _open_new(path)
    try:
        write_all(fd, data)
        if _FSYNC:
            os.fsync(fd)
    finally:
        os.close(fd)
    if readonly:
        make_readonly(path)


def stream_hashing(src: IO[bytes], dest: Path, *, limit: int | None = None, fault: str | None = None) -> tuple[str, int]:
    """Copy the stream ``src`` into the new file ``dest``; return ``(sha256 hex, size)``.

    With ``limit`` the copy stops with ``ValueError`` once more than ``limit`` bytes arrive.
    ``fault`` names a fault point hit after the first chunk is written (for crash tests).
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
    finally:
        os.close(fd)
    return h.hexdigest(), size


def file_kind(mode: int) -> str:
    """A word for what ``mode`` (``st_mode``) is: "regular file", "directory", "FIFO", ..."""
    for test, word in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return word
    return "special file"


def copy_hashing(src: Path, dest: Path, *, fault: str | None = None) -> tuple[str, int]:
    """Copy the regular file ``src`` to the new file ``dest``; return ``(sha256 hex, size)``.

    ``src`` is opened without blocking and checked with ``fstat`` (so a FIFO or device swapped
    in after any earlier check is refused, never read): anything but a regular file raises
    :class:`~modelserve.RegistryError`.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(src, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            from .._errors import RegistryError

            raise RegistryError(f"{src} must be a regular file, got a {file_kind(mode)}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        return stream_hashing(fh, dest, fault=fault)


def hash_file(path: Path) -> tuple[str, int]:
    """Return ``(sha256 hex, size)`` of the file at ``path``."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while True:
            buf = fh.read(CHUNK)
            if not buf:
                break
            size += len(buf)
            h.update(buf)
    return h.hexdigest(), size


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or link inside it survives a power loss (no-op on Windows)."""
    if not _FSYNC:
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
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
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(staged, target)
    except FileExistsError:
        return False
    fsync_dir(target.parent)
    return True


def replace_bytes(staging_dir: Path, target: Path, data: bytes) -> None:
    """Atomically replace ``target`` with ``data`` via a file staged in ``staging_dir``."""
    staging_dir.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir / f"{staging_name('w')}.tmp"
    write_new_file(tmp, data)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    except BaseException:
        remove_path(tmp)
        raise
    fsync_dir(target.parent)


def rename_dir_new(staged: Path, target: Path) -> bool:
    """Rename the complete directory ``staged`` to ``target``; False if ``target`` already exists."""
    target.parent.mkdir(parents=True, exist_ok=True)
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


def _onerror(func, path, _exc_info):  # pragma: no cover - platform dependent
    try:
        os.chmod(path, stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
        parent = os.path.dirname(path)
        if parent:
            os.chmod(parent, stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
        func(path)
    except OSError:
        pass


def remove_path(path: Path) -> None:
    """Remove a file or directory tree, ignoring absence; read-only entries are made writable."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=_onerror)
        else:  # pragma: no cover
            shutil.rmtree(path, onerror=_onerror)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except PermissionError:
            os.chmod(path, stat.S_IWUSR | stat.S_IRUSR)
            os.unlink(path)


def read_small(path: Path, limit: int = 16 << 20) -> bytes:
    """Read a small file entirely; raises ``ValueError`` if it is larger than ``limit``."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data


def staging_name(kind: str) -> str:
    """A unique name for a staging entry: ``<kind>-<host>-<pid>-<time>-<random>``."""
    return f"{kind}-{_HOST}-{os.getpid()}-{time.time_ns()}-{secrets.token_hex(4)}"


def staging_owner_alive(entry: str, *, max_age_s: float, mtime: float) -> bool:
    """Whether the process that created the staging entry ``entry`` may still be using it.

    Entries of this host whose pid is gone are dead at once; other entries count as alive until
    they are ``max_age_s`` old.
    """
    parts = entry.split("-")
    if time.time() - mtime > max_age_s:
        return False
    if len(parts) >= 5 and parts[1] == _HOST:
        try:
            pid = int(parts[2])
        except ValueError:
            return True
        if pid == os.getpid():
            return True
        return _pid_alive(pid)
    return True


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed child not yet reaped) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return fields[0] != b"Z"
    except (OSError, IndexError):
        return True
