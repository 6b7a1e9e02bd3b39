"""Naming rules of the registry, and parsing of references such as ``det@prod``.

Every name that becomes part of a path on disk passes through here first, so the rest of the
registry can join paths without worrying about ``..``, separators or device names.

Rules (all checked, each failure raises :class:`InvalidNameError` saying expected vs got):

* **model names**: 2-64 characters of ``a-z 0-9 . _ -``, starting with a letter or digit, not
  ending with ``.``, no ``..``, and not a Windows device name (``con``, ``nul``, ``com1``, ...,
  also with an extension such as ``con.onnx``). Lowercase only, so two names never collide on a
  case-insensitive file system. At least two characters, so ``c:3`` is never mistaken for a
  drive letter.
* **version labels** and **aliases**: the same, but 1-64 characters. The alias ``sha256`` is
  reserved (``det@sha256:<hex>`` selects by digest).
* **file paths inside a model** (directory models and archives): relative POSIX paths of at most
  1024 characters; each part 1-255 characters, not ``.``/``..``, no ``\\ : * ? " < > |``, no
  control characters, no trailing dot or space, not a device name.

References::

    det                  the latest version of det (the one registered last)
    det:3                version label 3
    det@prod             the version the alias prod points to
    det@sha256:<hex>     the version whose manifest digest is sha256:<hex> (8-64 hex digits)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .._errors import InvalidNameError

__all__ = [
    "MODEL_SUFFIXES",
    "Ref",
    "parse_ref",
    "is_registry_ref",
    "validate_name",
    "validate_label",
    "validate_alias",
    "validate_relpath",
    "validate_digest",
    "label_key",
]

#: File suffixes that make a string a model path rather than a registry reference.
MODEL_SUFFIXES = (".onnx", ".xml", ".engine", ".plan", ".bin", ".trt", ".tflite", ".pt", ".pb")

_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9_-])?")
_DIGEST_RE = re.compile(r"sha256:([0-9a-f]{64})")
_DIGEST_PREFIX_RE = re.compile(r"sha256:([0-9a-f]{8,64})")
_RESERVED = {"con", "prn", "aux", "nul", "conin$", "conout$", "clock$"}
_RESERVED |= {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
_RESERVED |= {f"com{c}" for c in "\u00b9\u00b2\u00b3"} | {f"lpt{c}" for c in "\u00b9\u00b2\u00b3"}
_BAD_PATH_CHARS = set('\\:*?"<>|')


def _is_reserved(part: str) -> bool:
    stem = part.split(".", 1)[0].rstrip(" ").lower()
    return stem in _RESERVED


def _check(kind: str, value: object, min_len: int) -> str:
    if not isinstance(value, str):
        raise InvalidNameError(f"{kind} must be a str, got {type(value).__name__}")
    shown = repr(value[:80])
    if not min_len <= len(value) <= 64:
        raise InvalidNameError(f"{kind} must be {min_len}-64 characters long, got {len(value)}: {shown}")
    if not _LABEL_RE.fullmatch(value):
        raise InvalidNameError(
            f"{kind} must be lowercase letters, digits, '.', '_' or '-', start with a letter or digit "
            f"and not end with '.', got {shown}"
        )
    if ".." in value:
        raise InvalidNameError(f"{kind} must not contain '..', got {shown}")
    if _is_reserved(value):
        raise InvalidNameError(f"{kind} must not be a reserved device name, got {shown}")
    return value


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`InvalidNameError`."""
    return _check("model name", name, 2)


def validate_label(label: object) -> str:
    """Return ``label`` if it is a valid version label, else raise :class:`InvalidNameError`."""
    return _check("version label", label, 1)


def validate_alias(alias: object) -> str:
    """Return ``alias`` if it is a valid alias, else raise :class:`InvalidNameError`."""
    _check("alias", alias, 1)
    if alias == "sha256":
        raise InvalidNameError("alias 'sha256' is reserved for digest references (name@sha256:<hex>)")
    return alias  # type: ignore[return-value]


def validate_digest(digest: object, *, prefix_ok: bool = False) -> str:
    """Return a normalised ``sha256:<hex>`` digest, or raise :class:`InvalidNameError`.

    With ``prefix_ok`` 8-64 hex digits are accepted (for ``name@sha256:<prefix>``).
    """
    if not isinstance(digest, str):
        raise InvalidNameError(f"digest must be a str 'sha256:<64 hex digits>', got {type(digest).__name__}")
    value = digest.strip().lower()
    pattern = _DIGEST_PREFIX_RE if prefix_ok else _DIGEST_RE
    if not pattern.fullmatch(value):
        want = "8-64" if prefix_ok else "64"
        raise InvalidNameError(f"digest must be 'sha256:' and {want} hex digits, got {digest[:80]!r}")
    return value


