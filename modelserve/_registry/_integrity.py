"""Integrity checks: the cheap check before each load, and the full :func:`verify`.

Before a load every file's size is compared with the manifest. Its sha256 is computed on first
use and again whenever the file's (size, mtime, ctime, inode, device) differ from what was recorded
when it was last hashed, or when that record is "racy" (the file's mtime is within 2 s of the
moment it was hashed, so a later write could keep the same mtime - git's rule). Records live in
``state/verified/<manifest hex>.json``, replaced atomically; concurrent processes may both hash
and both write a correct record, which is harmless. An edit whose mtime is put back
(``os.utime``) still changes the ctime, which no user can set, so it is hashed again; any
``OSError`` reading a file becomes :class:`IntegrityError`. :func:`verify` always hashes
everything, and also reports files in a version's tree that its manifest does not list.

A concurrent ``gc`` may move a live version's tree into its trash and put it back an instant
later (see ``_gc``). A file found missing while a gc is running (a ``tmp/gc-*`` trash exists),
or of a version published moments ago (its registrar may be restoring what gc took), is
therefore waited for, as for resolve (``_blobs.retry_while_gc``); if it is still missing after
``_blobs.TRANSIENT_WAIT_S`` while a gc runs, the :class:`IntegrityError` says so and to retry.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

from .._errors import IntegrityError, ModelserveError, RegistryError
from . import _blobs, _fs
from ._dirs import walk
from ._layout import Layout
from ._manifest import canonical_bytes, loads
from ._names import Ref, parse_ref, validate_alias, validate_label, validate_name
from ._resolve import resolve
from ._store import Store
from ._types import ModelVersion, Problem, VerifyReport

__all__ = ["check_version", "verify"]

_RACY_NS = 2_000_000_000


def _stat_key(st: os.stat_result) -> list[int]:
    # ctime cannot be set by a user (utime restores mtime, not ctime), so an edit whose mtime
    # was put back is still seen as a change.
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _hash(mv: ModelVersion, rel: str, p: Path) -> str:
    try:
        return _fs.hash_file(p)[0]
    except FileNotFoundError as exc:
        raise IntegrityError(f"{mv.ref}: file {rel!r} is missing (it vanished while being hashed)") from exc
    except OSError as exc:
        raise IntegrityError(f"{mv.ref}: file {rel!r} is unreadable: {exc}") from exc


def _load_state(path: Path) -> dict[str, Any]:
    try:
        obj = loads(_fs.read_small(path, 1 << 20))
        return obj if isinstance(obj, dict) and isinstance(obj.get("files"), dict) else {}
    except (OSError, ValueError):
        return {}


def check_version(store: Store, mv: ModelVersion, *, full: bool = False) -> None:
    """See :meth:`Registry.check`. Files missing because a concurrent gc has them in flight are
    waited for (see the module docstring)."""
    _blobs.retry_while_gc(store.layout, lambda: _check_once(store, mv, full=full), created_ns=mv.created_ns)


def _check_once(store: Store, mv: ModelVersion, *, full: bool) -> None:
    """One pass of :func:`check_version`; a missing file raises IntegrityError from FileNotFoundError."""
    layout = store.layout
    mhex = _blobs.hex_of(mv.digest)
    state_path = layout.verified_state(mhex)
    state = {} if full else _load_state(state_path)
    at_ns = int(state.get("at_ns", 0))
    recorded = state.get("files", {})
    new_files: dict[str, list[int]] = {}
    hashed = False
    started = time.time_ns()
    for f in mv.files:
        p = mv.root.joinpath(*f.path.split("/"))
        try:
            st = os.stat(p)
        except FileNotFoundError as exc:
            raise IntegrityError(f"{mv.ref}: file {f.path!r} is missing (expected {f.digest}, {f.size} bytes)") from exc
        except OSError as exc:
            raise IntegrityError(f"{mv.ref}: file {f.path!r} is unreadable: {exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError(f"{mv.ref}: {f.path!r} is not a regular file (expected {f.digest}, {f.size} bytes)")
        key = _stat_key(st)
        if st.st_size != f.size:
            actual = _hash(mv, f.path, p)
            raise IntegrityError(
                f"{mv.ref}: file {f.path!r} is {st.st_size} bytes, expected {f.size} (truncated or modified): "
                f"expected {f.digest}, got sha256:{actual}"
            )
        trusted = recorded.get(f.path) == key and st.st_mtime_ns < at_ns - _RACY_NS
        if not trusted:
            actual = _hash(mv, f.path, p)
            hashed = True
            if actual != f.hex:
                raise IntegrityError(f"{mv.ref}: file {f.path!r} was modified: expected {f.digest}, got sha256:{actual}")
        new_files[f.path] = key
    if hashed and not store.read_only:
        data = canonical_bytes({"at_ns": started, "files": new_files})
        try:
            _fs.replace_bytes(layout.tmp, state_path, data)
        except OSError:
            pass  # a cache only: failing to record means hashing again next time


def _extra_entries(mv: ModelVersion) -> list[str]:
    """Paths under a version's tree that its manifest does not list (files, links, odd entries)."""
    expected = {f.path for f in mv.files}
    dirs = {"/".join(f.path.split("/")[:i]) for f in mv.files for i in range(1, f.path.count("/") + 1)}
    out = []
    try:
        for dirpath, dirnames, filenames in walk(mv.root):
            rel_dir = Path(dirpath).relative_to(mv.root).as_posix()
            prefix = "" if rel_dir == "." else rel_dir + "/"
            for d in list(dirnames):
                if prefix + d not in dirs or os.path.islink(os.path.join(dirpath, d)):
                    out.append(prefix + d + "/")
                    dirnames.remove(d)
            out.extend(prefix + fn for fn in filenames if prefix + fn not in expected)
    except OSError as exc:  # pragma: no cover - races with a concurrent gc
        out.append(f"(cannot list {mv.root}: {exc})")
    return sorted(out)


