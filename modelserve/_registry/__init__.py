"""The local model registry: immutable, content-addressed, crash-safe versions of models.

Public names (re-exported by :mod:`modelserve`): :class:`Registry`, :class:`ModelVersion`,
:func:`default_root`. For ``modelserve.load``: :func:`is_registry_ref`,
:func:`resolve_for_load`, :func:`set_default_describer` (what ``model_info`` comes from).
Reports: :class:`VerifyReport`, :class:`Problem`, :class:`GcPlan`, :class:`AliasMove`; lock
files: :func:`read_lock`, :class:`LockFile`, :class:`LockEntry`.

Modules, one job each: ``_front`` (the :class:`Registry` front), ``_store`` (the one internal
store: layout, pointers, manifests, staging, publishing), ``_register``, ``_resolve``
(references to versions), ``_alias_moves`` and ``_aliases`` (alias histories), ``_integrity``,
``_gc``, ``_archive`` and ``_tar_guard``, ``_artifacts``, ``_lockfile`` and ``_pinning`` (lock
files, and resolving through them for ``load``), ``_describe`` (the injected describer);
beneath them ``_blobs`` (blobs and trees), ``_manifest``, ``_names``, ``_layout`` (the on-disk
layout), ``_fs``, ``_dirs``, ``_staging`` (file-system primitives) and ``_faults`` (crash tests).
See ``_front`` for the concurrency model. The command line is :mod:`modelserve.cli.registry`.
"""

from ._describe import Describer, set_default_describer
from ._front import Registry
from ._layout import default_root
from ._lockfile import LockEntry, LockFile, read_lock
from ._manifest import FileEntry
from ._names import is_registry_ref, parse_ref
from ._pinning import resolve_for_load
from ._types import AliasMove, GcPlan, ModelVersion, Problem, VerifyReport

__all__ = [
    "Registry",
    "ModelVersion",
    "FileEntry",
    "AliasMove",
    "VerifyReport",
    "Problem",
    "GcPlan",
    "LockEntry",
    "LockFile",
    "read_lock",
    "default_root",
    "is_registry_ref",
    "parse_ref",
    "resolve_for_load",
    "Describer",
    "set_default_describer",
]
