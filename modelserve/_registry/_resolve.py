"""Resolving registry references (``det``, ``det:3``, ``det@prod``, ``det@sha256:<hex>``) to versions.

``det`` is the latest version (registered last); ``det:3`` the label; ``det@prod`` the version
the alias's history ends at, which must still have the digest it had when aliased; and
``det@sha256:<hex>`` the one version whose manifest digest starts with ``<hex>``. Only the
manifest's digest is checked here (cheap); file contents are checked by ``_integrity``.

Raises :class:`ModelNotFoundError` (listing what exists), :class:`IntegrityError` (an alias
whose target changed or vanished), :class:`RegistryError` (an ambiguous digest prefix).
"""

from __future__ import annotations

from .._errors import IntegrityError, RegistryError
from ._names import Ref
from ._store import Store
from ._types import ModelVersion

__all__ = ["resolve"]


def resolve(store: Store, r: Ref) -> ModelVersion:
    """The version the parsed reference ``r`` names in ``store``."""
    if r.label is not None:
        return _by_label(store, r.name, r.label)
    if r.alias is not None:
        return _by_alias(store, r.name, r.alias)
    if r.digest is not None:
        return _by_digest(store, r.name, r.digest)
    versions = store.list_versions(r.name)
    if not versions:
        raise store.not_found(r.name, f"model {r.name!r} has no versions")
    return versions[-1]


def _by_label(store: Store, name: str, label: str) -> ModelVersion:
    ptr = store.read_pointer(name, label)
    if ptr is None:
        raise store.not_found(name, f"no version {label!r} of model {name!r}")
    return store.version(name, label, ptr)


def _by_alias(store: Store, name: str, alias: str) -> ModelVersion:
    stack = store.alias_stack(name, alias)
    if not stack:
        raise store.not_found(name, f"no alias {alias!r} of model {name!r}")
    label, digest = stack[-1]
    ptr = store.read_pointer(name, label)
    if ptr is None:
        raise IntegrityError(f"alias {name}@{alias} points to version {label!r}, which does not exist")
    mv = store.version(name, label, ptr)
    if mv.digest != digest:
        raise IntegrityError(f"alias {name}@{alias} pinned {name}:{label} as {digest}, but it now has {mv.digest}")
    return mv


def _by_digest(store: Store, name: str, digest: str) -> ModelVersion:
    matches = [
        (label, p) for label, p in store.pointers(name).items()
        if not p.get("deleted") and p["manifest"].startswith(digest)
    ]
    if not matches:
        raise store.not_found(name, f"no version of model {name!r} has digest {digest}")
    if len(matches) > 1:
        raise RegistryError(f"digest prefix {digest} of {name!r} is ambiguous: versions {sorted(m[0] for m in matches)}")
    return store.version(name, *matches[0])
