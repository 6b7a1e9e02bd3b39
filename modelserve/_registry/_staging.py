"""Staging names: private, unique names under ``tmp/`` (and beside outputs) for work in progress.

A staging entry is named ``<kind>-<host>-<pid>-<time>-<random>`` (:func:`staging_name`), so
``gc`` can tell whether its owner may still be using it (:func:`staging_owner_alive`): entries
of this process count as in use exactly until :func:`staging_done`, entries of a dead process
of this host are garbage at once, and all others once they are old enough.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ._dirs import remove_path

__all__ = ["staging_name", "staging_done", "staging_path", "staging_owner_alive"]

_HOST = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in socket.gethostname())[:40] or "host"

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
