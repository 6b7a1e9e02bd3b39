"""Registering a model file or directory as a new immutable version (see :meth:`Registry.register`).

Steps, each a fault point (``_faults``) for the crash tests: ``copy`` the source into a private
staging directory while hashing it (``staged``), publish each distinct content as a read-only
blob (``blobs``), then the manifest blob (``manifest``) and the version's tree (``tree``), and
last the write-once pointer (``pointer`` / ``published``). Everything a pointer refers to is
published before it and checked again after it (restoring from the staged copies anything a
concurrent ``gc`` took), so a visible version is always whole; a process killed at any step
leaves no version, only leftovers gc removes. Auto labels (``1``, ``2``, ...) are claimed by
trying the next integer until a pointer link succeeds, so concurrent registrars never share one.
A registration that fails withdraws the blobs and trees it created (unless something uses them).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._errors import InvalidInputError, RegistryError, VersionConflictError
from . import _blobs, _faults, _fs
from ._alias_moves import alias_after_publish
from ._describe import Describer, describe
from ._dirs import remove_path, walk
from ._gc import discard
from ._manifest import FileEntry, Manifest, canonical_bytes, check_nesting, loads
from ._names import label_key, validate_alias, validate_label, validate_name, validate_relpath
from ._store import Store
from ._types import ModelVersion

__all__ = ["register", "check_metadata"]

_PRIMARY_SUFFIXES = (".onnx", ".xml", ".engine", ".plan")
_MAX_METADATA_DEPTH = 64  # levels of dicts/lists in register(metadata=...)
_MAX_METADATA_VALUES = 2_000_000
_MAX_METADATA_BYTES = 8 << 20  # leaves room in the manifest (read back with a 16 MiB limit)


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The metadata as plain JSON values; :class:`InvalidInputError` unless it is a dict with str
    keys, JSON-serialisable, nested at most 64 levels (checked iteratively, before encoding) and
    at most 8 MiB as JSON."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise InvalidInputError(f"metadata must be a dict with str keys, got {type(metadata).__name__}")
    try:
        check_nesting(metadata, max_depth=_MAX_METADATA_DEPTH, max_values=_MAX_METADATA_VALUES)
    except ValueError as exc:
        raise InvalidInputError(
            f"metadata is too large or too deeply nested: {exc}; the limits are {_MAX_METADATA_DEPTH} levels "
            f"of dicts/lists and {_MAX_METADATA_VALUES} values (keep large data in the model's files)"
        ) from None
    try:
        data = canonical_bytes(dict(metadata))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metadata must be JSON-serialisable (no NaN), got an error: {exc}") from exc
    if len(data) > _MAX_METADATA_BYTES:
        raise InvalidInputError(
            f"metadata is {len(data)} bytes as JSON; the limit is {_MAX_METADATA_BYTES} bytes "
            f"(keep large data in the model's files)"
        )
    return loads(data)  # type: ignore[no-any-return]


def register(
    store: Store,
    name: str,
    source: str | os.PathLike[str],
    *,
    version: str | None,
    alias: str | None,
    metadata: Mapping[str, Any] | None,
    describer: Describer | None,
) -> ModelVersion:
    """See :meth:`Registry.register`; ``describer`` gives the version's ``model_info``."""
    store.require_writable("register")
    validate_name(name)
    if version is not None:
        validate_label(version)
    if alias is not None:
        validate_alias(alias)
    meta = check_metadata(metadata)
    src = Path(source)
    _check_source(name, src)
    created: list[Path] = []  # blobs and trees this call created, discarded if it fails
    try:
        store.init_root()
        with store.staging("reg") as stage:
            mv = _register_staged(store, name, src, stage, version, meta, describer, created)
    except OSError as exc:
        discard(store, created)
        raise _fs.os_error(f"registering {name!r} from {src}", exc) from exc
    except BaseException:
        discard(store, created)
        raise
    if alias is not None:
        alias_after_publish(store, mv, alias)
    return mv


def _check_source(name: str, src: Path) -> None:
    """``src`` must be a regular file (or a symlink to one) or a directory."""
    try:
        st = os.stat(src)
    except FileNotFoundError as exc:
        raise RegistryError(f"cannot register {name!r}: source {src} does not exist") from exc
    except OSError as exc:
        raise RegistryError(f"cannot register {name!r}: source {src} is unreadable: {exc}") from exc
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise RegistryError(
            f"cannot register {name!r}: source {src} must be a regular file or a directory, "
            f"got a {_fs.file_kind(st.st_mode)}"
        )


def _walk(src: Path) -> list[tuple[Path, str]]:
    """Files of a directory model as ``(absolute path, relative POSIX path)``, sorted; refuses links."""
    out: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in walk(src):  # iterative: any depth
        for d in list(dirnames):
            if os.path.islink(os.path.join(dirpath, d)):
                raise RegistryError(f"directory models must not contain symlinks, got {os.path.join(dirpath, d)}")
        for fn in filenames:
            full = Path(dirpath) / fn
            if full.is_symlink() or not full.is_file():
                raise RegistryError(f"directory models may hold only regular files, got {full}")
            rel = validate_relpath(full.relative_to(src).as_posix())
            if rel.lower() in seen:
                raise RegistryError(f"two files differ only in case: {rel!r}")
            seen.add(rel.lower())
            out.append((full, rel))
    if not out:
        raise RegistryError(f"directory model {src} holds no files")
    return sorted(out, key=lambda t: t[1])


def _pick_primary(rels: Sequence[str]) -> str | None:
    top = [r for r in rels if "/" not in r and r.lower().endswith(_PRIMARY_SUFFIXES)]
    return top[0] if len(top) == 1 else None