class _BlobCheck:
    """Hashes each blob once per :func:`verify`: ``check(hex, size)`` is a problem message or None."""

    def __init__(self, layout: Layout, report: VerifyReport) -> None:
        self.layout = layout
        self.report = report
        self.seen: dict[str, str | None] = {}

    def __call__(self, hx: str, size: int) -> str | None:
        if hx not in self.seen:
            self.seen[hx] = self._check(hx, size)
        return self.seen[hx]

    def _check(self, hx: str, size: int) -> str | None:
        p = self.layout.blob(hx)
        try:
            actual, actual_size = _fs.hash_file(p)
        except FileNotFoundError:
            return f"blob {p} is missing (expected sha256:{hx}, {size} bytes)"
        except OSError as exc:
            return f"blob {p} is unreadable (expected sha256:{hx}, {size} bytes): {exc}"
        self.report.bytes_hashed += actual_size
        if actual != hx:
            return f"blob {p} expected sha256:{hx}, got sha256:{actual} ({actual_size} bytes, expected {size})"
        return None


def verify(store: Store, ref: str | None = None) -> VerifyReport:
    """See :meth:`Registry.verify`."""
    report = VerifyReport()
    check_blob = _BlobCheck(store.layout, report)
    r = parse_ref(ref) if ref is not None else None
    if r is not None:
        names = [r.name]
    else:
        try:
            names = sorted(_fs.list_dir(store.layout.models))
        except OSError as exc:
            raise RegistryError(f"verify cannot list the models of {store.root}: {exc}") from exc
    for name in names:
        try:
            validate_name(name)
        except ModelserveError:
            report.problems.append(Problem("stray", str(store.layout.models / name), "not a valid model name"))
            continue
        if r is not None:
            try:
                labels = [resolve(store, r).version]
            except ModelserveError as exc:
                report.problems.append(Problem("version", ref or name, str(exc)))
                continue
        else:
            labels = _labels(store, name, report)
        for label in labels:
            _verify_version(store, name, label, check_blob, report)
        if r is None:
            _verify_aliases(store, name, report)
    return report


def _labels(store: Store, name: str, report: VerifyReport) -> list[str]:
    """Every entry under the versions of ``name`` (checked one by one by :func:`_verify_version`)."""
    try:
        return sorted(os.listdir(store.layout.versions(name)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        report.problems.append(Problem("version", name, f"versions are unreadable: {exc}"))
        return []


def _verify_version(store: Store, name: str, label: str, check_blob: _BlobCheck, report: VerifyReport) -> None:
    """Check the pointer, manifest, blobs and tree of ``name:label``; record a fresh
    verification when everything is right (writable registries only)."""
    subject = f"{name}:{label}"
    try:
        validate_label(label)
        ptr = store.read_pointer(name, label)
        if ptr is None or ptr.get("deleted"):
            return
        mv = store.version(name, label, ptr)
    except ModelserveError as exc:
        report.problems.append(Problem("version", subject, str(exc)))
        return
    except OSError as exc:
        report.problems.append(Problem("version", subject, f"unreadable: {exc}"))
        return
    report.versions_checked += 1
    bad = _verify_files(store, mv, subject, check_blob, report)
    for extra in _extra_entries(mv):
        report.problems.append(Problem("tree", subject, f"unexpected entry in the version's files: {extra}"))
        bad = True
    if not bad and not store.read_only:
        try:
            check_version(store, mv, full=True)  # records the fresh verification
        except (IntegrityError, OSError):
            pass


def _verify_files(store: Store, mv: ModelVersion, subject: str, check_blob: _BlobCheck, report: VerifyReport) -> bool:
    """Check each file's blob and its tree entry; True if any problem was recorded."""
    bad = False
    for f in mv.files:
        report.files_checked += 1
        msg = check_blob(f.hex, f.size)
        if msg:
            report.problems.append(Problem("blob", subject, f"{f.path}: {msg}"))
            bad = True
            continue
        tp = mv.root.joinpath(*f.path.split("/"))
        try:
            same = os.path.samefile(tp, store.layout.blob(f.hex))
            if not same:
                actual, _ = _fs.hash_file(tp)
                if actual != f.hex:
                    raise IntegrityError(f"expected {f.digest}, got sha256:{actual}")
        except (OSError, IntegrityError) as exc:
            report.problems.append(Problem("tree", subject, f"{f.path}: {exc}"))
            bad = True
    return bad


def _verify_aliases(store: Store, name: str, report: VerifyReport) -> None:
    """Every alias history of ``name`` must parse and its target must resolve."""
    try:
        entries = sorted(os.listdir(store.layout.aliases(name)))
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    except OSError as exc:
        report.problems.append(Problem("alias", name, f"aliases are unreadable: {exc}"))
        entries = []
    for entry in entries:
        alias = entry[: -len(".jsonl")] if entry.endswith(".jsonl") else entry
        try:
            validate_alias(alias)
            if store.alias_stack(name, alias):
                resolve(store, Ref(name, alias=alias))
        except ModelserveError as exc:
            report.problems.append(Problem("alias", f"{name}@{alias}", str(exc)))
