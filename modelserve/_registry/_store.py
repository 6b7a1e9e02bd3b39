"""The registry's store: one root directory and what is kept under it.

:class:`Store` owns the on-disk layout (``_layout``), the format marker, staging directories,
version pointers (read, published once, tombstoned), manifests (read and checked against their
digest), alias targets, and turning a pointer into a :class:`ModelVersion`. Registration,
resolution, alias moves, gc, integrity checks, archives and artifacts (one module each) take
the store as their first argument; :class:`~modelserve.Registry` is the public front holding one.

A version pointer ``models/<name>/versions/<label>`` is JSON ``{"created_ns": ..., "manifest":
"sha256:<hex>"}``, published once with ``os.link`` (so two writers never both own a label);
deleting a version replaces it with a tombstone (the same plus ``"deleted": true``), so the
label is never reused. A pointer that cannot be read or parsed is an :class:`IntegrityError`.

Example::

    store = Store(Path("/srv/models"), read_only=True)
    ptr = store.read_pointer("det", "3")            # None if there is no such label
    mv = store.version("det", "3", ptr) if ptr else None
"""

from __future__ import annotations

import os
import re
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from .._errors import IntegrityError, ModelNotFoundError, ModelserveError, RegistryError
from . import _aliases, _blobs, _fs
from ._layout import Layout
from ._manifest import Manifest, canonical_bytes, loads, parse_manifest
from ._names import label_key, validate_alias, validate_label, validate_name
from ._staging import staging_path
from ._types import ModelVersion

__all__ = ["Store", "Pointer", "MARKER_FORMAT"]

#: The format of the registry this modelserve reads and writes (``registry.json``).
MARKER_FORMAT = 1

#: A version pointer as read: ``created_ns`` and ``manifest``; a tombstone also has ``deleted``.
Pointer = dict[str, Any]

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


