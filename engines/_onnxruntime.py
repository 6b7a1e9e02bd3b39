"""ONNX Runtime engine adapter (``pip install modelserve[onnxruntime]``).

``device`` picks the execution provider:

==========================  =====================================================================
``"cpu"``                   CPUExecutionProvider
``"cuda"``, ``"cuda:N"``    CUDAExecutionProvider on GPU N (``pip install modelserve[onnxruntime-gpu]``)
``"tensorrt"``,             TensorrtExecutionProvider on GPU N, with the CUDA provider on the same
``"tensorrt:N"``            GPU for the nodes TensorRT does not take (ONNX Runtime's partitioning,
                            not a fallback; needs onnxruntime-gpu and the TensorRT libraries)
``"openvino"``,             OpenVINOExecutionProvider on OpenVINO's CPU (default), GPU or NPU
``"openvino:GPU"``          (``pip install modelserve[onnxruntime-openvino]``)
==========================  =====================================================================

Nothing falls back silently: a device whose execution provider is missing, or that the session did
not actually get, raises :class:`EngineUnavailableError` saying why, and ONNX Runtime's own
retry-with-another-provider is turned off. ``InferenceSession.run`` is thread-safe, so one session
serves every thread.

Options:

* ``intra_op_threads`` / ``inter_op_threads`` (int, 0 = ONNX Runtime's default: one per core)
* ``spinning`` (bool, default False): whether idle intra-op threads busy-wait for work. ONNX
  Runtime's default is True, which lets two concurrent runs of one session steal each other's
  cores: off, two callers on 2 cores got 63 images/s instead of 46, with one caller unchanged
  (``benchmarks/RESULTS.md``, "Cores"). Not applied over a ``session_options`` you pass unless
  given explicitly.
* ``graph_optimization``: ``"disable" | "basic" | "extended" | "all"`` (default ``"all"``)
* ``session_options``: a ready ``onnxruntime.SessionOptions`` (the options above then apply on top)
* ``provider_options``: dict passed to the device's execution provider (e.g. CUDA's ``gpu_mem_limit``,
  TensorRT's ``trt_max_workspace_size``); it overrides what ``fp16``/``cache_dir`` set
* ``fp16`` (bool, TensorRT and OpenVINO providers): let the provider compute in half precision
* ``cache_dir`` (TensorRT and OpenVINO providers): where the provider caches built engines/blobs
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from .._devices import parse_device as split_device
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


_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
_EXTRAS = {
    "cuda": "pip install modelserve[onnxruntime-gpu]",
    "tensorrt": "pip install modelserve[onnxruntime-gpu] and the TensorRT libraries (pip install tensorrt)",
    "openvino": "pip install modelserve[onnxruntime-openvino]",
}
_OV_DEVICES = ("CPU", "GPU", "NPU")


def parse_device(device: str) -> tuple[str, int | str]:
    """``(provider kind, GPU index or OpenVINO device type)``: ``"cpu"`` -> ``("cpu", 0)``,
    ``"cuda:1"`` -> ``("cuda", 1)``, ``"openvino:gpu"`` -> ``("openvino", "GPU")``."""
    kind, where = split_device(device)
    if kind == "cpu" and where is None:
        return "cpu", 0
    if kind in ("cuda", "tensorrt") and not isinstance(where, str):
        return kind, where or 0
    if kind == "openvino" and where is None:
        return "openvino", "CPU"
    if kind == "openvino" and isinstance(where, str) and where.upper() in _OV_DEVICES:
        return "openvino", where.upper()
    raise InvalidInputError(
        "device must be 'cpu', 'cuda', 'cuda:N', 'tensorrt', 'tensorrt:N', 'openvino' or "
        f"'openvino:CPU|GPU|NPU' for onnxruntime, got {device!r}"
    )


def provider_list(kind: str, where: int | str, options: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The provider list for one device: primary provider first, with its options."""
    extra = dict(options.get("provider_options") or {})
    fp16, cache_dir = options.get("fp16"), options.get("cache_dir")
    if kind in ("cpu", "cuda") and (fp16 is not None or cache_dir is not None):
        raise InvalidInputError(f"fp16 and cache_dir apply to the tensorrt and openvino providers, not {kind!r}")
    if fp16 is not None and not isinstance(fp16, bool):
        raise InvalidInputError(f"fp16 must be a bool, got {fp16!r}")
    if kind == "cpu":
        return [("CPUExecutionProvider", extra)]
    if kind == "cuda":
        return [("CUDAExecutionProvider", {"device_id": where, **extra})]
    if kind == "tensorrt":
        trt: dict[str, Any] = {"device_id": where}
        if fp16 is not None:
            trt["trt_fp16_enable"] = fp16
        if cache_dir is not None:
            path = os.fspath(cache_dir)
            os.makedirs(path, exist_ok=True)
            trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=path,
                       trt_timing_cache_enable=True, trt_timing_cache_path=path)
        return [("TensorrtExecutionProvider", {**trt, **extra}), ("CUDAExecutionProvider", {"device_id": where})]
    ov: dict[str, Any] = {"device_type": where}
    if fp16 is not None:
        ov["precision"] = "FP16" if fp16 else "FP32"
    if cache_dir is not None:
        path = os.fspath(cache_dir)
        os.makedirs(path, exist_ok=True)
        ov["cache_dir"] = path
    return [("OpenVINOExecutionProvider", {**ov, **extra})]


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (node.shape or ()))
    return TensorSpec(node.name, shape, np.dtype(_ORT_DTYPES.get(node.type, np.float32)))


