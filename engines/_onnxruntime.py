"""ONNX Runtime engine adapter (``pip install modelserve[onnxruntime]``).

``device`` is ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Nothing falls back silently: a device whose
execution provider is missing, or that the session did not actually get, raises
:class:`EngineUnavailableError` saying why, and ONNX Runtime's own retry-with-another-provider is
turned off. ``InferenceSession.run`` is thread-safe, so one session serves every thread.

Options:

* ``intra_op_threads`` / ``inter_op_threads`` (int, 0 = ONNX Runtime's default)
* ``graph_optimization``: ``"disable" | "basic" | "extended" | "all"`` (default ``"all"``)
* ``session_options``: a ready ``onnxruntime.SessionOptions`` (the options above then apply on top)
* ``provider_options``: dict passed to the device's execution provider (e.g. CUDA's ``gpu_mem_limit``)
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from .._engine import Engine, TensorSpec
from .._errors import EngineUnavailableError, InvalidInputError, ModelLoadError, ModelserveError

__all__ = ["OnnxRuntimeEngine"]

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}

_OPT_LEVELS = ("disable", "basic", "extended", "all")


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailableError(
            "onnxruntime is not installed: pip install modelserve[onnxruntime] "
            "(or modelserve[onnxruntime-gpu] for CUDA)"
        ) from exc
    return onnxruntime


def _parse_device(device: str) -> tuple[str, int]:
    dev = str(device).strip().lower()
    if dev == "cpu":
        return "cpu", 0
    if dev == "cuda":
        return "cuda", 0
    if dev.startswith("cuda:") and dev[5:].isdigit():
        return "cuda", int(dev[5:])
    raise InvalidInputError(f"device must be 'cpu', 'cuda' or 'cuda:N' for onnxruntime, got {device!r}")


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (node.shape or ()))
    return TensorSpec(node.name, shape, np.dtype(_ORT_DTYPES.get(node.type, np.float32)))


class OnnxRuntimeEngine(Engine):
    """Runs an ``.onnx`` model with ONNX Runtime on the CPU or one CUDA device."""

    name = "onnxruntime"

    def __init__(self, path: str, *, device: str = "cpu", **options: Any) -> None:
        ort = _import_ort()
        kind, index = _parse_device(device)
        self.device = "cpu" if kind == "cpu" else f"cuda:{index}"
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path}")
        sess_options = self._session_options(ort, dict(options))
        providers: list[Any]
        if kind == "cuda":
            available = ort.get_available_providers()
            if "CUDAExecutionProvider" not in available:
                raise EngineUnavailableError(
                    f"device {device!r} needs onnxruntime's CUDAExecutionProvider, but this onnxruntime "
                    f"{ort.__version__} offers only {available}: pip install modelserve[onnxruntime-gpu]"
                )
            cuda_opts = {"device_id": index, **(options.get("provider_options") or {})}
            providers = [("CUDAExecutionProvider", cuda_opts)]
        else:
            providers = [("CPUExecutionProvider", dict(options.get("provider_options") or {}))]
        try:
            self._session = ort.InferenceSession(path, sess_options=sess_options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
            if kind == "cuda" and "CUDA" in str(exc):
                raise EngineUnavailableError(f"onnxruntime could not start CUDA for {device!r}: {exc}") from exc
            raise ModelLoadError(f"onnxruntime cannot load {path!r}: {str(exc).strip()}") from exc
        got = self._session.get_providers()
        wanted = providers[0][0]
        if wanted not in got:
            raise EngineUnavailableError(
                f"onnxruntime did not start {wanted} for device {device!r} (session has {got}); "
                "check the CUDA and cuDNN libraries onnxruntime-gpu needs"
            )
        self._session.disable_fallback()
        self.inputs = tuple(_spec(n) for n in self._session.get_inputs())
        self.outputs = tuple(_spec(n) for n in self._session.get_outputs())
        meta = self._session.get_modelmeta()
        self.metadata = dict(meta.custom_metadata_map or {})
        self.path = path
        self._output_names = [o.name for o in self.outputs]

    @staticmethod
    def _session_options(ort: Any, options: dict[str, Any]) -> Any:
        known = {"intra_op_threads", "inter_op_threads", "graph_optimization", "session_options", "provider_options"}
        unknown = set(options) - known
        if unknown:
            raise InvalidInputError(f"unknown onnxruntime options {sorted(unknown)}; known: {sorted(known)}")
        so = options.get("session_options") or ort.SessionOptions()
        for key, attr in (("intra_op_threads", "intra_op_num_threads"), ("inter_op_threads", "inter_op_num_threads")):
            if options.get(key) is not None:
                value = options[key]
                if not isinstance(value, int) or value < 0:
                    raise InvalidInputError(f"{key} must be an int >= 0, got {value!r}")
                setattr(so, attr, value)
        level = options.get("graph_optimization", "all")
        if level not in _OPT_LEVELS:
            raise InvalidInputError(f"graph_optimization must be one of {_OPT_LEVELS}, got {level!r}")
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        return so

    def run(self, feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        session = getattr(self, "_session", None)
        if session is None:
            raise ModelserveError("this onnxruntime engine is closed")
        try:
            return session.run(self._output_names, dict(feeds))
        except Exception as exc:
            shapes = {k: (v.shape, str(v.dtype)) for k, v in feeds.items()}
            raise InvalidInputError(f"onnxruntime rejected inputs {shapes}: {str(exc).strip()}") from exc

    def close(self) -> None:
        self._session = None

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            ort = _import_ort()
        except EngineUnavailableError as exc:
            return False, str(exc)
        return True, ort.__version__
