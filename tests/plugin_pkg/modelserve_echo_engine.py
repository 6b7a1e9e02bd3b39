"""A third-party modelserve engine: ONNX Runtime on the CPU, written against the public interface
only (``modelserve.Engine`` and ``modelserve.TensorSpec``), as a plugin author would."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

import modelserve as ms

__version__ = "0.1.0"


class EchoEngine(ms.Engine):
    name = "echo"
    option_names = frozenset({"tag"})

    def __init__(self, path: str, *, device: str = "cpu", **options: Any) -> None:
        import onnxruntime as ort

        if device != "cpu":
            raise ms.EngineUnavailableError(f"echo runs on the cpu only, not {device!r}")
        unknown = set(options) - self.option_names
        if unknown:
            raise ms.InvalidInputError(f"unknown echo options {sorted(unknown)}")
        self.tag = options.get("tag")
        self.device = device
        self.calls = 0
        self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        dyn = lambda shape: tuple(d if isinstance(d, int) else None for d in shape)  # noqa: E731
        self.inputs = tuple(ms.TensorSpec(i.name, dyn(i.shape), np.dtype(np.float32)) for i in self._session.get_inputs())
        self.outputs = tuple(ms.TensorSpec(o.name, dyn(o.shape), np.dtype(np.float32)) for o in self._session.get_outputs())
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        self.calls += 1
        return self._session.run(None, dict(feeds))

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return True, __version__

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        return ("cpu",)


class NotAnEngine:
    """Registered on purpose under "broken": modelserve must refuse it with a clear error."""
