"""Where things live under a registry root, and the default root.

Layout (``<hex>`` is a sha256 in lowercase hex, ``ab`` its first two digits)::

    registry.json                          format marker, written once
    blobs/sha256/ab/<hex>                  file contents and manifests, stored once, mode 0444
    trees/<manifest hex>/<files...>        a version's files under their own names (hard links)
    models/<name>/versions/<label>         version pointer (JSON: manifest digest), written once
    models/<name>/aliases/<alias>.jsonl    append-only alias history; its last move is the target
    artifacts/<source hex>/<key hex>/      derived artifacts (compiled plans, caches)
    state/verified/<manifest hex>.json     when each version's files were last hashed
    tmp/<kind>-<host>-<pid>-<time>-<rnd>   staging; anything here is invisible and gc-able
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["Layout", "default_root"]


def default_root() -> Path:
    """``$MODELSERVE_HOME``, else ``%LOCALAPPDATA%\\modelserve`` on Windows, else
    ``$XDG_CACHE_HOME/modelserve``, else ``~/.cache/modelserve``."""
    env = os.environ.get("MODELSERVE_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":  # pragma: no cover
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "modelserve"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "modelserve"
    return Path.home() / ".cache" / "modelserve"


class Layout:
    """Paths of one registry root (pure: computing a path never touches the disk)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = root / "registry.json"
        self.blobs = root / "blobs" / "sha256"
        self.trees = root / "trees"
        self.models = root / "models"
        self.artifacts = root / "artifacts"
        self.verified = root / "state" / "verified"
        self.tmp = root / "tmp"

    def blob(self, hexdigest: str) -> Path:
        return self.blobs / hexdigest[:2] / hexdigest

    def tree(self, manifest_hex: str) -> Path:
        return self.trees / manifest_hex

    def model(self, name: str) -> Path:
        return self.models / name

    def versions(self, name: str) -> Path:
        return self.models / name / "versions"

    def pointer(self, name: str, label: str) -> Path:
        return self.models / name / "versions" / label

    def aliases(self, name: str) -> Path:
        return self.models / name / "aliases"

    def alias_history(self, name: str, alias: str) -> Path:
        return self.models / name / "aliases" / f"{alias}.jsonl"

    def verified_state(self, manifest_hex: str) -> Path:
        return self.verified / f"{manifest_hex}.json"

    def artifact(self, source_hex: str, key_hex: str) -> Path:
        return self.artifacts / source_hex / key_hex