def validate_relpath(path: object) -> str:
    """Return ``path`` if it is a safe relative POSIX path of a file inside a model, else raise.

    Refuses absolute paths, drive letters, backslashes, ``.``/``..`` parts, empty parts, control
    characters, characters Windows forbids, trailing dots/spaces and device names.
    """
    if not isinstance(path, str):
        raise InvalidNameError(f"file path must be a str, got {type(path).__name__}")
    shown = repr(path[:120])
    if not 1 <= len(path) <= 1024:
        raise InvalidNameError(f"file path must be 1-1024 characters, got {len(path)}: {shown}")
    if path.startswith("/"):
        raise InvalidNameError(f"file path must be relative, got {shown}")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InvalidNameError(f"file path must not have empty, '.' or '..' parts, got {shown}")
        if len(part.encode("utf-8", "surrogatepass")) > 255:
            raise InvalidNameError(f"file name parts must be at most 255 bytes, got {shown}")
        if any(ord(c) < 32 or ord(c) == 127 or c in _BAD_PATH_CHARS for c in part):
            raise InvalidNameError(f"file path has a control character or one of \\:*?\"<>|, got {shown}")
        if part[-1] in ". ":
            raise InvalidNameError(f"file name parts must not end with '.' or ' ', got {shown}")
        if _is_reserved(part):
            raise InvalidNameError(f"file path has a reserved device name, got {shown}")
    return path


@dataclass(frozen=True)
class Ref:
    """A parsed registry reference: exactly one of ``label``, ``alias``, ``digest`` or none (latest)."""

    name: str
    label: str | None = None
    alias: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        if self.label is not None:
            return f"{self.name}:{self.label}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        if self.digest is not None:
            return f"{self.name}@{self.digest}"
        return self.name


def parse_ref(ref: object) -> Ref:
    """Parse ``name``, ``name:label``, ``name@alias`` or ``name@sha256:<hex>`` into a :class:`Ref`.

    Raises :class:`InvalidNameError` when any part breaks the naming rules.
    """
    if not isinstance(ref, str):
        raise InvalidNameError(f"reference must be a str like 'det:3' or 'det@prod', got {type(ref).__name__}")
    if len(ref) > 200:
        raise InvalidNameError(f"reference is too long ({len(ref)} characters): {ref[:80]!r}...")
    if "@" in ref:
        name, _, rest = ref.partition("@")
        if rest.lower().startswith("sha256:"):
            return Ref(validate_name(name), digest=validate_digest(rest, prefix_ok=True))
        return Ref(validate_name(name), alias=validate_alias(rest))
    if ":" in ref:
        name, _, label = ref.partition(":")
        return Ref(validate_name(name), label=validate_label(label))
    return Ref(validate_name(ref))


def is_registry_ref(source: object) -> bool:
    """True when ``source`` should be looked up in the registry rather than opened as a path.

    The rule, in order: only a ``str`` can be a reference; a string naming an existing file or
    directory is a path; a string with ``/`` or ``\\``, a drive letter (``C:``), or ending in a
    model-file suffix (``.onnx``, ``.xml``, ``.engine``, ``.plan``, ``.bin``, ``.trt``,
    ``.tflite``, ``.pt``, ``.pb``; any case) is a path; otherwise it is a reference exactly when it
    parses as one (``det``, ``det:3``, ``det@prod``, ``det@sha256:<hex>``). So
    ``load("yolov8n.onnx")`` always means the file, and a missing file gives a file error.
    """
    if not isinstance(source, str) or not source:
        return False
    if "/" in source or "\\" in source or "\x00" in source:
        return False
    if re.match(r"[A-Za-z]:", source):
        return False
    if source.lower().endswith(MODEL_SUFFIXES):
        return False
    try:
        if os.path.exists(source):
            return False
    except (OSError, ValueError):
        return False
    try:
        parse_ref(source)
    except InvalidNameError:
        return False
    return True


def label_key(label: str) -> tuple[int, int, str]:
    """Sort key of version labels: integer labels (``1``, ``2``, ``10``) numerically, before the others."""
    return (0, int(label), label) if label.isdigit() and len(label) <= 18 else (1, 0, label)
