"""The :class:`Registry`: register, resolve, alias and list immutable model versions.

Concurrency model (no lock is needed for correctness):

* a version label is claimed by ``os.link``-ing a complete pointer file, which fails if the
  label exists, so two processes can never both own one label, and auto labels (``1``, ``2``,
  ...) are found by trying the next integer until a link succeeds;
* everything a pointer refers to (blobs, manifest, tree) is published before the pointer, and
  checked again after it (restoring from the registrar's staged copies anything a concurrent
  ``gc`` took), so a visible version is always whole;
* alias moves are single conditional appends to a history whose replay is the target, retried
  when another writer appended first (see ``_aliases``).

Errors: names break the rules -> :class:`InvalidNameError`; unknown model, label or alias ->
:class:`ModelNotFoundError`; a label taken by other content -> :class:`VersionConflictError`;
stored bytes that differ from their digest -> :class:`IntegrityError`; any other refusal,
including a full disk (the registry is left unchanged) -> :class:`RegistryError`; bad
arguments (metadata that is not JSON, nested deeper than 64 levels or larger than 8 MiB) ->
:class:`InvalidInputError`. Hostile files planted in the registry (FIFOs, devices, deeply
nested JSON, files where directories belong) give one of these, never a hang or a bare
``OSError`` (see ``_fs``).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .._errors import (
    IntegrityError,
    InvalidInputError,
    ModelNotFoundError,
    ModelserveError,
    RegistryError,
    VersionConflictError,
)
from . import _aliases, _faults, _fs, _store
from ._layout import Layout, default_root
from ._manifest import FileEntry, Manifest, canonical_bytes, check_nesting, loads, parse_manifest
from ._names import (
    Ref,
    parse_ref,
    validate_alias,
    validate_label,
    validate_name,
    validate_relpath,
)
from ._types import AliasMove, GcPlan, ModelVersion, VerifyReport

__all__ = ["Registry"]

_FORMAT = 1
_PRIMARY_SUFFIXES = (".onnx", ".xml", ".engine", ".plan")
_MAX_METADATA_DEPTH = 64  # levels of dicts/lists in register(metadata=...)
_MAX_METADATA_VALUES = 2_000_000
_MAX_METADATA_BYTES = 8 << 20  # leaves room in the manifest (read back with a 16 MiB limit)


_os_error = _fs.os_error


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
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


def _describe(path: Path) -> dict[str, Any] | None:
    """Model info from ``modelserve._metadata.describe_model``, or None if unavailable."""
    if path.suffix.lower() != ".onnx":
        return None
    try:
        from .._metadata import describe_model  # lazy: onnxruntime may be missing
    except ImportError:
        return None
    try:
        info = describe_model(str(path))
        return loads(canonical_bytes(info))  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - model info is optional; a describer bug must not block storing
        return None


def _walk(src: Path) -> list[tuple[Path, str]]:
    """Files of a directory model as ``(absolute path, relative POSIX path)``, sorted; refuses links."""
    out: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in _fs.walk(src):  # iterative: any depth
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


class Registry:
    """A version-pinned local model registry rooted at one directory.

    ``root``: the directory (created on first write); default :func:`default_root`
    (``$MODELSERVE_HOME``, else the user cache dir). ``read_only=True``: never writes anything
    under ``root`` (registering, aliasing, gc and verification records are refused or skipped).
    Safe to share between threads and processes.

    Example::

        reg = Registry()
        mv = reg.register("det", "yolov8n.onnx", alias="prod")
        reg.resolve("det@prod").path    # .../trees/<hex>/yolov8n.onnx
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, read_only: bool = False) -> None:
        self.root = Path(root if root is not None else default_root()).expanduser().absolute()
        self.read_only = bool(read_only)
        self._layout = Layout(self.root)
        self._check_root()
        if self._layout.marker.exists():
            self._check_marker()

    def _check_root(self) -> None:
        """``root`` must be a directory, or not exist yet (it is created on first write)."""
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            return
        except NotADirectoryError as exc:
            raise RegistryError(
                f"registry root {self.root} is not a directory: a parent of it is a file; pass a directory"
            ) from exc
        except OSError as exc:
            raise RegistryError(f"registry root {self.root} is not accessible: {exc}") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise RegistryError(
                f"registry root {self.root} is not a directory (it is a {_fs.file_kind(st.st_mode)}); "
                f"pass a directory, or a path where one can be created"
            )

    def __repr__(self) -> str:
        return f"Registry(root={str(self.root)!r}, read_only={self.read_only})"

    # ------------------------------------------------------------------ plumbing
    def _check_marker(self) -> None:
        try:
            fmt = loads(_fs.read_small(self._layout.marker, 4096)).get("format")
        except (OSError, ValueError, AttributeError) as exc:
            raise RegistryError(f"{self._layout.marker} is not a registry marker: {exc}") from exc
        if fmt != _FORMAT:
            raise RegistryError(f"registry at {self.root} has format {fmt!r}; this modelserve reads format {_FORMAT}")

    def _require_writable(self, action: str) -> None:
        if self.read_only:
            raise RegistryError(f"cannot {action}: the registry at {self.root} was opened with read_only=True")

    def _init_root(self) -> None:
        if self._layout.marker.exists():
            return
        _fs.make_dir(self._layout.tmp, parents=True, exist_ok=True)
        with _fs.staging_path(self._layout.tmp, "marker") as staged:
            _fs.write_new_file(staged, canonical_bytes({"format": _FORMAT}), readonly=True)
            _fs.link_new(staged, self._layout.marker)

    @contextmanager
    def _staging(self, kind: str) -> Iterator[Path]:
        """A fresh private staging directory under ``tmp/``, removed afterwards."""
        _fs.make_dir(self._layout.tmp, parents=True, exist_ok=True)
        with _fs.staging_path(self._layout.tmp, kind) as path:
            _fs.make_dir(path)
            yield path

    # ------------------------------------------------------------------ reading
    def _read_pointer(self, name: str, label: str) -> dict[str, Any] | None:
        path = self._layout.pointer(name, label)
        try:
            data = _fs.read_small(path, 65536)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"version pointer {path} is unreadable: {exc}") from exc
        try:
            obj = loads(data)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            _ = obj["manifest"], int(obj["created_ns"])
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", obj["manifest"]):
                raise ValueError(f"bad digest {obj['manifest']!r:.80}")
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"version pointer {path} is malformed: {exc}") from exc
        return obj

    def _pointers(self, name: str) -> dict[str, dict[str, Any]]:
        """All pointers of ``name`` (tombstones included), by label."""
        out = {}
        try:
            entries = os.listdir(self._layout.versions(name))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            raise RegistryError(f"versions of {name!r} are unreadable: {exc}") from exc
        for label in entries:
            try:
                validate_label(label)
            except ModelserveError:
                continue
            ptr = self._read_pointer(name, label)
            if ptr is not None:
                out[label] = ptr
        return out

    def _manifest(self, manifest_hex: str, where: str) -> Manifest:
        data = _store.read_manifest_blob(self._layout, manifest_hex, where=where, restore=not self.read_only)
        return parse_manifest(data, where=where)

    def _version(self, name: str, label: str, ptr: Mapping[str, Any]) -> ModelVersion:
        """The version a pointer names. A file missing because a concurrent gc has it in flight
        (a gc's trash exists, or the version was published moments ago and its registrar is
        restoring what gc took) is waited for briefly; otherwise it is an :class:`IntegrityError`."""
        return _store.retry_while_gc(self._layout, lambda: self._version_once(name, label, ptr),
                                     created_ns=int(ptr["created_ns"]))

    def _version_once(self, name: str, label: str, ptr: Mapping[str, Any]) -> ModelVersion:
        where = f"{name}:{label}"
        if ptr.get("deleted"):
            raise ModelNotFoundError(f"version {where} was deleted")
        mhex = _store.hex_of(ptr["manifest"])
        m = self._manifest(mhex, where)
        if (m.name, m.version) != (name, label):
            raise IntegrityError(f"pointer {where} names a manifest of {m.name}:{m.version}")
        tree = self._layout.tree(mhex)
        if not tree.is_dir():
            if self.read_only:
                raise IntegrityError(
                    f"files of {where} are missing from {tree} (read-only registry cannot restore them)"
                ) from FileNotFoundError(str(tree))
            try:
                _store.materialize_tree(self._layout, m, mhex)
            except OSError as exc:
                raise _os_error(f"restoring the files of {where}", exc) from exc
        path = tree / m.primary if m.primary else tree
        return ModelVersion(
            name=name, version=label, digest=ptr["manifest"], path=path, metadata=m.metadata,
            model_info=m.model_info, files=m.files, root=tree, kind=m.kind, created_ns=int(ptr["created_ns"]),
        )

    def list_models(self) -> list[str]:
        """Names of the models that have at least one (not deleted) version, sorted."""
        try:
            names = sorted(_fs.list_dir(self._layout.models))
        except OSError as exc:
            raise _os_error("listing models", exc) from exc
        out = []
        for name in names:
            try:
                validate_name(name)
            except ModelserveError:
                continue
            if any(not p.get("deleted") for p in self._pointers(name).values()):
                out.append(name)
        return out

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Versions of ``name`` in registration order (oldest first); [] if there are none."""
        validate_name(name)
        items = [(int(p["created_ns"]), label, p) for label, p in self._pointers(name).items() if not p.get("deleted")]
        items.sort(key=lambda t: (t[0], _label_key(t[1])))
        return [self._version(name, label, p) for _, label, p in items]

    def _not_found(self, name: str, what: str) -> ModelNotFoundError:
        labels = sorted((lb for lb, p in self._pointers(name).items() if not p.get("deleted")), key=_label_key)
        if not labels:
            models = self.list_models()
            return ModelNotFoundError(f"no model named {name!r} in {self.root}; models: {models or 'none'}")
        return ModelNotFoundError(f"{what}; versions of {name!r}: {labels}, aliases: {sorted(self.aliases(name))}")

    def resolve(self, ref: str) -> ModelVersion:
        """The version a reference names: ``det`` (latest), ``det:3``, ``det@prod``, ``det@sha256:<hex>``.

        Checks the manifest's digest (cheap); file contents are checked by :meth:`check` /
        :func:`resolve_for_load`. Raises :class:`ModelNotFoundError`, :class:`IntegrityError`,
        :class:`InvalidNameError`.
        """
        r = parse_ref(ref)
        return self._resolve(r)

    def _resolve(self, r: Ref) -> ModelVersion:
        name = r.name
        if r.label is not None:
            ptr = self._read_pointer(name, r.label)
            if ptr is None:
                raise self._not_found(name, f"no version {r.label!r} of model {name!r}")
            return self._version(name, r.label, ptr)
        if r.alias is not None:
            stack = _aliases.replay(_aliases.read_history(self._layout.alias_history(name, r.alias)))
            if not stack:
                raise self._not_found(name, f"no alias {r.alias!r} of model {name!r}")
            label, digest = stack[-1]
            ptr = self._read_pointer(name, label)
            if ptr is None:
                raise IntegrityError(f"alias {name}@{r.alias} points to version {label!r}, which does not exist")
            mv = self._version(name, label, ptr)
            if mv.digest != digest:
                raise IntegrityError(
                    f"alias {name}@{r.alias} pinned {name}:{label} as {digest}, but it now has {mv.digest}"
                )
            return mv
        if r.digest is not None:
            matches = [
                (label, p) for label, p in self._pointers(name).items()
                if not p.get("deleted") and p["manifest"].startswith(r.digest)
            ]
            if not matches:
                raise self._not_found(name, f"no version of model {name!r} has digest {r.digest}")
            if len(matches) > 1:
                raise RegistryError(f"digest prefix {r.digest} of {name!r} is ambiguous: versions {sorted(m[0] for m in matches)}")
            return self._version(name, *matches[0])
        versions = self.list_versions(name)
        if not versions:
            raise self._not_found(name, f"model {name!r} has no versions")
        return versions[-1]

    # ------------------------------------------------------------------ registering
    def register(
        self,
        name: str,
        source: str | os.PathLike[str],
        *,
        version: str | None = None,
        alias: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Store the file or directory ``source`` as a new immutable version of ``name``.

        ``version``: the label to use; default the next integer (``1``, ``2``, ...), found
        without races. Registering the same files and metadata again returns the existing
        version (for ``version=None``: any existing version with equal content); a label that
        holds other content raises :class:`VersionConflictError`. ``alias``: also point this
        alias at the version. ``metadata``: a JSON-serialisable dict kept in the manifest.
        ONNX models also get ``model_info`` (names, imgsz, stride, IO specs) when
        ``modelserve._metadata`` can describe them.

        A process killed at any point leaves either no new version or a whole one; leftovers
        are removed by :meth:`gc`. A full disk raises :class:`RegistryError` and leaves the
        registry unchanged. ``source`` must be a regular file (or a symlink to one) or a
        directory holding only regular files; devices, FIFOs and sockets raise
        :class:`RegistryError`. If the version is published but moving ``alias`` then fails,
        the :class:`RegistryError` says so and carries the version as ``exc.registered``; the
        alias keeps its old target.
        """
        self._require_writable("register")
        validate_name(name)
        if version is not None:
            validate_label(version)
        if alias is not None:
            validate_alias(alias)
        meta = _check_metadata(metadata)
        src = Path(source)
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
        created: list[Path] = []  # blobs and trees this call created, discarded if it fails
        try:
            self._init_root()
            with self._staging("reg") as stage:
                mv = self._register_staged(name, src, stage, version, meta, created)
        except OSError as exc:
            self._discard(created)
            raise _os_error(f"registering {name!r} from {src}", exc) from exc
        except BaseException:
            self._discard(created)
            raise
        if alias is not None:
            self._alias_after_publish(mv, alias)
        return mv

    def _alias_after_publish(self, mv: ModelVersion, alias: str) -> None:
        """Move ``alias`` to the just-published ``mv``; if that fails the version stays published
        and the error says so (``exc.registered`` is the version)."""
        try:
            self.set_alias(mv.name, alias, mv.version)
        except RegistryError as exc:
            cause = exc.__cause__
            why = f"no space left on device ({cause})" if isinstance(cause, OSError) and _fs.is_enospc(cause) else str(exc)
            err = RegistryError(
                f"{mv.ref} was registered ({mv.digest}), but alias {mv.name}@{alias} was not moved: {why}; "
                f"the alias still has its old target, and {mv.ref} stays published (move the alias again, "
                f"or delete_version it)"
            )
            err.registered = mv  # type: ignore[attr-defined]
            raise err from exc

    def _register_staged(
        self, name: str, src: Path, stage: Path, version: str | None, meta: dict[str, Any], created: list[Path]
    ) -> ModelVersion:
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
        model_info = _describe(files_dir.joinpath(*primary.split("/"))) if primary else None
        _faults.point("staged")
        for hx, staged in sources.items():
            _fs.make_readonly(staged)
            size = next(f.size for f in files if f.hex == hx)
            if _store.put_blob(self._layout, staged, hx, size):
                created.append(self._layout.blob(hx))
        _faults.point("blobs")
        draft = Manifest(name, version or "0", kind, primary, tuple(files), meta, model_info)

        pointers = self._pointers(name)
        if version is None:
            for label, ptr in sorted(pointers.items(), key=lambda t: _label_key(t[0])):
                if not ptr.get("deleted"):
                    existing = self._version(name, label, ptr)
                    if _same(existing, draft):
                        return existing
            ints = [int(lb) for lb in pointers if lb.isdigit() and len(lb) <= 18]
            label = str(max(ints, default=0) + 1)
        else:
            label = version
        while True:
            m = Manifest(name, label, kind, primary, tuple(files), meta, model_info)
            data = m.encode()
            if len(data) > _store.MAX_MANIFEST:
                raise RegistryError(
                    f"cannot register {name!r}: its manifest would be {len(data)} bytes, more than the "
                    f"{_store.MAX_MANIFEST} a manifest may have (too many files, or too much metadata)"
                )
            mhex = hashlib.sha256(data).hexdigest()
            mstaged = stage / f"manifest-{mhex}"
            if not mstaged.exists():
                _fs.write_new_file(mstaged, data, readonly=True)
            if _store.put_blob(self._layout, mstaged, mhex, len(data)):
                created.append(self._layout.blob(mhex))
            sources[mhex] = mstaged
            _faults.point("manifest")
            if not self._layout.tree(mhex).is_dir():
                created.append(self._layout.tree(mhex))
            _store.materialize_tree(self._layout, m, mhex, sources)
            _faults.point("tree")
            self._ensure_published(m, mhex, sources)
            pstaged = stage / f"pointer-{label}"
            _fs.remove_path(pstaged)
            ptr = {"created_ns": time.time_ns(), "manifest": "sha256:" + mhex}
            _fs.write_new_file(pstaged, canonical_bytes(ptr), readonly=True)
            _faults.point("pointer")
            if _fs.link_new(pstaged, self._layout.pointer(name, label)):
                _faults.point("published")
                del created[:]  # referenced now: nothing to discard on a later error
                self._ensure_published(m, mhex, sources)
                return self._version(name, label, ptr)
            existing_ptr = self._read_pointer(name, label)
            if existing_ptr is not None and not existing_ptr.get("deleted"):
                existing = self._version(name, label, existing_ptr)
                if _same(existing, m):
                    return existing
            if version is not None:
                if existing_ptr is not None and existing_ptr.get("deleted"):
                    raise VersionConflictError(f"version {name}:{label} was deleted; labels are never reused")
                theirs = existing_ptr["manifest"] if existing_ptr else "?"
                raise VersionConflictError(
                    f"version {name}:{label} already exists with other content: expected {theirs}, "
                    f"got sha256:{mhex} (versions are immutable; register under a new label)"
                )
            label = str(int(label) + 1)

    def _ensure_published(self, m: Manifest, mhex: str, sources: Mapping[str, Path]) -> None:
        """Re-publish any blob (from the staged copies) or tree a concurrent gc removed."""
        for hx in [mhex, *(f.hex for f in m.files)]:
            if not self._layout.blob(hx).exists():
                _fs.link_new(sources[hx], self._layout.blob(hx))
        _store.materialize_tree(self._layout, m, mhex, sources)

    def _discard(self, paths: Sequence[Path]) -> None:
        """Best-effort removal of blobs/trees a failed registration created, unless something uses them."""
        if not paths:
            return
        from ._gc import remove_unreferenced

        try:
            remove_unreferenced(self, paths)
        except (OSError, ModelserveError):
            pass

    # ------------------------------------------------------------------ aliases
    def aliases(self, name: str) -> dict[str, str]:
        """``{alias: version label}`` for every alias of ``name``."""
        validate_name(name)
        out = {}
        try:
            entries = os.listdir(self._layout.aliases(name))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            raise _os_error(f"listing the aliases of {name!r}", exc) from exc
        for entry in sorted(entries):
            if not entry.endswith(".jsonl"):
                continue
            alias = entry[: -len(".jsonl")]
            try:
                validate_alias(alias)
            except ModelserveError:
                continue
            stack = _aliases.replay(_aliases.read_history(self._layout.alias_history(name, alias)))
            if stack:
                out[alias] = stack[-1][0]
        return out

    def alias_history(self, name: str, alias: str) -> list[AliasMove]:
        """Every move of ``name@alias`` that counts, oldest first (stale lines of writers that
        lost a race, and retried, are left out)."""
        validate_name(name)
        validate_alias(alias)
        return _aliases.effective(_aliases.read_history(self._layout.alias_history(name, alias)))

    def set_alias(self, name: str, alias: str, version: str) -> ModelVersion:
        """Point ``name@alias`` at version label ``version`` (atomically; recorded in its history).

        When this returns, the move is in the history and counts (see ``_aliases``): unless
        another process moved the alias since, it resolves to the returned version.
        """
        self._require_writable("set an alias")
        validate_name(name)
        validate_alias(alias)
        mv = self._resolve(Ref(name, label=validate_label(version)))
        path = self._layout.alias_history(name, alias)
        try:
            _aliases.move(path, lambda stack: ("set", mv.version, mv.digest), before_append=lambda: _faults.point("alias"))
        except OSError as exc:
            raise _os_error(f"moving alias {name}@{alias}", exc) from exc
        return mv

    def rollback(self, name: str, alias: str) -> ModelVersion:
        """Point ``name@alias`` back at its previous target; repeated calls go further back.

        The move is conditional on the history it was computed from, so the returned version
        is exactly what the alias resolves to right after it, even while other processes move
        the alias. Raises :class:`RegistryError` when the alias has no earlier target.
        """
        self._require_writable("roll back an alias")
        validate_name(name)
        validate_alias(alias)
        path = self._layout.alias_history(name, alias)
        chosen: list[ModelVersion] = []

        def decide(stack: list[tuple[str, str]]) -> tuple[str, str, str]:
            if not stack:
                raise self._not_found(name, f"no alias {alias!r} of model {name!r}")
            if len(stack) < 2:
                raise RegistryError(f"{name}@{alias} -> {stack[-1][0]} has no previous target to roll back to")
            label, digest = stack[-2]
            mv = self._resolve(Ref(name, label=label))
            if mv.digest != digest:
                raise IntegrityError(f"{name}:{label} was {digest} when aliased, but is now {mv.digest}")
            chosen[:] = [mv]
            return "rollback", label, digest

        try:
            _aliases.move(path, decide, before_append=lambda: _faults.point("alias"))
        except OSError as exc:
            raise _os_error(f"rolling back alias {name}@{alias}", exc) from exc
        return chosen[0]

    def delete_version(self, ref: str, *, force: bool = False) -> ModelVersion:
        """Mark a version deleted (its label is never reused); :meth:`gc` then frees its files.

        Refuses (:class:`RegistryError`) while an alias points at it, unless ``force=True``;
        such an alias then fails to resolve until it is moved or rolled back.
        """
        self._require_writable("delete a version")
        mv = self.resolve(ref)
        users = sorted(a for a, label in self.aliases(mv.name).items() if label == mv.version)
        if users and not force:
            raise RegistryError(f"{mv.ref} is the target of alias(es) {users}; move them first or pass force=True")
        tomb = {"created_ns": mv.created_ns, "deleted": True, "deleted_ns": time.time_ns(), "manifest": mv.digest}
        try:
            _fs.replace_bytes(self._layout.tmp, self._layout.pointer(mv.name, mv.version), canonical_bytes(tomb))
        except OSError as exc:
            raise _os_error(f"deleting {mv.ref}", exc) from exc
        return mv

    # ------------------------------------------------------------------ integrity, gc, archives, locks, artifacts
    def check(self, mv: ModelVersion, *, full: bool = False) -> None:
        """Check a version's files before use: sizes always; sha256 on first use, whenever a file
        changed (size, mtime, ctime, inode) since it was last verified, or with ``full=True``.

        Raises :class:`IntegrityError` naming the file, the expected and the actual digest.
        """
        from ._integrity import check_version

        check_version(self, mv, full=full)

    def verify(self, ref: str | None = None) -> VerifyReport:
        """Hash every stored file (or those of one reference) and check every pointer, manifest,
        tree and alias; returns a :class:`VerifyReport` (``report.ok``, ``report.problems``)."""
        from ._integrity import verify

        return verify(self, ref)

    def gc(self, dry_run: bool = False, *, min_age_s: float = 600.0, staging_max_age_s: float = 86400.0) -> GcPlan:
        """Remove what no version uses: staging leftovers of dead processes (or older than
        ``staging_max_age_s``), unreferenced blobs and trees not created or linked in the last
        ``min_age_s`` seconds, artifacts and verification records whose source is gone.

        ``dry_run=True`` only returns the plan. Safe to run while other processes register
        (see ``modelserve._registry._gc``; ``min_age_s=0`` collects at once, and a version
        published at that very moment may then be briefly incomplete until its registrar
        restores it).
        """
        from ._gc import gc

        if not dry_run:
            self._require_writable("gc")
        return gc(self, dry_run=dry_run, staging_max_age_s=staging_max_age_s, min_age_s=min_age_s)

    def export(self, ref: str, dest: str | os.PathLike[str]) -> Path:
        """Write one version to a tar archive (``.tar``, or gzip for ``.tar.gz``/``.tgz``)."""
        from ._archive import export_version

        return export_version(self, ref, Path(dest))

    def import_archive(
        self, path: str | os.PathLike[str], *, alias: str | None = None, max_bytes: int = 16 << 30
    ) -> ModelVersion:
        """Import a version exported by :meth:`export`, checking every size and digest.

        Refuses absolute paths, ``..``, links, devices and unexpected members, PAX or GNU
        long-name headers over 64 KiB, archives whose files total more than ``max_bytes``
        (default 16 GiB) or more than the free disk space. Importing a version that exists with
        the same digest returns it; with other content raises :class:`VersionConflictError`.
        A failed import (a full disk included) leaves the registry unchanged; a failed
        ``alias`` move after a successful import is reported as by :meth:`register`.
        """
        from ._archive import import_version

        self._require_writable("import an archive")
        if alias is not None:
            validate_alias(alias)
        mv = import_version(self, Path(path), max_bytes=max_bytes)
        if alias is not None:
            self._alias_after_publish(mv, alias)
        return mv

    def write_lock(self, refs: Sequence[str], path: str | os.PathLike[str] = "modelserve.lock") -> Path:
        """Resolve ``refs`` and write a lock file pinning name, version and digest of each.

        Writes only the lock file (atomically), so it works on read-only registries too.
        """
        from ._lockfile import LockEntry, write_lock

        entries = []
        for ref in refs:
            mv = self.resolve(ref)
            entries.append(LockEntry(ref=str(parse_ref(ref)), name=mv.name, version=mv.version, digest=mv.digest))
        return write_lock(entries, Path(path))

    def artifact_dir(self, source_digest: str, key: Mapping[str, str]) -> Path:
        """Where the artifact for (source digest, key) lives once published (may not exist)."""
        from ._artifacts import artifact_dir

        return artifact_dir(self, source_digest, key)

    def engine_cache_dir(self, source_digest: str, key: Mapping[str, str]) -> Path | None:
        """A directory an engine manages itself (OpenVINO's ``CACHE_DIR``, TensorRT plans written with
        their own atomic renames), created on demand beside the published artifacts of
        ``source_digest`` and removed by :meth:`gc` with its source. ``None`` for a read-only registry."""
        if self.read_only:
            return None
        path = self.artifact_dir(source_digest, {**dict(key), "kind": "engine-cache"})
        try:
            _fs.make_dir(path, parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_error(f"creating the engine cache directory {path}", exc) from exc
        return path

    def find_artifact(self, source_digest: str, key: Mapping[str, str]) -> Path | None:
        """The published artifact directory for (source digest, key), or None."""
        from ._artifacts import find_artifact

        return find_artifact(self, source_digest, key)

    def stage_artifact(self, source_digest: str, key: Mapping[str, str]):  # -> ContextManager[Path]
        """Context manager yielding an empty staging directory; on a clean exit its files are
        published atomically at :meth:`artifact_dir` (if another process published first, its
        copy is kept and ours dropped). See ``modelserve._registry._artifacts``."""
        from ._artifacts import stage_artifact

        self._require_writable("publish an artifact")
        return stage_artifact(self, source_digest, key)

    def publish_artifact(
        self, source_digest: str, key: Mapping[str, str], files: Mapping[str, bytes | str | os.PathLike[str]]
    ) -> Path:
        """Publish ``{relative path: bytes or source file}`` as the artifact; returns its directory."""
        from ._artifacts import publish_artifact

        self._require_writable("publish an artifact")
        return publish_artifact(self, source_digest, key, files)


def _label_key(label: str) -> tuple[int, int, str]:
    return (0, int(label), label) if label.isdigit() and len(label) <= 18 else (1, 0, label)


def _same(mv: ModelVersion, m: Manifest) -> bool:
    return (
        tuple(mv.files) == m.files
        and mv.kind == m.kind
        and (mv.path.relative_to(mv.root).as_posix() if mv.path != mv.root else None) == m.primary
        and canonical_bytes(dict(mv.metadata)) == canonical_bytes(dict(m.metadata))
    )
