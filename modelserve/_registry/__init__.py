"""The local model registry: immutable, content-addressed, crash-safe versions of models.

Public names (re-exported by :mod:`modelserve`): :class:`Registry`, :class:`ModelVersion`,
:func:`default_root`. For ``modelserve.load``: :func:`is_registry_ref`,
:func:`resolve_for_load`. Reports: :class:`VerifyReport`, :class:`Problem`, :class:`GcPlan`,
:class:`AliasMove`; lock files: :func:`read_lock`, :class:`LockFile`, :class:`LockEntry`.
See ``_layout`` for the on-disk layout and ``_registry`` for the concurrency model.
"""

from ._layout import default_root
from ._load import resolve_for_load
from ._lockfile import LockEntry, LockFile, read_lock
from ._manifest import FileEntry
from ._names import is_registry_ref, parse_ref
from ._registry import Registry
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
]
