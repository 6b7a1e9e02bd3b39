"""Version manifests: what a version is made of, encoded canonically so it has one digest.

A manifest is JSON with sorted keys and no whitespace (``canonical_bytes``); its digest is the
sha256 of exactly those bytes, stored as a blob and named by version pointers, aliases and lock
files. It holds no timestamps, so the same files, name, label and metadata give the same digest
on every machine (a lock file written on one machine is valid on another)::

    {"files": [{"path": "yolov8n.onnx", "sha256": "<hex>", "size": 12345}],
     "format": 1, "kind": "file", "metadata": {...}, "model_info": {...} | null,
     "name": "det", "primary": "yolov8n.onnx", "version": "3"}

``kind`` is ``"file"`` (one file; ``primary`` is its name) or ``"directory"`` (``primary`` is
the single top-level model file, e.g. ``model.xml``, or null when there is not exactly one).

Hostile nesting: every JSON file the registry reads goes through :func:`loads`, which reports
nesting too deep to parse as ``ValueError`` (never ``RecursionError``); :func:`check_nesting`
bounds depth and size iteratively. Metadata is limited to 64 levels when written
(``Registry.register``); a manifest whose metadata or model info nests deeper than
:data:`MAX_READ_DEPTH` levels is malformed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .._errors import IntegrityError
from ._names import validate_label, validate_name, validate_relpath

__all__ = ["FileEntry", "Manifest", "canonical_bytes", "parse_manifest", "loads", "check_nesting", "FORMAT"]

FORMAT = 1
#: Deepest nesting of dicts/lists accepted in a stored manifest's metadata or model info.
MAX_READ_DEPTH = 128
_KEYS = {"files", "format", "kind", "metadata", "model_info", "name", "primary", "version"}


@dataclass(frozen=True)
class FileEntry:
    """One stored file of a version: relative POSIX ``path``, ``digest`` ("sha256:<hex>"), ``size``."""

    path: str
    digest: str
    size: int

    @property
    def hex(self) -> str:
        return self.digest[len("sha256:"):]


@dataclass(frozen=True)
class Manifest:
    """Decoded manifest (see the module docstring)."""

    name: str
    version: str
    kind: str
    primary: str | None
    files: tuple[FileEntry, ...]
    metadata: Mapping[str, Any]
    model_info: Mapping[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [{"path": f.path, "sha256": f.hex, "size": f.size} for f in self.files],
            "format": FORMAT,
            "kind": self.kind,
            "metadata": self.metadata,
            "model_info": self.model_info,
            "name": self.name,
            "primary": self.primary,
            "version": self.version,
        }

    def encode(self) -> bytes:
        return canonical_bytes(self.to_json())

    def same_content(self, other: "Manifest") -> bool:
        """Same files, kind, primary and user metadata (model_info is derived, so ignored)."""
        return (
            self.files == other.files
            and self.kind == other.kind
            and self.primary == other.primary
            and canonical_bytes(self.metadata) == canonical_bytes(other.metadata)
        )


def canonical_bytes(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, ASCII only, no NaN.

    Raises ``ValueError`` (not ``RecursionError``) for values nested too deeply to encode.
    """
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except RecursionError:
        raise ValueError("value is nested too deeply to encode as JSON") from None
    return text.encode("ascii")


def loads(data: bytes | str) -> Any:
    """``json.loads``, but nesting too deep to parse raises ``ValueError`` (not ``RecursionError``),
    so a hostile file is reported like any other malformed one."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply (arrays/objects inside each other, too deep to parse)") from None


def check_nesting(obj: Any, *, max_depth: int, max_values: int) -> None:
    """Raise ``ValueError`` if the JSON-like ``obj`` nests dicts/lists more than ``max_depth``
    levels deep or holds more than ``max_values`` values in all.

    Iterative (it never recurses, however deep ``obj`` is); a container that contains itself
    hits the depth limit, and a shared sub-list counts once per appearance, so a small object
    that would expand to an enormous JSON text hits the value limit quickly.
    """
    stack: list[tuple[Any, int]] = [(obj, 1)]
    count = 0
    while stack:
        o, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(o, Mapping):
            children = o.values()
        elif isinstance(o, (list, tuple)):
            children = o
        else:
            continue
        if depth > max_depth:
            raise ValueError(f"dicts/lists are nested deeper than {max_depth} levels")
        count += len(o)
        if count > max_values:
            raise ValueError(f"more than {max_values} values in all")
        stack.extend((c, depth + 1) for c in children)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_manifest(data: bytes, *, where: str) -> Manifest:
    """Decode and strictly validate manifest bytes; raise :class:`IntegrityError` if malformed."""
    try:
        obj = loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"manifest {where} is not valid JSON: {exc}") from exc
    try:
        if not isinstance(obj, dict) or set(obj) != _KEYS:
            raise ValueError(f"expected keys {sorted(_KEYS)}, got {sorted(obj) if isinstance(obj, dict) else type(obj).__name__}")
        if obj["format"] != FORMAT:
            raise ValueError(f"expected format {FORMAT}, got {obj['format']!r}")
        if obj["kind"] not in ("file", "directory"):
            raise ValueError(f"kind must be 'file' or 'directory', got {obj['kind']!r}")
        files = []
        seen: set[str] = set()
        if not isinstance(obj["files"], list) or not obj["files"]:
            raise ValueError("files must be a non-empty list")
        for f in obj["files"]:
            if not isinstance(f, dict) or set(f) != {"path", "sha256", "size"}:
                raise ValueError(f"file entry must have path, sha256, size; got {f!r:.120}")
            path = validate_relpath(f["path"])
            hx = f["sha256"]
            if not (isinstance(hx, str) and len(hx) == 64 and all(c in "0123456789abcdef" for c in hx)):
                raise ValueError(f"sha256 of {path!r} must be 64 lowercase hex digits, got {hx!r:.80}")
            size = f["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError(f"size of {path!r} must be an int >= 0, got {size!r}")
            if path.lower() in seen:
                raise ValueError(f"duplicate file path {path!r}")
            seen.add(path.lower())
            files.append(FileEntry(path, "sha256:" + hx, size))
        if obj["kind"] == "file" and (len(files) != 1 or obj["primary"] != files[0].path or "/" in files[0].path):
            raise ValueError("a 'file' manifest has exactly one top-level file, which is its primary")
        primary = obj["primary"]
        if primary is not None and primary not in {f.path for f in files}:
            raise ValueError(f"primary {primary!r} is not one of the files")
        if not isinstance(obj["metadata"], dict):
            raise ValueError("metadata must be an object")
        if obj["model_info"] is not None and not isinstance(obj["model_info"], dict):
            raise ValueError("model_info must be an object or null")
        for key in ("metadata", "model_info"):
            try:
                check_nesting(obj[key], max_depth=MAX_READ_DEPTH, max_values=len(data))
            except ValueError as exc:
                raise ValueError(f"{key}: {exc} (too deeply nested)") from None
        return Manifest(
            name=validate_name(obj["name"]),
            version=validate_label(obj["version"]),
            kind=obj["kind"],
            primary=primary,
            files=tuple(files),
            metadata=obj["metadata"],
            model_info=obj["model_info"],
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise IntegrityError(f"manifest {where} is malformed: {exc}") from exc
