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
therefore waited for, as for resolve (``_store.retry_while_gc``); if it is still missing after
``_store.TRANSIENT_WAIT_S`` while a gc runs, the :class:`IntegrityError` says so and to retry.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

from .._errors import IntegrityError, ModelserveError, RegistryError
from . import _aliases, _fs, _store
from ._manifest import canonical_bytes, loads
from ._names import parse_ref, validate_alias, validate_label, validate_name
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


def check_version(reg: Any, mv: ModelVersion, *, full: bool = False) -> None:
    """See :meth:`Registry.check`. Files missing because a concurrent gc has them in flight are
    waited for (see the module docstring)."""
    _store.retry_while_gc(reg._layout, lambda: _check_once(reg, mv, full=full), created_ns=mv.created_ns)


def _check_once(reg: Any, mv: ModelVersion, *, full: bool) -> None:
    """One pass of :func:`check_version`; a missing file raises IntegrityError from FileNotFoundError."""
    layout = reg._layout
    mhex = _store.hex_of(mv.digest)
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
    if hashed and not reg.read_only:
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
        for dirpath, dirnames, filenames in _fs.walk(mv.root):
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


def verify(reg: Any, ref: str | None = None) -> VerifyReport:
    """See :meth:`Registry.verify`."""
    report = VerifyReport()
    layout = reg._layout
    blob_ok: dict[str, str | None] = {}  # hex -> problem message or None

    def check_blob(hx: str, size: int) -> str | None:
        if hx not in blob_ok:
            p = layout.blob(hx)
            try:
                actual, actual_size = _fs.hash_file(p)
                report.bytes_hashed += actual_size
                if actual != hx:
                    blob_ok[hx] = f"blob {p} expected sha256:{hx}, got sha256:{actual} ({actual_size} bytes, expected {size})"
                else:
                    blob_ok[hx] = None
            except FileNotFoundError:
                blob_ok[hx] = f"blob {p} is missing (expected sha256:{hx}, {size} bytes)"
            except OSError as exc:
                blob_ok[hx] = f"blob {p} is unreadable (expected sha256:{hx}, {size} bytes): {exc}"
        return blob_ok[hx]

    if ref is not None:
        r = parse_ref(ref)
        names = [r.name]
    else:
        r = None
        try:
            names = sorted(_fs.list_dir(layout.models))
        except OSError as exc:
            raise RegistryError(f"verify cannot list the models of {reg.root}: {exc}") from exc
    for name in names:
        try:
            validate_name(name)
        except ModelserveError:
            report.problems.append(Problem("stray", str(layout.models / name), "not a valid model name"))
            continue
        if r is not None:
            try:
                targets = [reg._resolve(r)]
            except ModelserveError as exc:
                report.problems.append(Problem("version", ref or name, str(exc)))
                continue
            labels = [t.version for t in targets]
        else:
            try:
                labels = sorted(os.listdir(layout.versions(name)))
            except (FileNotFoundError, NotADirectoryError):
                labels = []
            except OSError as exc:
                report.problems.append(Problem("version", name, f"versions are unreadable: {exc}"))
                labels = []
        for label in labels:
            subject = f"{name}:{label}"
            try:
                validate_label(label)
                ptr = reg._read_pointer(name, label)
                if ptr is None or ptr.get("deleted"):
                    continue
                mv = reg._version(name, label, ptr)
            except ModelserveError as exc:
                report.problems.append(Problem("version", subject, str(exc)))
                continue
            except OSError as exc:
                report.problems.append(Problem("version", subject, f"unreadable: {exc}"))
                continue
            report.versions_checked += 1
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
                    same = os.path.samefile(tp, layout.blob(f.hex))
                    if not same:
                        actual, _ = _fs.hash_file(tp)
                        if actual != f.hex:
                            raise IntegrityError(f"expected {f.digest}, got sha256:{actual}")
                except (OSError, IntegrityError) as exc:
                    report.problems.append(Problem("tree", subject, f"{f.path}: {exc}"))
                    bad = True
            for extra in _extra_entries(mv):
                report.problems.append(Problem("tree", subject, f"unexpected entry in the version's files: {extra}"))
                bad = True
            if not bad and not reg.read_only:
                try:
                    check_version(reg, mv, full=True)  # records the fresh verification
                except (IntegrityError, OSError):
                    pass
        if r is None:
            try:
                entries = sorted(os.listdir(layout.aliases(name)))
            except (FileNotFoundError, NotADirectoryError):
                entries = []
            except OSError as exc:
                report.problems.append(Problem("alias", name, f"aliases are unreadable: {exc}"))
                entries = []
            for entry in entries:
                alias = entry[: -len(".jsonl")] if entry.endswith(".jsonl") else entry
                try:
                    validate_alias(alias)
                    stack = _aliases.replay(_aliases.read_history(layout.alias_history(name, alias)))
                    if stack:
                        reg.resolve(f"{name}@{alias}")
                except ModelserveError as exc:
                    report.problems.append(Problem("alias", f"{name}@{alias}", str(exc)))
    return report
