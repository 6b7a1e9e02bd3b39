"""Blobs and trees: file contents named by their sha256, and per-version trees of hard links.

Blobs are published from complete staged files with ``os.link`` and are read-only (0444). A
version's *tree* (``trees/<manifest hex>/``) holds its files under their own names, as hard links
to the blobs (copies where the file system has no hard links), so engines that look at file
names or sibling files (``model.xml`` + ``model.bin``) get what they expect. Trees are staged
complete and renamed into place, so a tree that exists is whole.

These functions work on a :class:`~._layout.Layout` alone; :class:`~._store.Store` (pointers,
manifests, versions) and ``_gc`` build on them. A running gc moves candidates into its trash
under ``tmp/`` before deleting them (see ``_gc``): :func:`trash_copy`, :func:`restore_blob` and
:func:`retry_while_gc` let readers find and wait for what it has in flight.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from .._errors import IntegrityError
from . import _fs
from ._dirs import remove_path
from ._layout import Layout
from ._manifest import Manifest
from ._staging import staging_path

__all__ = ["put_blob", "read_manifest_blob", "materialize_tree", "hex_of", "trash_copy", "restore_blob", "MAX_MANIFEST",
           "TRANSIENT_WAIT_S", "YOUNG_NS", "gc_in_progress", "retry_while_gc"]

#: The largest manifest the registry writes or reads (register refuses bigger ones up front).
MAX_MANIFEST = 16 << 20


def hex_of(digest: str) -> str:
    """``sha256:<hex>`` -> ``<hex>``."""
    return digest.split(":", 1)[1] if digest.startswith("sha256:") else digest


def put_blob(layout: Layout, staged: Path, hexdigest: str, size: int) -> bool:
    """Publish the complete, read-only staged file as blob ``hexdigest``.

    Returns True if this call created (or repaired) the blob, False if an intact one already
    existed. An existing blob is reused only after hashing it: one of the wrong size or digest
    (damaged), or anything that is not a regular file, is atomically replaced by the staged
    copy, so a new version is never born from damaged bytes. (Trees of older versions still
    link the damaged inode; :meth:`Registry.verify` reports them.)
    """
    target = layout.blob(hexdigest)
    if _fs.link_new(staged, target):
        return True
    try:
        st = os.lstat(target)
        if stat.S_ISREG(st.st_mode) and st.st_size == size and _fs.hash_file(target) == (hexdigest, size):
            return False
    except FileNotFoundError:
        return put_blob(layout, staged, hexdigest, size)  # a concurrent gc took it: publish ours
    except OSError:
        pass  # unreadable: replace it
    spare = staged.with_name(staged.name + ".relink")
    remove_path(spare)
    os.link(staged, spare)
    try:
        try:
            os.replace(spare, target)
        except (IsADirectoryError, NotADirectoryError):
            remove_path(target)  # a directory (or worse) squats the name: clear it, then publish
            if not _fs.link_new(spare, target):
                return put_blob(layout, staged, hexdigest, size)
    finally:
        remove_path(spare)
    _fs.fsync_dir(target.parent)
    return True


def trash_copy(layout: Layout, hexdigest: str) -> Path | None:
    """Blob ``hexdigest`` as a running (or dead) gc moved it into its trash, or None.

    gc moves candidates away, reads the live set again and puts back what became live (see
    ``_gc``); a reader that finds a blob missing in that window takes it from there.
    """
    try:
        entries = os.listdir(layout.tmp)
    except OSError:
        return None
    for entry in entries:
        if not entry.startswith("gc-"):
            continue
        try:
            names = os.listdir(layout.tmp / entry)
        except OSError:
            continue
        for n in names:
            parts = n.split("-")
            if parts[-1] == hexdigest and (len(parts) == 2 or (len(parts) == 3 and parts[0] == "b")):
                p = layout.tmp / entry / n
                try:
                    if stat.S_ISREG(os.lstat(p).st_mode):
                        return p
                except OSError:
                    continue
    return None


def restore_blob(layout: Layout, hexdigest: str) -> bool:
    """Hard-link blob ``hexdigest`` back from a gc trash if it is there; True if the blob exists now.

    The trash copy stays (gc deletes it or puts it back itself); linking is atomic, so the blob
    is whole or absent.
    """
    target = layout.blob(hexdigest)
    src = trash_copy(layout, hexdigest)
    if src is not None:
        try:
            _fs.link_new(src, target)
        except OSError:
            pass  # gc deleted its copy meanwhile, or we may not write here
    return target.is_file()


#: How long a reader waits for files a concurrent gc has in flight.
TRANSIENT_WAIT_S = 5.0
#: A version this young may still be being restored by its registrar.
YOUNG_NS = 10 * 10**9

T = TypeVar("T")


def gc_in_progress(layout: Layout) -> bool:
    """True while some gc's trash directory exists under ``tmp/``."""
    try:
        return any(e.startswith("gc-") for e in os.listdir(layout.tmp))
    except OSError:
        return False


