"""OpenVINO engine adapter (``pip install modelserve[openvino]``).

Loads an ``.onnx`` file or an OpenVINO IR (``model.xml`` with ``model.bin`` beside it) and compiles
it once; every concurrent caller gets its own ``InferRequest`` from a pool (never one shared
request), so ``run`` is thread-safe and calls from different threads overlap.

``device``: ``"cpu"``, ``"gpu"`` (Intel GPU; ``"gpu:N"`` for the N-th), ``"npu"`` or ``"auto"``
(OpenVINO's AUTO plugin, which picks among the devices present; ``engine.execution_devices`` says
which it took). A named device that OpenVINO does not see raises :class:`EngineUnavailableError`;
nothing falls back silently.

Options:

* ``performance_hint``: ``"latency"`` (default) or ``"throughput"``
* ``precision``: ``"f32"`` (default: the same numbers as ONNX Runtime), ``"f16"``, ``"bf16"`` or
  ``"default"`` (the device's own choice, e.g. bf16 on CPUs with AMX/AVX512-BF16, f16 on GPUs)
* ``cache_dir``: directory for OpenVINO's compiled-model cache (``CACHE_DIR``); later loads of the
  same model on the same device skip compilation
* ``num_requests``: most infer requests, i.e. runs in flight at once (more callers wait for a free
  request); default: the compiled model's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``, at least 4.
  Requests are created on first need, so one calling thread holds one request
* ``num_threads``: ``INFERENCE_NUM_THREADS`` (0 = OpenVINO's default)
* ``mmap``: map the weights (IR ``.bin``) and cached compiled models into memory instead of
  reading them (``ENABLE_MMAP``). Default ``False``: OpenVINO's own default maps them, and then a
  file rewritten or truncated in place while the model is loaded (``cp new.bin model.bin``
  writes into the same inode) changes the weights under a running model or kills the process
  with ``SIGBUS``. With ``False`` the weights live in this process's memory and later changes to
  the files cannot reach it; ``True`` shares the pages between processes (less memory) and is
  safe only for files nobody rewrites
* ``config``: a dict of raw OpenVINO properties, applied last (e.g. ``{"NUM_STREAMS": "2"}``)

Metadata (Ultralytics' names, stride, imgsz): an ONNX file's ``metadata_props``; for IR, the
``framework`` section of ``rt_info`` (where ``openvino.save_model`` puts an ONNX model's metadata)
and an Ultralytics ``metadata.yaml`` beside the ``.xml``.
"""

from __future__ import annotations

import ast
import os
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from .._devices import parse_device as split_device
from .._engine import Engine, TensorSpec
from .._errors import EngineUnavailableError, InvalidInputError, ModelLoadError, ModelserveError
from ._onnxinfo import read_onnx_info
from ._pool import SlotPool

__all__ = ["OpenVINOEngine"]

_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
_PRECISIONS = {"f32": "f32", "f16": "f16", "bf16": "bf16", "default": None}
_KNOWN = {"performance_hint", "precision", "cache_dir", "num_requests", "num_threads", "mmap", "config"}
_core_lock = threading.Lock()
_core: Any = None


def _import_ov() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise EngineUnavailableError("openvino not installed: pip install modelserve[openvino]") from exc
    return openvino


def _get_core() -> Any:
    """One process-wide ``openvino.Core`` (it is thread-safe and loading plugins is slow)."""
    global _core
    with _core_lock:
        if _core is None:
            _core = _import_ov().Core()
        return _core


def parse_device(device: str) -> str:
    """modelserve's device name -> OpenVINO's (``"gpu:1"`` -> ``"GPU.1"``)."""
    family, where = split_device(device)
    if family in ("cpu", "gpu", "npu", "auto") and where is None:
        return family.upper()
    if family == "gpu" and isinstance(where, int):
        return f"GPU.{where}"
    raise InvalidInputError(f"device must be 'cpu', 'gpu', 'gpu:N', 'npu' or 'auto' for openvino, got {device!r}")


