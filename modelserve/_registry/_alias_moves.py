"""Moving aliases: point ``name@alias`` at a version, roll it back, read its history.

Each move is one conditional append to the alias's history (``_aliases.move``), retried when
another writer appended first, so what a move returns is exactly what the alias resolves to
right after it, even while other processes move the alias. ``OSError`` s become
:class:`RegistryError` (a full disk named as such); the history is then unchanged.
"""

from __future__ import annotations

from .._errors import IntegrityError, RegistryError
from . import _aliases, _faults, _fs
from ._names import Ref, validate_alias, validate_label, validate_name
from ._resolve import resolve
from ._store import Store
from ._types import AliasMove, ModelVersion

__all__ = ["set_alias", "rollback", "alias_history", "alias_after_publish"]


def _before_append() -> None:
    _faults.point("alias")


def alias_history(store: Store, name: str, alias: str) -> list[AliasMove]:
    """See :meth:`Registry.alias_history`."""
    validate_name(name)
    validate_alias(alias)
    return _aliases.effective(_aliases.read_history(store.layout.alias_history(name, alias)))


def set_alias(store: Store, name: str, alias: str, version: str) -> ModelVersion:
    """See :meth:`Registry.set_alias`."""
    store.require_writable("set an alias")
    validate_name(name)
    validate_alias(alias)
    mv = resolve(store, Ref(name, label=validate_label(version)))
    path = store.layout.alias_history(name, alias)
    try:
        _aliases.move(path, lambda stack: ("set", mv.version, mv.digest), before_append=_before_append)
    except OSError as exc:
        raise _fs.os_error(f"moving alias {name}@{alias}", exc) from exc
    return mv


def rollback(store: Store, name: str, alias: str) -> ModelVersion:
    """See :meth:`Registry.rollback`."""
    store.require_writable("roll back an alias")
    validate_name(name)
    validate_alias(alias)
    path = store.layout.alias_history(name, alias)
    chosen: list[ModelVersion] = []

    def decide(stack: list[tuple[str, str]]) -> tuple[str, str, str]:
        if not stack:
            raise store.not_found(name, f"no alias {alias!r} of model {name!r}")
        if len(stack) < 2:
            raise RegistryError(f"{name}@{alias} -> {stack[-1][0]} has no previous target to roll back to")
        label, digest = stack[-2]
        mv = resolve(store, Ref(name, label=label))
        if mv.digest != digest:
            raise IntegrityError(f"{name}:{label} was {digest} when aliased, but is now {mv.digest}")
        chosen[:] = [mv]
        return "rollback", label, digest

    try:
        _aliases.move(path, decide, before_append=_before_append)
    except OSError as exc:
        raise _fs.os_error(f"rolling back alias {name}@{alias}", exc) from exc
    return chosen[0]


def alias_after_publish(store: Store, mv: ModelVersion, alias: str) -> None:
    """Move ``alias`` to the just-published ``mv``; if that fails the version stays published
    and the :class:`RegistryError` says so (``exc.registered`` is the version)."""
    try:
        set_alias(store, mv.name, alias, mv.version)
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