class OnnxRuntimeEngine(Engine):
    """Runs an ``.onnx`` model with ONNX Runtime on the CPU or one CUDA device."""

    name = "onnxruntime"

    option_names = frozenset(
        {"intra_op_threads", "inter_op_threads", "graph_optimization", "session_options", "provider_options",
         "fp16", "cache_dir", "spinning"}
    )

    def __init__(self, path: str, *, device: str = "cpu", **options: Any) -> None:
        ort = _import_ort()
        kind, where = parse_device(device)
        self.device = kind if kind == "cpu" else f"{kind}:{where}"
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path}")
        sess_options = self._session_options(ort, dict(options))
        providers = provider_list(kind, where, options)
        wanted = providers[0][0]
        if kind != "cpu":
            available = ort.get_available_providers()
            missing = [name for name, _ in providers if name not in available]
            if missing:
                raise EngineUnavailableError(
                    f"device {device!r} needs onnxruntime's {' and '.join(missing)}, but this onnxruntime "
                    f"{ort.__version__} offers only {available}: {_EXTRAS[kind]}"
                )
        try:
            # enable_fallback=0: no retry with other providers while the session is built, either
            self._session = ort.InferenceSession(path, sess_options=sess_options, providers=providers, enable_fallback=0)
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
            text = str(exc)
            if kind != "cpu" and any(w in text for w in ("CUDA", "TensorRT", "OpenVINO", "provider")):
                raise EngineUnavailableError(f"onnxruntime could not start {wanted} for {device!r}: {exc}") from exc
            raise ModelLoadError(f"onnxruntime cannot load {path!r}: {text.strip()}") from exc
        got = self._session.get_providers()
        if any(name not in got for name, _ in providers):
            raise EngineUnavailableError(
                f"onnxruntime did not start {[n for n, _ in providers]} for device {device!r} (session has {got}); "
                "check the CUDA/cuDNN/TensorRT/OpenVINO libraries the provider needs"
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
        known = OnnxRuntimeEngine.option_names
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
        spinning = options.get("spinning")
        if spinning is not None and not isinstance(spinning, bool):
            raise InvalidInputError(f"spinning must be a bool, got {spinning!r}")
        if spinning is not None or options.get("session_options") is None:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
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

    @classmethod
    def uses_cache_dir(cls, device: str) -> bool:
        """The TensorRT and OpenVINO providers cache compiled models in ``cache_dir``."""
        return split_device(device)[0] in ("tensorrt", "openvino")

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        """``"cpu"`` plus ``"cuda"``, ``"tensorrt"``, ``"openvino"`` for each provider this
        onnxruntime build offers (whether a GPU is really present shows when a session starts)."""
        try:
            available = _import_ort().get_available_providers()
        except EngineUnavailableError:
            return ()
        return ("cpu",) + tuple(k for k in ("cuda", "tensorrt", "openvino") if _PROVIDERS[k] in available)
