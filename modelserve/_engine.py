"""The engine interface: what modelserve needs from an inference runtime.

An engine loads one model file, describes its inputs and outputs, and runs batches of numpy
arrays. Everything else (images, letterboxing, NMS, batching, threads) is modelserve's job, so an
adapter for a new runtime is a few dozen lines. Third-party engines subclass :class:`Engine` and are
found by name (see :mod:`modelserve._engine_catalog`).

Contract for implementers:

* ``__init__(path, *, device="cpu", **options)`` loads the model or raises :class:`ModelLoadError`
  (bad file) / :class:`EngineUnavailableError` (runtime or device missing). Unknown options raise
  :class:`InvalidInputError`.
* ``inputs`` / ``outputs``: :class:`TensorSpec` per tensor, in the model's order; dynamic dimensions
  are ``None``.
* ``metadata``: the model's string key/value metadata (for ONNX, ``metadata_props``).
* ``run(feeds)`` takes ``{input name: array}`` and returns the outputs as a list of numpy arrays in
  ``outputs`` order. It must be safe to call from several threads at once (serialise internally if
  the runtime is not).
* ``close()`` frees the runtime's resources; calling it twice is harmless.
* ``max_batch_size``: the largest batch ``run`` accepts (``None``: no limit beyond the input's
  shape). The Predictor splits larger batches into chunks of at most this size.

Optional class-level hooks (defaults shown below): ``option_names`` (the options ``__init__``
accepts, so ``engine="auto"`` can skip an engine that would reject them), ``available_devices()``
(what ``ms.list_engines()`` lists), ``uses_cache_dir(device)`` (True when the engine takes a
``cache_dir`` option for compiled artifacts on that device; models loaded from a registry then get
a cache directory in the registry's artifact area, cleaned by ``gc`` with the model).

Plugins register their class in the entry-point group ``modelserve.engines``
(``[project.entry-points."modelserve.engines"] mine = "my_pkg:MyEngine"``); see
:mod:`modelserve._engine_catalog` for a complete example.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

__all__ = ["TensorSpec", "Engine"]


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (``None`` for a dynamic dimension) and numpy dtype of one model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def is_dynamic(self) -> bool:
        """True when any dimension is dynamic."""
        return any(d is None for d in self.shape)


class Engine(abc.ABC):
    """Base class of every engine adapter. See the module docstring for the contract."""

    #: The name users pass as ``engine=`` (e.g. ``"onnxruntime"``).
    name: ClassVar[str] = ""

    #: Options ``__init__`` accepts (``None``: unknown, accept anything when choosing ``auto``).
    option_names: ClassVar[frozenset[str] | None] = None

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: Mapping[str, str]
    device: str

    #: The largest batch ``run`` accepts; ``None``: unlimited (a fixed batch dimension aside).
    max_batch_size: int | None = None

    @abc.abstractmethod
    def __init__(self, path: str, *, device: str = "cpu", **options: Any) -> None: ...

    @abc.abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        """Run one batch; ``feeds`` maps input names to arrays. Thread-safe."""

    def close(self) -> None:  # noqa: B027  (optional hook: engines without resources keep this no-op)
        """Release the runtime's resources. Idempotent."""

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """``(True, version)`` when the runtime can be imported here, else ``(False, reason)``."""
        return True, ""

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        """Devices this engine can use on this machine."""
        return ("cpu",)

    @classmethod
    def uses_cache_dir(cls, device: str) -> bool:
        """True when, on ``device``, the engine takes a ``cache_dir`` option for compiled artifacts."""
        return False

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}{list(s.shape)}" for s in self.inputs)
        return f"<{type(self).__name__} device={self.device!r} inputs=[{ins}]>"
