"""Values the registry hands out: versions, alias moves, verification reports, gc plans."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ._manifest import FileEntry

__all__ = ["ModelVersion", "AliasMove", "Problem", "VerifyReport", "GcPlan"]


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered version.

    ``digest`` is the manifest digest ("sha256:<hex>"), the identity lock files pin.
    ``path`` is what to hand to an engine: for a single-file model the stored file, under its
    original file name; for a directory model its single top-level model file (``.onnx``,
    ``.xml``, ``.engine``, ``.plan``) if there is exactly one, else the directory itself.
    ``root`` is the directory holding the version's files (for a directory model, the model
    directory). Files there are read-only and must not be modified.
    ``metadata`` is the user's dict given at registration; ``model_info`` what the registry's
    describer reported at registration (by default, for ONNX models: names, imgsz, stride, IO
    specs; see ``_describe``) or None. Treat both as read-only.
    """

    name: str
    version: str
    digest: str
    path: Path
    metadata: Mapping[str, Any]
    model_info: Mapping[str, Any] | None
    files: tuple[FileEntry, ...]
    root: Path
    kind: str = "file"
    created_ns: int = 0

    def __hash__(self) -> int:
        return hash((self.name, self.version, self.digest))

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def size(self) -> int:
        """Total bytes of the version's files."""
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class AliasMove:
    """One line of an alias history: ``op`` is "set" or "rollback"; ``version``/``digest`` the
    new target; ``previous`` the target before it. ``seq`` is how many lines preceded it when
    its writer decided on it (None for histories written by older modelserve), ``id`` a random
    tag its writer uses to find it again (see ``_aliases``)."""

    op: str
    version: str
    digest: str
    previous: str | None
    time_ns: int
    pid: int
    seq: int | None = None
    id: str | None = None


@dataclass(frozen=True)
class Problem:
    """Something :meth:`Registry.verify` found wrong: ``kind``, the ``subject`` (ref or path), a message."""

    kind: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}: {self.message}"


@dataclass
class VerifyReport:
    """Result of :meth:`Registry.verify`; ``ok`` is True when ``problems`` is empty."""

    problems: list[Problem] = field(default_factory=list)
    versions_checked: int = 0
    files_checked: int = 0
    bytes_hashed: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class GcPlan:
    """What :meth:`Registry.gc` removes (``done`` False for a dry run): paths and bytes freed."""

    staging: list[Path] = field(default_factory=list)
    blobs: list[Path] = field(default_factory=list)
    trees: list[Path] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)
    state: list[Path] = field(default_factory=list)
    bytes: int = 0
    done: bool = False

    @property
    def paths(self) -> list[Path]:
        return [*self.staging, *self.blobs, *self.trees, *self.artifacts, *self.state]

    def __len__(self) -> int:
        return len(self.paths)
