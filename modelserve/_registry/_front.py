"""The :class:`Registry`: the public front of the model registry.

Every method checks its arguments and delegates to the module that does the job, passing the
registry's one :class:`~._store.Store`: ``_register`` (new versions), ``_resolve`` (references),
``_alias_moves`` (aliases), ``_integrity`` (check, verify), ``_gc``, ``_archive`` (export,
import), ``_artifacts`` (derived artifacts), ``_lockfile`` (lock files).

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

import os
from pathlib import Path
from typing import Any, ContextManager, Mapping, Sequence

from .._errors import RegistryError
from . import _alias_moves, _archive, _artifacts, _fs, _gc, _integrity, _register
from ._describe import Describer, default_describer
from ._layout import default_root
from ._lockfile import LockEntry, write_lock
from ._names import parse_ref, validate_alias
from ._resolve import resolve
from ._store import Store
from ._types import AliasMove, GcPlan, ModelVersion, VerifyReport

__all__ = ["Registry"]


class Registry:
    """A version-pinned local model registry rooted at one directory.

    ``root``: the directory (created on first write); default :func:`default_root`
    (``$MODELSERVE_HOME``, else the user cache dir). ``read_only=True``: never writes anything
    under ``root`` (registering, aliasing, gc and verification records are refused or skipped).
    ``describe``: ``describe(path) -> dict | None``, what :meth:`register` records as a
    version's ``model_info`` from its primary file; default: the describer modelserve installs
    (ONNX models are loaded on the CPU and described by ``modelserve._metadata.describe_model``;
    see ``_describe``). Safe to share between threads and processes.

    Example::

        reg = Registry()
        mv = reg.register("det", "yolov8n.onnx", alias="prod")
        reg.resolve("det@prod").path    # .../trees/<hex>/yolov8n.onnx
    """

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, read_only: bool = False,
        describe: Describer | None = None,
    ) -> None:
        path = Path(root if root is not None else default_root()).expanduser().absolute()
        self._store = Store(path, read_only=bool(read_only))
        self._describe = describe

    @property
    def root(self) -> Path:
        """The registry's directory (absolute)."""
        return self._store.root

    @property
    def read_only(self) -> bool:
        """True if this registry never writes under :attr:`root`."""
        return self._store.read_only

    def __repr__(self) -> str:
        return f"Registry(root={str(self.root)!r}, read_only={self.read_only})"

    # ------------------------------------------------------------------ reading
    def list_models(self) -> list[str]:
        """Names of the models that have at least one (not deleted) version, sorted."""
        return self._store.list_models()

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Versions of ``name`` in registration order (oldest first); [] if there are none."""
        return self._store.list_versions(name)

    def resolve(self, ref: str) -> ModelVersion:
        """The version a reference names: ``det`` (latest), ``det:3``, ``det@prod``, ``det@sha256:<hex>``.

        Checks the manifest's digest (cheap); file contents are checked by :meth:`check` /
        :func:`resolve_for_load`. Raises :class:`ModelNotFoundError`, :class:`IntegrityError`,
        :class:`InvalidNameError`.
        """
        return resolve(self._store, parse_ref(ref))

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
        The version's ``model_info`` is what the registry's describer reports for its primary
        file (by default: names, imgsz, stride, IO specs of ONNX models), or None.

        A process killed at any point leaves either no new version or a whole one; leftovers
        are removed by :meth:`gc`. A full disk raises :class:`RegistryError` and leaves the
        registry unchanged. ``source`` must be a regular file (or a symlink to one) or a
        directory holding only regular files; devices, FIFOs and sockets raise
        :class:`RegistryError`. If the version is published but moving ``alias`` then fails,
        the :class:`RegistryError` says so and carries the version as ``exc.registered``; the
        alias keeps its old target.
        """
        describer = self._describe if self._describe is not None else default_describer()
        return _register.register(self._store, name, source, version=version, alias=alias, metadata=metadata,
                                  describer=describer)

    def delete_version(self, ref: str, *, force: bool = False) -> ModelVersion:
        """Mark a version deleted (its label is never reused); :meth:`gc` then frees its files.

        Refuses (:class:`RegistryError`) while an alias points at it, unless ``force=True``;
        such an alias then fails to resolve until it is moved or rolled back.
        """
        self._store.require_writable("delete a version")
        mv = self.resolve(ref)
        users = sorted(a for a, label in self.aliases(mv.name).items() if label == mv.version)
        if users and not force:
            raise RegistryError(f"{mv.ref} is the target of alias(es) {users}; move them first or pass force=True")
        try:
            self._store.tombstone(mv)
        except OSError as exc:
            raise _fs.os_error(f"deleting {mv.ref}", exc) from exc
        return mv

    # ------------------------------------------------------------------ aliases
    def aliases(self, name: str) -> dict[str, str]:
        """``{alias: version label}`` for every alias of ``name``."""
        return self._store.aliases(name)

    def alias_history(self, name: str, alias: str) -> list[AliasMove]:
        """Every move of ``name@alias`` that counts, oldest first (stale lines of writers that
        lost a race, and retried, are left out)."""
        return _alias_moves.alias_history(self._store, name, alias)

    def set_alias(self, name: str, alias: str, version: str) -> ModelVersion:
        """Point ``name@alias`` at version label ``version`` (atomically; recorded in its history).

        When this returns, the move is in the history and counts (see ``_aliases``): unless
        another process moved the alias since, it resolves to the returned version.
        """
        return _alias_moves.set_alias(self._store, name, alias, version)

    def rollback(self, name: str, alias: str) -> ModelVersion:
        """Point ``name@alias`` back at its previous target; repeated calls go further back.

        The move is conditional on the history it was computed from, so the returned version
        is exactly what the alias resolves to right after it, even while other processes move
        the alias. Raises :class:`RegistryError` when the alias has no earlier target.
        """
        return _alias_moves.rollback(self._store, name, alias)

    # ------------------------------------------------------------------ integrity, gc, archives, locks
    def check(self, mv: ModelVersion, *, full: bool = False) -> None:
        """Check a version's files before use: sizes always; sha256 on first use, whenever a file
        changed (size, mtime, ctime, inode) since it was last verified, or with ``full=True``.

        Raises :class:`IntegrityError` naming the file, the expected and the actual digest.
        """
        _integrity.check_version(self._store, mv, full=full)

    def verify(self, ref: str | None = None) -> VerifyReport:
        """Hash every stored file (or those of one reference) and check every pointer, manifest,
        tree and alias; returns a :class:`VerifyReport` (``report.ok``, ``report.problems``)."""
        return _integrity.verify(self._store, ref)

    def gc(self, dry_run: bool = False, *, min_age_s: float = 600.0, staging_max_age_s: float = 86400.0) -> GcPlan:
        """Remove what no version uses: staging leftovers of dead processes (or older than
        ``staging_max_age_s``), unused blobs and trees not created or linked in the last
        ``min_age_s`` seconds, artifacts and verification records whose source is gone.

        ``dry_run=True`` only returns the plan. Safe to run while other processes register
        (see ``modelserve._registry._gc``; ``min_age_s=0`` collects at once, and a version
        published at that very moment may then be briefly incomplete until its registrar
        restores it).
        """
        if not dry_run:
            self._store.require_writable("gc")
        return _gc.gc(self._store, dry_run=dry_run, staging_max_age_s=staging_max_age_s, min_age_s=min_age_s)

    def export(self, ref: str, dest: str | os.PathLike[str]) -> Path:
        """Write one version to a tar archive (``.tar``, or gzip for ``.tar.gz``/``.tgz``)."""
        path = Path(dest)
        return _archive.export_version(self._store, self.resolve(ref), path)

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
        self._store.require_writable("import an archive")
        if alias is not None:
            validate_alias(alias)
        mv = _archive.import_version(self._store, Path(path), max_bytes=max_bytes)
        if alias is not None:
            _alias_moves.alias_after_publish(self._store, mv, alias)
        return mv

    def write_lock(self, refs: Sequence[str], path: str | os.PathLike[str] = "modelserve.lock") -> Path:
        """Resolve ``refs`` and write a lock file pinning name, version and digest of each.

        Writes only the lock file (atomically), so it works on read-only registries too.
        """
        entries = []
        for ref in refs:
            mv = self.resolve(ref)
            entries.append(LockEntry(ref=str(parse_ref(ref)), name=mv.name, version=mv.version, digest=mv.digest))
        return write_lock(entries, Path(path))

    # ------------------------------------------------------------------ artifacts
    def artifact_dir(self, source_digest: str, key: Mapping[str, str]) -> Path:
        """Where the artifact for (source digest, key) lives once published (may not exist)."""
        return _artifacts.artifact_dir(self._store, source_digest, key)

    def engine_cache_dir(self, source_digest: str, key: Mapping[str, str]) -> Path | None:
        """A directory an engine manages itself (OpenVINO's ``CACHE_DIR``, TensorRT plans written with
        their own atomic renames), created on demand beside the published artifacts of
        ``source_digest`` and removed by :meth:`gc` with its source. ``None`` for a read-only registry."""
        return _artifacts.engine_cache_dir(self._store, source_digest, key)

    def find_artifact(self, source_digest: str, key: Mapping[str, str]) -> Path | None:
        """The published artifact directory for (source digest, key), or None."""
        return _artifacts.find_artifact(self._store, source_digest, key)

    def stage_artifact(self, source_digest: str, key: Mapping[str, str]) -> ContextManager[Path]:
        """Context manager yielding an empty staging directory; on a clean exit its files are
        published atomically at :meth:`artifact_dir` (if another process published first, its
        copy is kept and ours dropped). See ``modelserve._registry._artifacts``."""
        self._store.require_writable("publish an artifact")
        return _artifacts.stage_artifact(self._store, source_digest, key)

    def publish_artifact(
        self, source_digest: str, key: Mapping[str, str], files: Mapping[str, bytes | str | os.PathLike[str]]
    ) -> Path:
        """Publish ``{relative path: bytes or source file}`` as the artifact; returns its directory."""
        self._store.require_writable("publish an artifact")
        return _artifacts.publish_artifact(self._store, source_digest, key, files)