class Store:
    """The registry rooted at the absolute path ``root`` (created on first write).

    ``read_only=True``: nothing is written under ``root`` (:meth:`require_writable` refuses,
    missing trees are not restored). Raises :class:`RegistryError` if ``root`` is not a
    directory (and cannot become one) or holds a registry of another format. Safe to share
    between threads; any number of processes may use the same root.
    """

    def __init__(self, root: Path, *, read_only: bool) -> None:
        self.root = root
        self.read_only = read_only
        self.layout = Layout(root)
        self._check_root()
        if self.layout.marker.exists():
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

    def _check_marker(self) -> None:
        try:
            fmt = loads(_fs.read_small(self.layout.marker, 4096)).get("format")
        except (OSError, ValueError, AttributeError) as exc:
            raise RegistryError(f"{self.layout.marker} is not a registry marker: {exc}") from exc
        if fmt != MARKER_FORMAT:
            raise RegistryError(
                f"registry at {self.root} has format {fmt!r}; this modelserve reads format {MARKER_FORMAT}"
            )

    # ------------------------------------------------------------------ writing: setup and staging
    def require_writable(self, action: str) -> None:
        """Raise :class:`RegistryError` naming ``action`` if the store was opened read-only."""
        if self.read_only:
            raise RegistryError(f"cannot {action}: the registry at {self.root} was opened with read_only=True")

    def init_root(self) -> None:
        """Create the root's ``tmp/`` and its format marker unless the marker exists."""
        if self.layout.marker.exists():
            return
        _fs.make_dir(self.layout.tmp, parents=True, exist_ok=True)
        with staging_path(self.layout.tmp, "marker") as staged:
            _fs.write_new_file(staged, canonical_bytes({"format": MARKER_FORMAT}), readonly=True)
            _fs.link_new(staged, self.layout.marker)

    @contextmanager
    def staging(self, kind: str) -> Iterator[Path]:
        """A fresh private staging directory under ``tmp/``, removed afterwards."""
        _fs.make_dir(self.layout.tmp, parents=True, exist_ok=True)
        with staging_path(self.layout.tmp, kind) as path:
            _fs.make_dir(path)
            yield path

    # ------------------------------------------------------------------ pointers
    def read_pointer(self, name: str, label: str) -> Pointer | None:
        """The pointer of ``name:label`` (a tombstone included), or None if there is none."""
        path = self.layout.pointer(name, label)
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
            if not _DIGEST_RE.fullmatch(obj["manifest"]):
                raise ValueError(f"bad digest {obj['manifest']!r:.80}")
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"version pointer {path} is malformed: {exc}") from exc
        return obj

    def pointers(self, name: str) -> dict[str, Pointer]:
        """All pointers of ``name`` (tombstones included), by label."""
        out = {}
        try:
            entries = os.listdir(self.layout.versions(name))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            raise RegistryError(f"versions of {name!r} are unreadable: {exc}") from exc
        for label in entries:
            try:
                validate_label(label)
            except ModelserveError:
                continue
            ptr = self.read_pointer(name, label)
            if ptr is not None:
                out[label] = ptr
        return out

    def stage_pointer(self, staged: Path, manifest_hex: str) -> Pointer:
        """Write a new pointer to manifest ``manifest_hex`` at the staging path ``staged`` (read-only)."""
        ptr = {"created_ns": time.time_ns(), "manifest": "sha256:" + manifest_hex}
        _fs.write_new_file(staged, canonical_bytes(ptr), readonly=True)
        return ptr

    def link_pointer(self, staged: Path, name: str, label: str) -> bool:
        """Publish the staged pointer as ``name:label``; False if that label exists already."""
        return _fs.link_new(staged, self.layout.pointer(name, label))

    def tombstone(self, mv: ModelVersion) -> None:
        """Replace the pointer of ``mv`` with a tombstone (atomically); ``OSError`` propagates."""
        tomb = {"created_ns": mv.created_ns, "deleted": True, "deleted_ns": time.time_ns(), "manifest": mv.digest}
        _fs.replace_bytes(self.layout.tmp, self.layout.pointer(mv.name, mv.version), canonical_bytes(tomb))

    # ------------------------------------------------------------------ manifests and versions
    def manifest(self, manifest_hex: str, where: str) -> Manifest:
        """The manifest blob ``manifest_hex``, checked against its digest and parsed (``where``
        names the version in messages); :class:`IntegrityError` if it is missing or damaged."""
        data = _blobs.read_manifest_blob(self.layout, manifest_hex, where=where, restore=not self.read_only)
        return parse_manifest(data, where=where)

    def version(self, name: str, label: str, ptr: Mapping[str, Any]) -> ModelVersion:
        """The version a pointer names. A file missing because a concurrent gc has it in flight
        (a gc's trash exists, or the version was published moments ago and its registrar is
        restoring what gc took) is waited for briefly; otherwise it is an :class:`IntegrityError`."""
        return _blobs.retry_while_gc(self.layout, lambda: self._version_once(name, label, ptr),
                                     created_ns=int(ptr["created_ns"]))

    def _version_once(self, name: str, label: str, ptr: Mapping[str, Any]) -> ModelVersion:
        where = f"{name}:{label}"
        if ptr.get("deleted"):
            raise ModelNotFoundError(f"version {where} was deleted")
        mhex = _blobs.hex_of(ptr["manifest"])
        m = self.manifest(mhex, where)
        if (m.name, m.version) != (name, label):
            raise IntegrityError(f"pointer {where} names a manifest of {m.name}:{m.version}")
        tree = self.layout.tree(mhex)
        if not tree.is_dir():
            if self.read_only:
                raise IntegrityError(
                    f"files of {where} are missing from {tree} (read-only registry cannot restore them)"
                ) from FileNotFoundError(str(tree))
            try:
                _blobs.materialize_tree(self.layout, m, mhex)
            except OSError as exc:
                raise _fs.os_error(f"restoring the files of {where}", exc) from exc
        path = tree / m.primary if m.primary else tree
        return ModelVersion(
            name=name, version=label, digest=ptr["manifest"], path=path, metadata=m.metadata,
            model_info=m.model_info, files=m.files, root=tree, kind=m.kind, created_ns=int(ptr["created_ns"]),
        )

    def list_models(self) -> list[str]:
        """Names of the models that have at least one (not deleted) version, sorted."""
        try:
            names = sorted(_fs.list_dir(self.layout.models))
        except OSError as exc:
            raise _fs.os_error("listing models", exc) from exc
        out = []
        for name in names:
            try:
                validate_name(name)
            except ModelserveError:
                continue
            if any(not p.get("deleted") for p in self.pointers(name).values()):
                out.append(name)
        return out

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Versions of ``name`` in registration order (oldest first); [] if there are none."""
        validate_name(name)
        items = [(int(p["created_ns"]), label, p) for label, p in self.pointers(name).items() if not p.get("deleted")]
        items.sort(key=lambda t: (t[0], label_key(t[1])))
        return [self.version(name, label, p) for _, label, p in items]

    # ------------------------------------------------------------------ aliases (reading)
    def alias_stack(self, name: str, alias: str) -> list[tuple[str, str]]:
        """The replayed history of ``name@alias``: ``(label, digest)`` targets, the current one last."""
        return _aliases.replay(_aliases.read_history(self.layout.alias_history(name, alias)))

    def aliases(self, name: str) -> dict[str, str]:
        """``{alias: version label}`` for every alias of ``name``."""
        validate_name(name)
        out = {}
        try:
            entries = os.listdir(self.layout.aliases(name))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            raise _fs.os_error(f"listing the aliases of {name!r}", exc) from exc
        for entry in sorted(entries):
            if not entry.endswith(".jsonl"):
                continue
            alias = entry[: -len(".jsonl")]
            try:
                validate_alias(alias)
            except ModelserveError:
                continue
            stack = self.alias_stack(name, alias)
            if stack:
                out[alias] = stack[-1][0]
        return out

    def not_found(self, name: str, what: str) -> ModelNotFoundError:
        """The error for ``what`` (a missing label, alias, digest) of ``name``, listing what exists."""
        labels = sorted((lb for lb, p in self.pointers(name).items() if not p.get("deleted")), key=label_key)
        if not labels:
            models = self.list_models()
            return ModelNotFoundError(f"no model named {name!r} in {self.root}; models: {models or 'none'}")
        return ModelNotFoundError(f"{what}; versions of {name!r}: {labels}, aliases: {sorted(self.aliases(name))}")

    # ------------------------------------------------------------------ publishing
    def put_blob(self, staged: Path, hexdigest: str, size: int, created: list[Path]) -> None:
        """Publish the read-only staged file as blob ``hexdigest`` (see ``_blobs.put_blob``); if
        this call created it, its path is appended to ``created`` (discarded if publishing fails)."""
        if _blobs.put_blob(self.layout, staged, hexdigest, size):
            created.append(self.layout.blob(hexdigest))

    def put_tree(self, m: Manifest, manifest_hex: str, sources: Mapping[str, Path], created: list[Path]) -> None:
        """Make the tree of ``m`` whole from the store (or the staged ``sources``); a tree this
        call creates is appended to ``created``."""
        if not self.layout.tree(manifest_hex).is_dir():
            created.append(self.layout.tree(manifest_hex))
        _blobs.materialize_tree(self.layout, m, manifest_hex, sources)

    def ensure_published(self, m: Manifest, manifest_hex: str, sources: Mapping[str, Path]) -> None:
        """Re-publish any blob (from the staged copies) or tree a concurrent gc removed."""
        for hx in [manifest_hex, *(f.hex for f in m.files)]:
            if not self.layout.blob(hx).exists():
                _fs.link_new(sources[hx], self.layout.blob(hx))
        _blobs.materialize_tree(self.layout, m, manifest_hex, sources)
