"""Garbage collection without locks.

What is live: every version pointer that is not a tombstone, its manifest blob, the blobs its
manifest lists, its tree, its verification record, and artifacts keyed by any live digest.
Everything else under ``blobs/``, ``trees/``, ``state/`` and ``artifacts/`` is garbage, and so
is a staging entry under ``tmp/`` whose process is dead (same host) or that is older than the
age limit.

Removing blobs and trees races with registrations that are about to reference them. The
protocol: gc first *moves* candidates into its own staging directory, then scans the live set
again and moves back anything that became live; a registrar checks after publishing its pointer
that everything it references exists and re-links what is missing from its staged copies. Either
gc's second scan sees the new pointer, or the registrar's check sees the removal, so no
published version loses a file for good. A reader could still catch such a version in the
instant between gc's move and the restore, so by default gc also leaves alone blobs and trees
created or hard-linked (ctime) in the last ``min_age_s`` seconds (10 minutes): a registrar
hard-links every blob it uses into its tree before publishing, which refreshes the ctime.
If any manifest cannot be read, no blob or tree is removed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable

from .._errors import ModelserveError
from . import _fs, _store
from ._names import validate_label, validate_name
from ._types import GcPlan

__all__ = ["gc", "live_set", "remove_unreferenced"]


def live_set(reg: Any) -> tuple[set[str], set[str], bool]:
    """``(live manifest hexes, live blob hexes (manifests included), complete)``."""
    layout = reg._layout
    manifests: set[str] = set()
    blobs: set[str] = set()
    complete = True
    try:
        names = os.listdir(layout.models)
    except FileNotFoundError:
        names = []
    for name in names:
        try:
            validate_name(name)
            labels = os.listdir(layout.versions(name))
        except (ModelserveError, FileNotFoundError, NotADirectoryError):
            continue
        for label in labels:
            try:
                validate_label(label)
            except ModelserveError:
                continue
            try:
                ptr = reg._read_pointer(name, label)
            except ModelserveError:
                complete = False
                continue
            if ptr is None or ptr.get("deleted"):
                continue
            mhex = _store.hex_of(ptr["manifest"])
            manifests.add(mhex)
            blobs.add(mhex)
            try:
                m = reg._manifest(mhex, f"{name}:{label}")
            except ModelserveError:
                complete = False
                continue
            blobs.update(f.hex for f in m.files)
    return manifests, blobs, complete


def _all_blobs(layout: Any) -> list[Path]:
    out = []
    try:
        subdirs = os.listdir(layout.blobs)
    except FileNotFoundError:
        return out
    for sub in subdirs:
        try:
            out.extend(layout.blobs / sub / h for h in os.listdir(layout.blobs / sub))
        except NotADirectoryError:
            out.append(layout.blobs / sub)
    return out


def _size(path: Path) -> int:
    total = 0
    try:
        if path.is_dir() and not path.is_symlink():
            for dirpath, _, files in os.walk(path):
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


def remove_unreferenced(reg: Any, candidates: Iterable[Path]) -> list[Path]:
    """Remove blob/tree paths that no live version references, with the move-rescan protocol."""
    layout = reg._layout
    candidates = list(candidates)
    if not candidates:
        return []
    layout.tmp.mkdir(parents=True, exist_ok=True)
    trash = layout.tmp / _fs.staging_name("gc")
    trash.mkdir()
    moved: list[tuple[Path, Path]] = []
    try:
        for i, path in enumerate(candidates):
            dest = trash / f"{i}-{path.name}"
            try:
                os.rename(path, dest)
            except FileNotFoundError:
                continue
            moved.append((path, dest))
        manifests, blobs, complete = live_set(reg)
        removed = []
        for path, dest in moved:
            live = (not complete) or (path.name in blobs if path.parent.parent == layout.blobs else path.name in manifests)
            if live:
                try:
                    if dest.is_dir():
                        _fs.rename_dir_new(dest, path)
                    else:
                        _fs.link_new(dest, path)
                except OSError:
                    pass
            else:
                removed.append(path)
        return removed
    finally:
        _fs.remove_path(trash)


def _old(path: Path, min_age_s: float, now: float) -> bool:
    """True if ``path`` was neither created nor (hard-)linked in the last ``min_age_s`` seconds."""
    if min_age_s <= 0:
        return True
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return now - max(st.st_ctime, st.st_mtime) >= min_age_s


def gc(reg: Any, *, dry_run: bool, staging_max_age_s: float, min_age_s: float) -> GcPlan:
    """See :meth:`Registry.gc`."""
    layout = reg._layout
    now = time.time()
    plan = GcPlan()
    manifests, blobs, complete = live_set(reg)
    try:
        entries = os.listdir(layout.tmp)
    except FileNotFoundError:
        entries = []
    for entry in entries:
        p = layout.tmp / entry
        try:
            mtime = os.lstat(p).st_mtime
        except FileNotFoundError:
            continue
        if not _fs.staging_owner_alive(entry, max_age_s=staging_max_age_s, mtime=mtime):
            plan.staging.append(p)
    if complete:
        plan.blobs = [p for p in _all_blobs(layout) if p.name not in blobs and _old(p, min_age_s, now)]
        try:
            plan.trees = [
                layout.trees / t for t in os.listdir(layout.trees) if t not in manifests and _old(layout.trees / t, min_age_s, now)
            ]
        except FileNotFoundError:
            pass
        try:
            plan.state = [layout.verified / s for s in os.listdir(layout.verified) if s[:-5] not in manifests]
        except FileNotFoundError:
            pass
        try:
            plan.artifacts = [layout.artifacts / a for a in os.listdir(layout.artifacts) if a not in blobs]
        except FileNotFoundError:
            pass
    plan.bytes = sum(_size(p) for p in plan.paths)
    if dry_run:
        return plan
    for p in plan.staging + plan.artifacts + plan.state:
        _fs.remove_path(p)
    removed = set(remove_unreferenced(reg, plan.blobs + plan.trees))
    plan.blobs = [p for p in plan.blobs if p in removed]
    plan.trees = [p for p in plan.trees if p in removed]
    plan.done = True
    return plan
