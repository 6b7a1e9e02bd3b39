"""Finding engines by name and choosing one for a model file.

Built-in engines are listed here as ``"module:Class"`` strings and imported only when used, so
importing modelserve never needs an engine runtime.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from ._engine import Engine
from ._errors import EngineUnavailableError, InvalidInputError

__all__ = ["engine_class", "choose_engine", "open_engine"]

_BUILTIN: dict[str, str] = {
    "onnxruntime": "modelserve.engines._onnxruntime:OnnxRuntimeEngine",
}

_ALIASES = {"ort": "onnxruntime"}


def _load_target(target: str) -> type[Engine]:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise EngineUnavailableError(f"{target} is not a modelserve Engine subclass")
    return cls


def engine_class(name: str) -> type[Engine]:
    """The engine class registered under ``name`` (``"onnxruntime"``, ...)."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in _BUILTIN:
        raise EngineUnavailableError(f"unknown engine {name!r}; known engines: {sorted(_BUILTIN)}")
    return _load_target(_BUILTIN[key])


def choose_engine(path: str, engine: str | type[Engine] = "auto", device: str = "cpu") -> type[Engine]:
    """Pick the engine class for ``path``: an explicit engine wins, else the file type decides."""
    if isinstance(engine, type):
        if not issubclass(engine, Engine):
            raise InvalidInputError(f"engine must be a name or an Engine subclass, got {engine!r}")
        return engine
    if engine != "auto":
        return engine_class(engine)
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix in ("", ".onnx"):
        return engine_class("onnxruntime")
    raise EngineUnavailableError(f"no engine handles {suffix!r} files; pass engine= explicitly")


def open_engine(path: str, *, engine: str | type[Engine] = "auto", device: str = "cpu", **options: Any) -> Engine:
    """Choose and construct the engine for ``path``."""
    cls = choose_engine(path, engine, device)
    return cls(os.fspath(path), device=device, **options)
