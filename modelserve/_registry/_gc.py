"""Garbage collection without locks.

What is live: every version pointer that is not a tombstone, its manifest blob, the blobs its
manifest lists, its tree, its verification record, and artifacts keyed by any live digest.
Everything else under ``blobs/``, ``trees/``, ``state/`` and ``artifacts/`` is garbage, and so
is a staging entry under ``tmp/`` whose process is dead (same host) or that is older than the
age limit.

Removing blobs and trees races with registrations that are about to use them. The
protocol: gc first *moves* candidates into its own staging directory, then scans the live set
again and moves back anything that became live; a registrar checks after publishing its pointer
that everything it uses exists and re-links what is missing from its staged copies. Either
gc's second scan sees the new pointer, or the registrar's check sees the removal, so no
published version loses a file for good. A reader could still catch such a version in the
instant between gc's move and the restore, so by default gc also leaves alone blobs and trees
created or hard-linked (ctime) in the last ``min_age_s`` seconds (10 minutes): a registrar
hard-links every blob it uses into its tree before publishing, which refreshes the ctime.
If any manifest cannot be read, no blob or tree is removed. A gc killed between its move and
its rescan leaves its trash directory behind; the next gc puts back from it everything a
published version uses before deleting the rest, and never deletes an entry in use.
Artifacts are removed only when their source is gone and they are older than ``min_age_s``.

A full disk: gc is the tool for it, so it frees space without first needing any. Staging
leftovers, dead artifacts and verification records go first (unlinks need no space). If the
trash directory then cannot be created (``ENOSPC``/``EDQUOT``: a new directory needs an inode
and maybe a block), candidates are removed *directly*, one at a time: trees first (removing
one frees a directory at once, and a tree is rebuilt from its blobs if a race took it), the
live set read again right before each removal and ``min_age_s`` checked again; after each
removal gc tries to create its trash again and goes back to move-then-rescan for everything
left as soon as that works (usually after the first entry). The direct mode narrows, but
cannot close, the race the trash protocol closes: with ``min_age_s=0`` a version published
in the instant between that re-read and the unlink may lose a blob its registrar already
checked. With the default ``min_age_s`` it cannot happen (a registrar links every blob it uses
just before publishing, which makes the blob young), and on a full disk such a registration
would fail for lack of space anyway. Any ``OSError`` left (or a damaged layout, such as a file
where ``trees/`` belongs) becomes a :class:`RegistryError`; what gc removed until then stays
removed, and nothing in use is deleted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable, Sequence

from .._errors import ModelserveError, RegistryError
from . import _blobs, _faults, _fs
from ._dirs import remove_path, tree_size
from ._layout import Layout
from ._names import validate_label, validate_name
from ._staging import staging_done, staging_name, staging_owner_alive
from ._store import Store
from ._types import GcPlan

__all__ = ["gc", "live_set", "remove_unused", "drain_trash", "discard"]


def live_set(store: Store) -> tuple[set[str], set[str], bool]:
    """``(live manifest hexes, live blob hexes (manifests included), complete)``."""
    layout = store.layout
    manifests: set[str] = set()
    blobs: set[str] = set()
    complete = True
    for name in _fs.list_dir(layout.models):
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
                ptr = store.read_pointer(name, label)
            except ModelserveError:
                complete = False
                continue
            if ptr is None or ptr.get("deleted"):
                continue
            mhex = _blobs.hex_of(ptr["manifest"])
            manifests.add(mhex)
            blobs.add(mhex)
            try:
                m = store.manifest(mhex, f"{name}:{label}")
            except ModelserveError:
                complete = False
                continue
            blobs.update(f.hex for f in m.files)
    return manifests, blobs, complete


def _all_blobs(layout: Layout) -> list[Path]:
    out: list[Path] = []
    for sub in _fs.list_dir(layout.blobs):
        try:
            out.extend(layout.blobs / sub / h for h in os.listdir(layout.blobs / sub))
        except NotADirectoryError:
            out.append(layout.blobs / sub)
        except FileNotFoundError:
            continue
    return out


def _kind(layout: Layout, path: Path) -> str:
    """``"blob"`` or ``"tree"``: which part of the store the candidate ``path`` is in."""
    return "blob" if path.parent.parent == layout.blobs else "tree"


def _trash_name(layout: Layout, i: int, path: Path) -> str:
    return f"{_kind(layout, path)[0]}-{i}-{path.name}"


def _origin(layout: Layout, entry: Path) -> tuple[str, Path] | None:
    """Where a gc trash entry came from: ``("blob" | "tree", original path)``, or None if unknown.

    Entries are ``b-<i>-<hex>`` / ``t-<i>-<hex>``; older gc wrote ``<i>-<hex>`` (a directory is
    then a tree, a file a blob).
    """
    parts = entry.name.split("-")
    hx = parts[-1]
    if len(hx) != 64 or any(c not in "0123456789abcdef" for c in hx):
        return None
    if len(parts) == 3 and parts[0] in ("b", "t"):
        kind = "blob" if parts[0] == "b" else "tree"
    elif len(parts) == 2:
        kind = "tree" if entry.is_dir() and not entry.is_symlink() else "blob"
    else:
        return None
    return kind, (layout.blob(hx) if kind == "blob" else layout.tree(hx))


def _put_back(dest: Path, path: Path) -> bool:
    """Move a trash entry back to ``path``; True if ``path`` holds it (or an equal copy) now."""
    try:
        if dest.is_dir() and not dest.is_symlink():
            if not _fs.rename_dir_new(dest, path):
                return path.is_dir()
        else:
            _fs.link_new(dest, path)  # False: a registrar re-published it already
        return True
    except OSError:
        return False


def _is_live(kind: str, hx: str, manifests: set[str], blobs: set[str], complete: bool) -> bool:
    return (not complete) or (hx in blobs if kind == "blob" else hx in manifests)


def drain_trash(store: Store, trash: Path) -> bool:
    """Empty a gc trash directory left by a gc that died: put back every entry that a published
    version uses (everything, if the live set cannot be read completely), delete the rest.

    Returns True if the trash directory was removed; False if something in use could not
    be put back (the directory is then kept, so nothing in use is ever deleted).
    """
    layout = store.layout
    try:
        entries = sorted(os.listdir(trash))
    except FileNotFoundError:
        return True
    except NotADirectoryError:
        remove_path(trash)
        return True
    manifests, blobs, complete = live_set(store)
    kept = False
    for name in entries:
        dest = trash / name
        origin = _origin(layout, dest)
        if origin is None:
            remove_path(dest)  # not something gc moves: a leftover of the trash itself
            continue
        kind, path = origin
        if _is_live(kind, path.name, manifests, blobs, complete) and not _put_back(dest, path):
            kept = True
            continue
        remove_path(dest)
    if kept:
        return False
    remove_path(trash)
    return True


def remove_unused(store: Store, candidates: Iterable[Path], *, min_age_s: float = 0.0) -> list[Path]:
    """Remove blob/tree paths that no live version uses; returns those removed.

    Normally with the move-rescan protocol (:func:`_move_rescan_remove`). When the disk has no
    room for the trash directory, candidates are removed directly, one at a time (trees first),
    each after reading the live set again and checking ``min_age_s`` again, until the trash can
    be created (see the module docstring).
    """
    layout = store.layout
    pending = sorted(candidates, key=lambda p: _kind(layout, p) == "blob")  # trees first (stable)
    removed: list[Path] = []
    while pending:
        trash = _new_trash(layout)
        if trash is not None:
            return removed + _move_rescan_remove(store, trash, pending)
        path = pending.pop(0)
        if _remove_if_unused(store, path, min_age_s):
            removed.append(path)
    return removed


def _new_trash(layout: Layout) -> Path | None:
    """A new, empty gc trash directory under ``tmp/`` (in use by this process until
    ``_staging.staging_done``), or None when the file system has no room for one."""
    name = staging_name("gc")
    trash = layout.tmp / name
    try:
        _fs.make_dir(layout.tmp, parents=True, exist_ok=True)
        _fs.make_dir(trash)
    except OSError as exc:
        staging_done(name)
        if _fs.is_enospc(exc):
            return None
        raise
    return trash


def _remove_if_unused(store: Store, path: Path, min_age_s: float) -> bool:
    """Delete ``path`` at once if, right now, no live version uses it and it is old enough."""
    manifests, blobs, complete = live_set(store)
    if _is_live(_kind(store.layout, path), path.name, manifests, blobs, complete):
        return False
    if not _old(path, min_age_s, time.time()):
        return False
    remove_path(path)
    return True


def _move_rescan_remove(store: Store, trash: Path, candidates: list[Path]) -> list[Path]:
    """The move-rescan protocol, with the fresh ``trash`` directory.

    Candidates are moved into ``trash``, the live set is read again, and whatever became live
    is moved back; only the rest is deleted. If this process dies in between, the next gc finds
    the dead trash directory and puts back what is in use before deleting anything
    (:func:`drain_trash`).
    """
    layout = store.layout
    moved: list[tuple[Path, Path]] = []
    removed: list[Path] = []
    keep = False
    try:
        for i, path in enumerate(candidates):
            dest = trash / _trash_name(layout, i, path)
            try:
                os.rename(path, dest)
            except FileNotFoundError:
                continue
            moved.append((path, dest))
        _faults.point("gc-trashed")
        manifests, blobs, complete = live_set(store)
        for path, dest in moved:
            if _is_live(_kind(layout, path), path.name, manifests, blobs, complete):
                if not _put_back(dest, path):
                    keep = True
            else:
                removed.append(path)
        return removed
    except BaseException:
        # Interrupted or failed before deciding: put everything back.
        for path, dest in moved:
            if (dest.exists() or dest.is_symlink()) and not _put_back(dest, path):
                keep = True
        removed.clear()
        raise
    finally:
        try:
            if keep:
                # Something in use could not be put back: delete only what is garbage and leave
                # the rest for the next gc's drain_trash.
                for path, dest in moved:
                    if path in removed:
                        remove_path(dest)
            else:
                remove_path(trash)
        finally:
            staging_done(trash.name)  # a kept trash is now a dead gc's, drained next time


def _old(path: Path, min_age_s: float, now: float) -> bool:
    """True if ``path`` was neither created nor (hard-)linked in the last ``min_age_s`` seconds."""
    if min_age_s <= 0:
        return True
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return now - max(st.st_ctime, st.st_mtime) >= min_age_s


def _artifact_old(path: Path, min_age_s: float, now: float) -> bool:
    """An artifact source directory is old if neither it nor any artifact directory in it was
    modified (an artifact published or removed, a file written by an engine) lately."""
    if min_age_s <= 0:
        return True
    try:
        paths = [path, *(path / k for k in os.listdir(path))]
    except (FileNotFoundError, NotADirectoryError):
        paths = [path]
    for p in paths:
        try:
            if now - os.lstat(p).st_mtime < min_age_s:
                return False
        except FileNotFoundError:
            continue
    return True


def gc(store: Store, *, dry_run: bool, staging_max_age_s: float, min_age_s: float) -> GcPlan:
    """See :meth:`Registry.gc`. Every ``OSError`` becomes a :class:`RegistryError`."""
    try:
        return _gc(store, dry_run=dry_run, staging_max_age_s=staging_max_age_s, min_age_s=min_age_s)
    except OSError as exc:
        why = f"no space left on device ({exc})" if _fs.is_enospc(exc) else str(exc)
        raise RegistryError(
            f"gc of {store.root} failed: {why}; what it removed until then stays removed and nothing "
            f"in use was deleted: fix the cause and run gc again"
        ) from exc


def _plan_staging(layout: Layout, plan: GcPlan, staging_max_age_s: float) -> None:
    """Add the dead staging entries under ``tmp/`` to ``plan`` (and ``tmp`` itself if a file squats it)."""
    if os.path.lexists(layout.tmp) and not os.path.isdir(layout.tmp):
        plan.staging.append(layout.tmp)  # nothing but staging lives there: a stray file is junk
        return
    for entry in _fs.list_dir(layout.tmp):
        p = layout.tmp / entry
        try:
            mtime = os.lstat(p).st_mtime
        except FileNotFoundError:
            continue
        if not staging_owner_alive(entry, max_age_s=staging_max_age_s, mtime=mtime):
            plan.staging.append(p)


def _gc(store: Store, *, dry_run: bool, staging_max_age_s: float, min_age_s: float) -> GcPlan:
    layout = store.layout
    now = time.time()
    plan = GcPlan()
    manifests, blobs, complete = live_set(store)
    _plan_staging(layout, plan, staging_max_age_s)
    if complete:
        plan.blobs = [p for p in _all_blobs(layout) if p.name not in blobs and _old(p, min_age_s, now)]
        plan.trees = [
            layout.trees / t for t in _fs.list_dir(layout.trees)
            if t not in manifests and _old(layout.trees / t, min_age_s, now)
        ]
        plan.state = [layout.verified / s for s in _fs.list_dir(layout.verified) if s[:-5] not in manifests]
        plan.artifacts = [
            layout.artifacts / a for a in _fs.list_dir(layout.artifacts)
            if a not in blobs and _artifact_old(layout.artifacts / a, min_age_s, now)
        ]
    plan.bytes = sum(tree_size(p) for p in plan.paths)
    if dry_run:
        return plan
    _faults.point("gc-planned")
    kept = []
    for p in plan.staging:
        if p.name.startswith("gc-"):
            # A dead gc's trash: what it took may be in use again; put that back first.
            if not drain_trash(store, p):
                kept.append(p)
        else:
            remove_path(p)
    plan.staging = [p for p in plan.staging if p not in kept]
    for p in plan.artifacts + plan.state:
        remove_path(p)
    removed = set(remove_unused(store, plan.blobs + plan.trees, min_age_s=min_age_s))
    plan.blobs = [p for p in plan.blobs if p in removed]
    plan.trees = [p for p in plan.trees if p in removed]
    plan.done = True
    return plan


def discard(store: Store, paths: Sequence[Path]) -> None:
    """Best-effort removal of the blobs/trees a failed registration or import created, unless a
    live version uses them (with the same protocol as gc, so a concurrent registrar never loses one)."""
    if not paths:
        return
    try:
        remove_unused(store, paths)
    except (OSError, ModelserveError):
        pass