def _device_present(ov_device: str, available: Sequence[str]) -> bool:
    if ov_device == "AUTO":
        return bool(available)
    if ov_device in available:
        return True
    family, _, index = ov_device.partition(".")
    if not index:
        return any(a.split(".")[0] == family for a in available)
    return index == "0" and family in available  # a single GPU is listed as "GPU", it is GPU.0


def _scalar(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        inner = text[1:-1]
        return inner.replace("''", "'") if text[0] == "'" else inner
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~", ""):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def read_ultralytics_yaml(text: str) -> dict[str, str]:
    """Ultralytics' ``metadata.yaml`` (PyYAML ``safe_dump`` output) as ONNX-style string metadata.

    Handles the shapes Ultralytics writes: ``key: scalar``, a block list (``imgsz:`` then
    ``- 640``) and a one-level block map (``names:`` then ``  0: person``); flow collections and
    anything deeper are kept as text. Uses PyYAML's ``safe_load`` when it is installed.
    """
    data: dict[str, Any]
    try:
        import yaml  # type: ignore[import-untyped]

        loaded = yaml.safe_load(text)
        data = loaded if isinstance(loaded, dict) else {}
    except ImportError:
        data = {}
        key: str | None = None
        for raw in text.splitlines():
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            if not raw[0].isspace() and not raw.startswith("- "):
                k, _, v = raw.partition(":")
                key = k.strip()
                data[key] = _scalar(v) if v.strip() else None
            elif key is not None:
                item = raw.strip()
                if item.startswith("- "):
                    if not isinstance(data[key], list):
                        data[key] = []
                    data[key].append(_scalar(item[2:]))
                elif ":" in item:
                    if not isinstance(data[key], dict):
                        data[key] = {}
                    k, _, v = item.partition(":")
                    data[key][_scalar(k)] = _scalar(v)
    out: dict[str, str] = {}
    for k, v in data.items():
        if v is None:
            continue
        out[str(k)] = repr(v) if isinstance(v, (dict, list, tuple)) else str(v)
    return out


def _ir_metadata(model: Any, xml_path: str) -> dict[str, str]:
    meta: dict[str, str] = {}
    try:
        if model.has_rt_info(["framework"]):
            for key, value in model.get_rt_info()["framework"].items():
                meta[str(key)] = value.astype(str) if hasattr(value, "astype") else str(value)
    except Exception:  # noqa: BLE001 - rt_info layouts vary across OpenVINO versions; metadata is optional
        pass
    yaml_path = os.path.join(os.path.dirname(xml_path), "metadata.yaml")
    if os.path.isfile(yaml_path):
        with open(yaml_path, encoding="utf-8") as fh:
            for key, value in read_ultralytics_yaml(fh.read()).items():
                meta.setdefault(key, value)
    if "names" not in meta:
        try:
            if model.has_rt_info(["model_info", "labels"]):
                labels = model.get_rt_info(["model_info", "labels"]).astype(str)
                parsed = labels.split() if not labels.startswith("[") else ast.literal_eval(labels)
                meta["names"] = repr(dict(enumerate(str(x) for x in parsed)))
        except Exception:  # noqa: BLE001
            pass
    return meta


def _last_line(exc: BaseException) -> str:
    """OpenVINO errors carry a C++ trace ("Exception from src/...:84:"); keep the message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from ")]
    return (lines[-1] if lines else str(exc).strip())[:500]


def _spec(port: Any, index: int, prefix: str) -> TensorSpec:
    try:
        name = port.get_any_name()
    except RuntimeError:
        name = f"{prefix}{index}"
    shape = tuple(None if d.is_dynamic else int(d.get_length()) for d in port.get_partial_shape())
    try:
        dtype = np.dtype(port.get_element_type().to_dtype())
    except Exception:  # noqa: BLE001
        dtype = np.dtype(np.float32)
    return TensorSpec(name, shape, dtype)


class OpenVINOEngine(Engine):
    """Runs an ``.onnx`` or OpenVINO IR model on a CPU, Intel GPU or NPU."""

    name = "openvino"
    option_names = frozenset(_KNOWN)

    def __init__(self, path: str, *, device: str = "cpu", **options: Any) -> None:
        ov = _import_ov()
        ov_device = parse_device(device)
        unknown = set(options) - _KNOWN
        if unknown:
            raise InvalidInputError(f"unknown openvino options {sorted(unknown)}; known: {sorted(_KNOWN)}")
        config = self._config(ov_device, options)
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path}")
        is_ir = path.lower().endswith(".xml")
        if is_ir and not os.path.isfile(os.path.splitext(path)[0] + ".bin"):
            raise ModelLoadError(f"OpenVINO IR {path} has no weights file {os.path.splitext(path)[0] + '.bin'}")
        core = _get_core()
        available = list(core.available_devices)
        if not _device_present(ov_device, available):
            raise EngineUnavailableError(
                f"openvino {ov.__version__} sees no {ov_device} device for device={device!r} "
                f"(available: {available})"
            )
        if ov_device == "AUTO" and "INFERENCE_PRECISION_HINT" in config:
            # AUTO has no precision of its own: hand it to each device it may pick (CPUs and GPUs).
            # Without this, AUTO on a CPU with AVX512-BF16 or AMX runs in bf16.
            hint = config.pop("INFERENCE_PRECISION_HINT")
            config.setdefault("DEVICE_PROPERTIES", {
                d: {"INFERENCE_PRECISION_HINT": hint} for d in available if d.split(".")[0] in ("CPU", "GPU")
            })
        onnx_meta: dict[str, str] = {}
        if not is_ir:
            try:  # a clear error for a file that is not ONNX, before OpenVINO's C++ trace
                onnx_meta = dict(read_onnx_info(path).metadata)
            except ModelLoadError as exc:
                raise ModelLoadError(f"openvino cannot load {path!r}: {exc}") from None
        try:
            model = core.read_model(path, config={"ENABLE_MMAP": config["ENABLE_MMAP"]})
        except Exception as exc:  # OpenVINO raises RuntimeError with a long C++ trace
            raise ModelLoadError(f"openvino cannot load {path!r}: {_last_line(exc)}") from exc
        self.metadata = _ir_metadata(model, path) if is_ir else onnx_meta
        try:
            self._compiled = core.compile_model(model, ov_device, config)
        except Exception as exc:
            msg = _last_line(exc)
            if ov_device != "CPU" and "device" in msg.lower():
                raise EngineUnavailableError(f"openvino could not use {ov_device} for {device!r}: {msg}") from exc
            raise ModelLoadError(f"openvino cannot compile {path!r} for {ov_device}: {msg}") from exc
        self.device = str(device).strip().lower()
        self.path = path
        self.inputs = tuple(_spec(p, i, "input") for i, p in enumerate(self._compiled.inputs))
        self.outputs = tuple(_spec(p, i, "output") for i, p in enumerate(self._compiled.outputs))
        try:
            self.execution_devices = tuple(self._compiled.get_property("EXECUTION_DEVICES"))
        except Exception:  # noqa: BLE001
            self.execution_devices = (ov_device,)
        size = options.get("num_requests")
        if size is None:
            try:
                size = max(4, int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            except Exception:  # noqa: BLE001
                size = 4
        self._pool: SlotPool[Any] | None = SlotPool(self._compiled.create_infer_request, max(1, size), "openvino")
        self._input_specs = {s.name: s for s in self.inputs}

    @staticmethod
    def _config(ov_device: str, options: Mapping[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {}
        hint = options.get("performance_hint", "latency")
        if hint not in _HINTS:
            raise InvalidInputError(f"performance_hint must be 'latency' or 'throughput', got {hint!r}")
        config["PERFORMANCE_HINT"] = _HINTS[hint]
        precision = options.get("precision", "f32")
        if precision not in _PRECISIONS:
            raise InvalidInputError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        if _PRECISIONS[precision] is not None:
            config["INFERENCE_PRECISION_HINT"] = _PRECISIONS[precision]
        if options.get("cache_dir") is not None:
            cache_dir = os.fspath(options["cache_dir"])
            os.makedirs(cache_dir, exist_ok=True)
            config["CACHE_DIR"] = cache_dir
        mmap = options.get("mmap", False)
        if not isinstance(mmap, bool):
            raise InvalidInputError(f"mmap must be a bool, got {mmap!r}")
        config["ENABLE_MMAP"] = mmap  # also governs how a cached compiled model is imported
        for key in ("num_requests", "num_threads"):
            value = options.get(key)
            least = 1 if key == "num_requests" else 0
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise InvalidInputError(f"{key} must be an int >= {least}, got {value!r}")
        if options.get("num_threads"):
            config["INFERENCE_NUM_THREADS"] = int(options["num_threads"])
        extra = options.get("config") or {}
        if not isinstance(extra, Mapping):
            raise InvalidInputError(f"config must be a dict of OpenVINO properties, got {type(extra).__name__}")
        config.update({str(k): v for k, v in extra.items()})
        return config

    def _check(self, feeds: Mapping[str, np.ndarray]) -> None:
        if set(feeds) != set(self._input_specs):
            raise InvalidInputError(f"openvino expects inputs {sorted(self._input_specs)}, got {sorted(feeds)}")
        for name, arr in feeds.items():
            spec = self._input_specs[name]
            shape = getattr(arr, "shape", None)
            if getattr(arr, "dtype", None) != spec.dtype or shape is None or len(shape) != len(spec.shape):
                raise InvalidInputError(
                    f"openvino rejected input {name!r}: expected {spec.dtype} with shape {list(spec.shape)}, "
                    f"got {getattr(arr, 'dtype', type(arr).__name__)} with shape {shape}"
                )
            bad = [i for i, (want, got) in enumerate(zip(spec.shape, shape)) if want is not None and want != got]
            if bad:
                raise InvalidInputError(
                    f"openvino rejected input {name!r}: expected shape {list(spec.shape)}, got {list(shape)}"
                )

    def run(self, feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        pool = self._pool
        if pool is None:
            raise ModelserveError("this openvino engine is closed")
        self._check(feeds)
        with pool.slot() as request:
            try:
                result = request.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()}, share_inputs=True)
            except Exception as exc:
                shapes = {k: (v.shape, str(v.dtype)) for k, v in feeds.items()}
                raise InvalidInputError(f"openvino rejected inputs {shapes}: {str(exc).strip()[:300]}") from exc
            # share_outputs defaults to False: these arrays are copies the request will not overwrite.
            return [np.asarray(result[i]) for i in range(len(self.outputs))]

    def close(self) -> None:
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            pool.close()
        self._compiled = None

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            ov = _import_ov()
        except EngineUnavailableError as exc:
            return False, str(exc)
        return True, ov.__version__.split("-")[0]

    @classmethod
    def uses_cache_dir(cls, device: str) -> bool:
        """OpenVINO keeps compiled models in ``cache_dir`` (``CACHE_DIR``) on every device."""
        return True

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        """modelserve device names OpenVINO can use here (``("cpu", "auto")`` on a plain CPU box)."""
        try:
            found = list(_get_core().available_devices)
        except Exception:  # noqa: BLE001 - not installed or plugin failure: no devices
            return ()
        devices: list[str] = []
        for d in found:
            family, _, index = d.partition(".")
            name = family.lower() if not index or index == "0" else f"{family.lower()}:{index}"
            if name not in devices:
                devices.append(name)
        if devices:
            devices.append("auto")
        return tuple(devices)
