"""Fault points for crash tests: a process can be made to die at a named step.

Set ``MODELSERVE_REGISTRY_FAULT=<step>`` (e.g. ``blobs``) and the process kills itself with
``SIGKILL`` (``os._exit(137)`` where there is no SIGKILL) when it reaches that step, exactly as
``kill -9`` would. Steps of a registration, in order: ``copy`` (mid-copy of the first file),
``staged``, ``blobs``, ``manifest``, ``tree``, ``pointer`` (just before the version is
published), ``published`` (just after), ``alias`` (just before an alias record is appended).
Steps of ``gc`` (:data:`GC_STEPS`): ``gc-planned`` (plan made, nothing removed yet),
``gc-trashed`` (candidates moved into gc's trash, before the live set is read again).
Tests may also replace :data:`hook` in-process. Unset, a fault point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
from typing import Callable, Optional

__all__ = ["STEPS", "GC_STEPS", "point", "hook"]

STEPS = ("copy", "staged", "blobs", "manifest", "tree", "pointer", "published", "alias")
GC_STEPS = ("gc-planned", "gc-trashed")

#: In-process hook called with the step name at every fault point (tests only).
hook: Optional[Callable[[str], None]] = None


def point(step: str) -> None:
    """Die (SIGKILL) here if ``MODELSERVE_REGISTRY_FAULT`` names ``step``; call :data:`hook` if set."""
    if hook is not None:
        hook(step)
    if os.environ.get("MODELSERVE_REGISTRY_FAULT") == step:
        kill = getattr(signal, "SIGKILL", None)
        if kill is not None:
            os.kill(os.getpid(), kill)
        os._exit(137)