def _stage_files(
    src: Path, stage: Path, describer: Describer | None, draft: Manifest
) -> tuple[Manifest, dict[str, Path]]:
    """Copy ``src`` into ``stage/files`` while hashing it; returns ``draft`` completed with the
    kind, primary file, files and model info, and the staged copy of each distinct blob."""
    files_dir = stage / "files"
    _fs.make_dir(files_dir)
    if src.is_dir():
        kind, entries = "directory", _walk(src)
    else:
        kind, entries = "file", [(src, validate_relpath(src.name))]
    sources: dict[str, Path] = {}
    files = []
    for full, rel in entries:
        dest = files_dir.joinpath(*rel.split("/"))
        _fs.make_dir(dest.parent, parents=True, exist_ok=True)
        hx, size = _fs.copy_hashing(full, dest, fault="copy")
        sources.setdefault(hx, dest)
        files.append(FileEntry(rel, "sha256:" + hx, size))
    rels = [f.path for f in files]
    primary = rels[0] if kind == "file" else _pick_primary(rels)
    model_info = describe(describer, files_dir.joinpath(*primary.split("/"))) if primary else None
    m = Manifest(draft.name, draft.version, kind, primary, tuple(files), draft.metadata, model_info)
    return m, sources


def _register_staged(
    store: Store, name: str, src: Path, stage: Path, version: str | None, meta: dict[str, Any],
    describer: Describer | None, created: list[Path],
) -> ModelVersion:
    draft, sources = _stage_files(src, stage, describer, Manifest(name, version or "0", "file", None, (), meta, None))
    _faults.point("staged")
    for hx, staged in sources.items():
        _fs.make_readonly(staged)
        size = next(f.size for f in draft.files if f.hex == hx)
        store.put_blob(staged, hx, size, created)
    _faults.point("blobs")
    pointers = store.pointers(name)
    if version is not None:
        return _publish(store, draft, version, stage, sources, created, fixed=True)
    for label, ptr in sorted(pointers.items(), key=lambda t: label_key(t[0])):
        if not ptr.get("deleted"):
            existing = store.version(name, label, ptr)
            if _same(existing, draft):
                return existing
    ints = [int(lb) for lb in pointers if lb.isdigit() and len(lb) <= 18]
    return _publish(store, draft, str(max(ints, default=0) + 1), stage, sources, created, fixed=False)


def _publish(
    store: Store, draft: Manifest, label: str, stage: Path, sources: dict[str, Path], created: list[Path],
    *, fixed: bool,
) -> ModelVersion:
    """Publish ``draft`` as ``label`` (manifest, tree, then the pointer). A label taken meanwhile:
    the version there if it has the same content; else, for an auto label (``fixed=False``),
    the next integer is tried; for a fixed one :class:`VersionConflictError`."""
    name = draft.name
    while True:
        m = Manifest(name, label, draft.kind, draft.primary, draft.files, draft.metadata, draft.model_info)
        mhex = _stage_manifest(store, m, stage, sources, created)
        _faults.point("manifest")
        store.put_tree(m, mhex, sources, created)
        _faults.point("tree")
        store.ensure_published(m, mhex, sources)
        pstaged = stage / f"pointer-{label}"
        remove_path(pstaged)
        ptr = store.stage_pointer(pstaged, mhex)
        _faults.point("pointer")
        if store.link_pointer(pstaged, name, label):
            _faults.point("published")
            del created[:]  # in use now: nothing to discard on a later error
            store.ensure_published(m, mhex, sources)
            return store.version(name, label, ptr)
        existing = _label_taken(store, m, mhex, fixed=fixed)
        if existing is not None:
            return existing
        label = str(int(label) + 1)


def _stage_manifest(store: Store, m: Manifest, stage: Path, sources: dict[str, Path], created: list[Path]) -> str:
    """Stage and publish the manifest blob of ``m``; returns its hex digest (also added to ``sources``)."""
    data = m.encode()
    if len(data) > _blobs.MAX_MANIFEST:
        raise RegistryError(
            f"cannot register {m.name!r}: its manifest would be {len(data)} bytes, more than the "
            f"{_blobs.MAX_MANIFEST} a manifest may have (too many files, or too much metadata)"
        )
    mhex = hashlib.sha256(data).hexdigest()
    mstaged = stage / f"manifest-{mhex}"
    if not mstaged.exists():
        _fs.write_new_file(mstaged, data, readonly=True)
    store.put_blob(mstaged, mhex, len(data), created)
    sources[mhex] = mstaged
    return mhex


def _label_taken(store: Store, m: Manifest, mhex: str, *, fixed: bool) -> ModelVersion | None:
    """Another registrar published ``m.version`` first: its version if it has the same content;
    else None (try the next label) or, for a ``fixed`` label, :class:`VersionConflictError`."""
    existing_ptr = store.read_pointer(m.name, m.version)
    if existing_ptr is not None and not existing_ptr.get("deleted"):
        existing = store.version(m.name, m.version, existing_ptr)
        if _same(existing, m):
            return existing
    if not fixed:
        return None
    if existing_ptr is not None and existing_ptr.get("deleted"):
        raise VersionConflictError(f"version {m.name}:{m.version} was deleted; labels are never reused")
    theirs = existing_ptr["manifest"] if existing_ptr else "?"
    raise VersionConflictError(
        f"version {m.name}:{m.version} already exists with other content: expected {theirs}, "
        f"got sha256:{mhex} (versions are immutable; register under a new label)"
    )


def _same(mv: ModelVersion, m: Manifest) -> bool:
    return (
        tuple(mv.files) == m.files
        and mv.kind == m.kind
        and (mv.path.relative_to(mv.root).as_posix() if mv.path != mv.root else None) == m.primary
        and canonical_bytes(dict(mv.metadata)) == canonical_bytes(dict(m.metadata))
    )
