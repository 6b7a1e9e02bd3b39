"""What is exported: an ONNX file or a registry reference, with the Triton name and version it gets."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError, ModelserveError

__all__ = ["Source", "TritonExportError", "resolve"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class TritonExportError(ModelserveError):
    """A Triton repository cannot be written as asked (the message says why): the output folder
    is not empty, the model is not an ONNX file, or its version is not a Triton version number."""


@dataclass(frozen=True)
class Source:
    """The model to export: its ONNX file, Triton name and version, and registry entry (if any)."""

    path: Path
    name: str
    version: int
    ref: str  # what the user named: a path or ``name:version``
    model_version: Any = None  # the registry's ModelVersion, for registry references
    registry: Any = None


def _version(label: str, given: int | None, ref: str) -> int:
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise InvalidInputError(f"version must be an integer >= 1 (a Triton version folder), got {given!r}")
        return given
    if not label.isdigit() or int(label) < 1:
        raise TritonExportError(f"{ref}: Triton version folders are integers >= 1 and this version is {label!r}; "
                                "choose one with --version N (version=N)")
    return int(label)


def resolve(source: str | os.PathLike[str], registry: Any, name: str | None, version: int | None) -> Source:
    """The :class:`Source` of a model path (version 1, named after its file) or a registry
    reference (``det@prod``: the version the alias pins, named after the model)."""
    from .._registry import Registry, is_registry_ref

    if not isinstance(source, (str, os.PathLike)):
        raise InvalidInputError(f"expected a model path or a registry reference, got {type(source).__name__}")
    text = os.fspath(source)
    mv = None
    if is_registry_ref(text):
        reg = registry if registry is not None else Registry(read_only=True)
        mv = reg.resolve(text)
        reg.check(mv)  # sizes (and digests on first use): never export bytes that changed
        path, default_name, label, ref = Path(mv.path), mv.name, str(mv.version), mv.ref
    else:
        path = Path(text)
        if not path.is_file():
            raise InvalidInputError(f"{text}: no such model file (or registry reference)")
        default_name, label, ref, reg = path.stem, "1", text, None
    if path.suffix.lower() != ".onnx" or not path.is_file():
        raise TritonExportError(f"{ref}: Triton export takes ONNX models (the OpenVINO IR and TensorRT plan "
                                f"are derived from it), got {path.name}")
    final = default_name if name is None else name
    if not isinstance(final, str) or not _NAME.match(final) or final in (".", ".."):
        raise InvalidInputError(f"a Triton model name is letters, digits, '_', '.', '-' (a folder name), got {final!r}")
    return Source(path=path, name=final, version=_version(label, version, ref), ref=ref, model_version=mv,
                  registry=reg)
