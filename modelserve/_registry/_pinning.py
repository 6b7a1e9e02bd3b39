"""Resolving a registry reference for ``modelserve.load``: through its pin in a lock file when
one is given, then checking the bytes an engine will read."""

from __future__ import annotations

import os

from .._errors import PinMismatchError
from ._front import Registry
from ._lockfile import read_lock
from ._names import parse_ref
from ._types import ModelVersion

__all__ = ["resolve_for_load"]


def resolve_for_load(
    ref: str,
    *,
    registry: Registry | None = None,
    lock: str | os.PathLike[str] | None = None,
) -> ModelVersion:
    """Resolve ``ref`` for loading and check the files an engine will read.

    ``registry``: default ``Registry()`` (``$MODELSERVE_HOME`` or the user cache dir).
    ``lock``: a ``modelserve.lock``; then ``ref`` must be pinned there (else
    :class:`PinMismatchError`), resolves to the *locked* ``name:version`` whatever aliases say
    now, and that version's manifest digest must equal the locked one (else
    :class:`PinMismatchError` naming both). Integrity: every file's size is checked; its
    sha256 on first use and whenever it changed since last verified (:meth:`Registry.check`).

    Raises :class:`ModelNotFoundError`, :class:`IntegrityError`, :class:`PinMismatchError`,
    :class:`InvalidNameError`, :class:`RegistryError` (malformed lock file).

    Example::

        mv = resolve_for_load("det@prod", lock="modelserve.lock")
        engine = open_engine(str(mv.path))
    """
    reg = registry if registry is not None else Registry()
    r = parse_ref(ref)
    if lock is not None:
        lf = read_lock(lock)
        entry = lf.find(ref)
        if entry is None:
            pinned = [e.ref for e in lf.entries]
            raise PinMismatchError(f"{str(r)!r} is not pinned in lock file {lf.path}; pinned: {pinned or 'nothing'}")
        if entry.name != r.name:
            raise PinMismatchError(f"lock file {lf.path} pins {str(r)!r} to model {entry.name!r}, expected {r.name!r}")
        mv = reg.resolve(f"{entry.name}:{entry.version}")
        if mv.digest != entry.digest:
            raise PinMismatchError(
                f"lock file {lf.path} pins {str(r)!r} to {entry.name}:{entry.version} with digest {entry.digest}, "
                f"but the registry has {mv.digest}"
            )
    else:
        mv = reg.resolve(ref)
    reg.check(mv)
    return mv
