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
removes what it created.

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
import secrets
import socket
import stat
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO, Callable, Iterator

from .. import _files
from .._errors import RegistryError
from .._files import file_kind
from .._files import kind_at as _kind_at
from . import _faults

__all__ = [
    "CHUNK",
    "FileKindError",
    "open_regular",
    "open_read",
    "make_dir",
    "list_dir",
    "refuse_special",
    "staging_done",
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
    "walk",
    "read_small",
    "staging_name",
    "staging_owner_alive",
    "is_enospc",
    "os_error",
]

CHUNK = 1 << 20
_os_write: Callable[[int, bytes | memoryview], int] = os.write
_os_mkdir: Callable[..., None] = os.mkdir
_HOST = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in socket.gethostname())[:40] or "host"
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


_RWX = stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR


def _retry_writable(func: Callable[[str], None], path: str) -> None:
    """``func(path)`` (unlink, rmdir); on failure make ``path`` and its parent writable and try
    once more; a second failure is ignored (removal of trees is best effort, like rmtree's)."""
    try:
        func(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    try:
        if not stat.S_ISLNK(os.lstat(path).st_mode):  # never chmod through a symlink
            os.chmod(path, _RWX)
        parent = os.path.dirname(path)
        if parent:
            os.chmod(parent, _RWX)
        func(path)
    except OSError:
        pass


def _scan(d: str) -> list[os.DirEntry[str]]:
    with os.scandir(d) as it:
        return list(it)


def _remove_tree(top: str) -> None:
    """Remove the directory tree ``top`` without recursion (Python 3.11's ``shutil.rmtree``
    recurses once per level, so a deeply nested directory would raise ``RecursionError``).
    Symlinks are unlinked, never followed."""
    stack: list[tuple[str, bool]] = [(top, False)]
    while stack:
        d, emptied = stack.pop()
        if emptied:
            _retry_writable(os.rmdir, d)
            continue
        stack.append((d, True))
        try:
            entries = _scan(d)
        except PermissionError:
            try:
                os.chmod(d, _RWX)  # an unreadable directory cannot be emptied
                entries = _scan(d)
            except OSError:
                continue
        except OSError:
            continue
        for e in entries:
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                stack.append((e.path, False))
            else:
                _retry_writable(os.unlink, e.path)


def remove_path(path: Path) -> None:
    """Remove a file or directory tree, ignoring absence; read-only entries are made writable."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        _remove_tree(os.fspath(path))
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except PermissionError:
            os.chmod(path, stat.S_IWUSR | stat.S_IRUSR)
            os.unlink(path)


def walk(top: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top)`` (top-down, symlinks not followed), but iterative: Python 3.11's
    ``os.walk`` recurses once per level, so a deeply nested directory would raise
    ``RecursionError``. As with ``os.walk``, ``dirnames`` may be pruned in place, symlinks to
    directories are listed in ``dirnames`` but not entered, and unreadable directories are skipped.
    """
    stack = [os.fspath(top)]
    while stack:
        d = stack.pop()
        try:
            entries = _scan(d)
        except OSError:
            continue
        dirs: list[str] = []
        files: list[str] = []
        links: set[str] = set()
        for e in entries:
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(e.name)
            if is_dir and e.is_symlink():
                links.add(e.name)
        yield d, dirs, files
        stack.extend(os.path.join(d, n) for n in reversed(dirs) if n not in links)


def read_small(path: Path, limit: int = 16 << 20) -> bytes:
    """Read a small regular file entirely; raises ``ValueError`` if it is larger than ``limit``
    and :class:`FileKindError` if it is not a regular file (see :func:`open_regular`)."""
    with open_read(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data


#: Staging names this process handed out and still uses (see :func:`staging_owner_alive`).
_IN_USE: set[str] = set()


def staging_name(kind: str) -> str:
    """A unique name for a staging entry: ``<kind>-<host>-<pid>-<time>-<random>``.

    The name counts as in use by this process until :func:`staging_done` is called with it;
    every caller must call it (in a ``finally``) once the entry is gone or abandoned.
    """
    name = f"{kind}-{_HOST}-{os.getpid()}-{time.time_ns()}-{secrets.token_hex(4)}"
    _IN_USE.add(name)
    return name


def staging_done(name: str) -> None:
    """This process no longer uses the staging entry ``name`` (whatever is left there is garbage)."""
    _IN_USE.discard(name)


@contextmanager
def staging_path(parent: Path, kind: str, suffix: str = "") -> Iterator[Path]:
    """A fresh staging path ``parent/<staging_name(kind)><suffix>`` (not created), in use until
    the block ends; then whatever is there is removed."""
    name = staging_name(kind)
    try:
        yield parent / f"{name}{suffix}"
    finally:
        try:
            remove_path(parent / f"{name}{suffix}")
        finally:
            staging_done(name)


def staging_owner_alive(entry: str, *, max_age_s: float, mtime: float) -> bool:
    """Whether the process that created the staging entry ``entry`` may still be using it.

    Entries of this process are alive exactly while it uses them (:func:`staging_name` until
    :func:`staging_done`), so leftovers of its own failed writes are collected at once; entries
    of this host whose pid is gone are dead at once; other entries count as alive until they are
    ``max_age_s`` old.
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
            return entry.split(".", 1)[0] in _IN_USE
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
