"""Directory trees of any depth: removing them and walking them, without recursion.

Python 3.11's ``shutil.rmtree`` and ``os.walk`` recurse once per level, so a deeply nested
directory planted in a registry (or handed in as a model) would raise ``RecursionError``; these
loop over an explicit stack instead. Symlinks are never followed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["remove_path", "walk", "tree_size"]

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


def tree_size(path: Path) -> int:
    """Bytes held by the file, or by the files of the directory tree, at ``path`` (0 if it is gone);
    unreadable entries count as 0."""
    total = 0
    try:
        if path.is_dir() and not path.is_symlink():
            for dirpath, _, files in walk(path):
                for f in files:
                    try:
                        total += os.lstat(os.path.join(dirpath, f)).st_size
                    except OSError:
                        pass
        else:
            total = os.lstat(path).st_size
    except OSError:
        pass
    return total