def retry_while_gc(layout: Layout, attempt: Callable[[], T], *, created_ns: int) -> T:
    """``attempt()``, retried while a file it needs is missing because a concurrent gc has it in
    flight: an :class:`IntegrityError` caused by ``FileNotFoundError`` is retried for up to
    :data:`TRANSIENT_WAIT_S` while a gc's trash exists or the version (published at
    ``created_ns``) is young enough that its registrar may be restoring what gc took. Any other
    error, or the same one after that, is raised; if a gc was seen running, its message says so
    and to retry."""
    deadline = time.monotonic() + TRANSIENT_WAIT_S
    saw_gc = False
    while True:
        try:
            return attempt()
        except IntegrityError as exc:
            if not isinstance(exc.__cause__, FileNotFoundError):
                raise
            gc_running = gc_in_progress(layout)
            saw_gc = saw_gc or gc_running
            young = time.time_ns() - created_ns < YOUNG_NS
            if time.monotonic() > deadline or not (gc_running or young):
                if saw_gc:
                    raise IntegrityError(
                        f"{exc}; a garbage collection was running at the time and may have had the file "
                        f"in flight: retry"
                    ) from exc.__cause__
                raise
            time.sleep(0.01)


def read_manifest_blob(layout: Layout, manifest_hex: str, *, where: str, restore: bool = True) -> bytes:
    """Read manifest blob bytes and check them against their name; raise :class:`IntegrityError`.

    A manifest a concurrent gc holds in its trash is read from there (and, with ``restore``,
    linked back into the store). Any ``OSError`` (a directory in its place, no permission)
    becomes :class:`IntegrityError`.
    """
    path = layout.blob(manifest_hex)
    try:
        try:
            data = _fs.read_small(path, MAX_MANIFEST)
        except FileNotFoundError:
            src = trash_copy(layout, manifest_hex)
            if src is None:
                raise
            data = _fs.read_small(src, MAX_MANIFEST)
            if restore:
                restore_blob(layout, manifest_hex)
    except FileNotFoundError as exc:
        raise IntegrityError(f"manifest of {where} is missing from the store: {path}") from exc
    except OSError as exc:
        raise IntegrityError(f"manifest of {where} is unreadable at {path}: {exc}") from exc
    except ValueError as exc:
        raise IntegrityError(f"manifest of {where} is too large: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != manifest_hex:
        raise IntegrityError(
            f"manifest of {where} was modified: expected sha256:{manifest_hex}, got sha256:{actual}"
        )
    return data


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES):
            raise
        with _fs.open_read(src) as fh:
            _fs.stream_hashing(fh, dest)
        shutil.copymode(src, dest)


def materialize_tree(
    layout: Layout, manifest: Manifest, manifest_hex: str, sources: Mapping[str, Path] | None = None
) -> Path:
    """Make sure ``trees/<manifest_hex>`` exists and is whole; return it.

    ``sources`` maps blob hexes to a registrar's staged copies: a blob that vanished (a
    concurrent gc) is re-published from there. Otherwise a missing blob raises
    :class:`IntegrityError`.
    """
    tree = layout.tree(manifest_hex)
    if tree.is_dir():
        return tree
    _fs.make_dir(layout.tmp, parents=True, exist_ok=True)
    with staging_path(layout.tmp, "tree") as staged:
        _fs.make_dir(staged)
        _fill_tree(layout, manifest, staged, sources)
        _fs.rename_dir_new(staged, tree)
    return tree


def _fill_tree(layout: Layout, manifest: Manifest, staged: Path, sources: Mapping[str, Path] | None) -> None:
    """Link (or copy) every file of ``manifest`` into the staging directory ``staged``."""
    for f in manifest.files:
        blob = layout.blob(f.hex)
        dest = staged.joinpath(*f.path.split("/"))
        _fs.make_dir(dest.parent, parents=True, exist_ok=True)
        try:
            _link_or_copy(blob, dest)
            continue
        except FileNotFoundError as exc:
            missing = exc
        if sources is not None and f.hex in sources:
            _fs.link_new(sources[f.hex], blob)
            _link_or_copy(sources[f.hex], dest)
        elif restore_blob(layout, f.hex):  # a concurrent gc had it in its trash
            _link_or_copy(blob, dest)
        else:
            raise IntegrityError(
                f"{manifest.name}:{manifest.version}: blob of {f.path!r} is missing from the store "
                f"(expected {f.digest}, {f.size} bytes)"
            ) from missing
