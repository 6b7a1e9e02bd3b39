"""Rollouts that follow the registry: a served model started from an alias (``det@prod``) or a bare
name (its latest version) moves when the registry does.

An :class:`AliasFollower` thread resolves each following model's reference every ``interval_s``
seconds. When it names another version (``set_alias``, ``rollback``, a new latest), the new version
is loaded *beside* the old one; once it is ready the repository switches to it atomically
(:meth:`ModelRepository.replace`): new requests go to the new version, requests already running on
the old one finish there, then the old one is drained and closed. A version that fails to load is
logged and tried again on the next tick; the old one keeps serving meanwhile.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .._errors import ModelserveError

__all__ = ["AliasFollower", "DEFAULT_INTERVAL_S"]

_log = logging.getLogger("modelserve.serving")

#: How often a follower looks at the registry, by default.
DEFAULT_INTERVAL_S = 2.0


class AliasFollower:
    """Keeps ``repository``'s following models on the version their reference names now."""

    def __init__(self, repository: Any, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.repository = repository
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="modelserve-alias-follower", daemon=True)

    def start(self) -> "AliasFollower":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop looking (a switch under way finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def check_now(self) -> list[str]:
        """Move every following model whose reference names another version now; the names moved."""
        moved = []
        for model in self.repository.following():
            if self._stop.is_set():
                break
            try:
                version = str(self.repository.registry_of(model.name).resolve(model.ref).version)
                if version == model.version:
                    continue
                _log.info("modelserve: %s follows %s, which moved from version %s to %s: switching",
                          model.name, model.ref, model.version, version)
                self.repository.load_from_registry(model.name, model.ref)
                moved.append(model.name)
            except ModelserveError as exc:
                _log.error("modelserve: cannot move %s to what %s names now (%s); it keeps serving version %s",
                           model.name, model.ref, exc, model.version)
        return moved

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check_now()
            except Exception:  # noqa: BLE001 - the follower must outlive one bad tick
                _log.exception("modelserve: the alias follower failed a check (it goes on)")
