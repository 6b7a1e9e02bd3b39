"""Model descriptions (``ModelVersion.model_info``), injected from outside the storage layer.

The registry stores files; it does not load models. What it records as a version's
``model_info`` comes from a *describer*: a callable ``describe(path) -> dict | None`` given the
path of the version's primary file (``model.onnx``, ``model.xml``, ...; staged under its own
name) that returns JSON-serialisable information (class names, input size, IO specs) or None.
A :class:`~modelserve.Registry` uses the describer it was constructed with
(``Registry(describe=...)``), else the process-wide default set here with
:func:`set_default_describer`; ``modelserve`` installs its engine-based describer (ONNX models,
loaded on the CPU) when it is imported (``modelserve._load``). Without one, ``model_info`` is None.

A describer is optional information: any exception it raises, or an answer that is not JSON,
gives ``model_info=None`` and never stops a registration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from ._manifest import canonical_bytes, loads

__all__ = ["Describer", "set_default_describer", "default_describer", "describe"]

#: ``describe(path of the primary file) -> JSON-serialisable dict, or None``.
Describer = Callable[[Path], "Mapping[str, Any] | None"]

_default: Describer | None = None


def set_default_describer(describer: Describer | None) -> Describer | None:
    """Make ``describer`` the default of every :class:`Registry` built without ``describe=``;
    returns the previous default (None clears it)."""
    global _default
    previous, _default = _default, describer
    return previous


def default_describer() -> Describer | None:
    """The describer set with :func:`set_default_describer`, or None."""
    return _default


def describe(describer: Describer | None, path: Path) -> dict[str, Any] | None:
    """``describer(path)`` as plain JSON values, or None if there is no describer, it returns
    None, it raises, or its answer is not JSON-serialisable."""
    if describer is None:
        return None
    try:
        info = describer(path)
        if info is None:
            return None
        return loads(canonical_bytes(dict(info)))  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - model info is optional; a describer bug must not block storing
        return None
