"""TensorRT engine adapter (``pip install modelserve[tensorrt]``: TensorRT 10+ and pycuda).

Loads an ``.onnx`` file, building a TensorRT plan for it, or a prebuilt ``.engine``/``.plan``.

``device``: ``"cuda"`` or ``"cuda:N"``. No GPU, no TensorRT or no pycuda raises
:class:`EngineUnavailableError`; nothing falls back.

Building from ONNX: one optimisation profile covers what the Predictor sends. For a detector
input ``[batch, 3, height, width]`` with dynamic dimensions that is batch ``1..max_batch``
(optimum ``opt_batch``) and height/width ``min_imgsz..imgsz`` in each axis (optimum ``imgsz``),
because the Predictor letterboxes dynamic models to at most ``imgsz`` (rounded up to the stride)
and at least one stride. Static dimensions stay as the model declares them.

With ``cache_dir`` the plan is kept as ``<key digest>.plan`` plus ``<key digest>.json`` (the
sidecar: the cache key, the ONNX metadata, the tensors and the profile). The key is the ONNX
file's sha256, the TensorRT version, the GPU's name and compute capability, the precision and the
profile, so a plan is reused only where it is valid. Both files are written to a temporary name
and moved into place (``os.replace``), sidecar last, so a reader never sees half a plan. The
builder's timing cache lives beside them (``timing-<TensorRT>-<GPU>-<cc>.cache``). A plan is a
plain TensorRT plan: no custom header.

Prebuilt ``.engine``/``.plan`` files: metadata comes from a sidecar ``<file stem>.json`` when
present, or from the JSON header Ultralytics' TensorRT export writes in front of its plans.

Options:

* ``fp16`` (bool, default False): allow FP16 kernels (results then differ slightly from FP32)
* ``max_batch`` (default 8), ``opt_batch`` (default 1): the profile's batch range
* ``imgsz`` (int or (h, w); default the model's metadata imgsz, else 640): largest input size;
  ``min_imgsz`` (default the stride, 32): smallest
* ``profile``: ``{input name: (min shape, opt shape, max shape)}`` for models that are not plain
  detectors; replaces the computed profile
* ``cache_dir``: where built plans are cached (None: build in memory on every load)
* ``workspace`` (bytes): the builder's workspace memory pool limit
* ``num_contexts`` (default 2): execution contexts, i.e. runs in flight at once; each has its own
  CUDA stream and pinned host buffers

Threads: the adapter retains the device's primary CUDA context and pushes it around every call,
so ``run`` works from any thread (batcher threads, web-server pools) without the caller knowing
about CUDA. Each run takes an idle execution context (or waits for one), sets the input shapes,
copies into pinned host buffers, enqueues ``execute_async_v3`` on that context's stream and
synchronises only that stream.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .._engine import Engine, TensorSpec
from .._errors import EngineUnavailableError, InvalidInputError, ModelLoadError, ModelserveError
from ._onnxinfo import OnnxTensor, read_onnx_info, sha256_file
from ._pool import SlotPool

__all__ = [
    "TensorRTEngine",
    "parse_device",
    "profile_shapes",
    "cache_key",
    "key_digest",
    "binding_layout",
    "Binding",
    "write_plan",
    "find_plan",
    "split_ultralytics_engine",
]

SIDECAR_FORMAT = "modelserve-tensorrt-plan/1"
_KNOWN = {"fp16", "max_batch", "opt_batch", "imgsz", "min_imgsz", "profile", "cache_dir", "workspace", "num_contexts"}
_EXTRA = "pip install modelserve[tensorrt]"

Shape = tuple[int, ...]


# ---------------------------------------------------------------------------------------------
# GPU-free logic (unit-tested without TensorRT)
# ---------------------------------------------------------------------------------------------


def parse_device(device: str) -> int:
    """``"cuda"`` -> 0, ``"cuda:N"`` -> N."""
    dev = str(device).strip().lower()
    if dev == "cuda":
        return 0
    if dev.startswith("cuda:") and dev[5:].isdigit():
        return int(dev[5:])
    raise InvalidInputError(f"device must be 'cuda' or 'cuda:N' for tensorrt, got {device!r}")


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise InvalidInputError(f"{what} must be a positive int or (height, width), got {value!r}")
    return int(value[0]), int(value[1])


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{what} must be an int >= 1, got {value!r}")
    return int(value)


def _round_up(value: int, stride: int) -> int:
    return max(-(-value // stride) * stride, stride)


def profile_shapes(
    inputs: Sequence[OnnxTensor],
    *,
    imgsz: int | Sequence[int] = 640,
    stride: int = 32,
    max_batch: int = 8,
    opt_batch: int = 1,
    min_imgsz: int | Sequence[int] | None = None,
) -> dict[str, tuple[Shape, Shape, Shape]]:
    """The optimisation profile ``{input: (min, opt, max)}`` covering what the Predictor sends.

    A 4-D ``[batch, channels, height, width]`` input: a dynamic batch spans ``1..max_batch``
    (optimum ``opt_batch``); a dynamic height/width spans ``min_imgsz..imgsz`` rounded up to the
    stride (optimum ``imgsz``). Static dimensions keep their value. Any other dynamic dimension
    cannot be guessed and raises :class:`InvalidInputError` asking for ``profile=``.

    >>> t = OnnxTensor("images", np.dtype("float32"), ("batch", 3, "height", "width"))
    >>> profile_shapes([t], imgsz=320, max_batch=4)["images"]
    ((1, 3, 32, 32), (1, 3, 320, 320), (4, 3, 320, 320))
    """
    max_batch = _positive_int(max_batch, "max_batch")
    opt_batch = _positive_int(opt_batch, "opt_batch")
    stride = _positive_int(stride, "stride")
    if opt_batch > max_batch:
        raise InvalidInputError(f"opt_batch ({opt_batch}) must be <= max_batch ({max_batch})")
    hi = tuple(_round_up(v, stride) for v in _pair(imgsz, "imgsz"))
    lo = tuple(_round_up(v, stride) for v in _pair(min_imgsz if min_imgsz is not None else stride, "min_imgsz"))
    if lo[0] > hi[0] or lo[1] > hi[1]:
        raise InvalidInputError(f"min_imgsz {lo} must not exceed imgsz {hi}")
    profile: dict[str, tuple[Shape, Shape, Shape]] = {}
    for t in inputs:
        shape = t.shape
        if all(d is not None for d in shape):
            fixed = tuple(int(d) for d in shape if d is not None)
            profile[t.name] = (fixed, fixed, fixed)
            continue
        if len(shape) != 4 or shape[1] is None:
            raise InvalidInputError(
                f"cannot infer an optimisation profile for input {t.name!r} with dims {list(t.dims)}; "
                "pass engine_options={'profile': {name: (min_shape, opt_shape, max_shape)}}"
            )
        triples: list[tuple[int, int, int]] = []
        for axis, dim in enumerate(shape):
            if dim is not None:
                triples.append((dim, dim, dim))
            elif axis == 0:
                triples.append((1, opt_batch, max_batch))
            else:
                triples.append((lo[axis - 2], hi[axis - 2], hi[axis - 2]))
        mins, opts, maxs = zip(*triples)
        profile[t.name] = (tuple(mins), tuple(opts), tuple(maxs))
    return profile


def _check_profile(profile: Mapping[str, Any], inputs: Sequence[OnnxTensor]) -> dict[str, tuple[Shape, Shape, Shape]]:
    names = {t.name: t for t in inputs}
    if set(profile) != set(names):
        raise InvalidInputError(f"profile must give shapes for exactly the inputs {sorted(names)}, got {sorted(profile)}")
    out: dict[str, tuple[Shape, Shape, Shape]] = {}
    for name, triple in profile.items():
        try:
            mn, op, mx = (tuple(int(d) for d in s) for s in triple)
        except (TypeError, ValueError):
            raise InvalidInputError(f"profile[{name!r}] must be (min_shape, opt_shape, max_shape), got {triple!r}") from None
        rank = len(names[name].dims)
        if not (len(mn) == len(op) == len(mx) == rank) or not all(0 < a <= b <= c for a, b, c in zip(mn, op, mx)):
            raise InvalidInputError(f"profile[{name!r}] needs three rank-{rank} shapes with 0 < min <= opt <= max, got {triple!r}")
        out[name] = (mn, op, mx)
    return out


def cache_key(
    *,
    onnx_sha256: str,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int] | str,
    precision: str,
    profile: Mapping[str, tuple[Shape, Shape, Shape]],
) -> dict[str, Any]:
    """The JSON-able dict a cached plan is keyed by (see :func:`key_digest`)."""
    cc = compute_capability if isinstance(compute_capability, str) else f"{compute_capability[0]}.{compute_capability[1]}"
    return {
        "onnx_sha256": str(onnx_sha256),
        "tensorrt": str(tensorrt_version),
        "gpu": str(gpu_name),
        "compute_capability": cc,
        "precision": str(precision),
        "profile": {k: [list(s) for s in v] for k, v in sorted(profile.items())},
    }


def key_digest(key: Mapping[str, Any]) -> str:
    """sha256 of the key's canonical JSON (sorted keys, no spaces): the plan's file name."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _atomic_write(path: str, data: bytes) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_plan(cache_dir: str, key: Mapping[str, Any], plan: bytes, sidecar: Mapping[str, Any]) -> str:
    """Store ``plan`` as ``<digest>.plan`` with ``<digest>.json`` atomically; returns the plan path.

    The sidecar holds ``format``, ``key`` and ``key_digest`` plus whatever ``sidecar`` adds. It is
    written after the plan, so its presence means the plan is complete.
    """
    os.makedirs(cache_dir, exist_ok=True)
    digest = key_digest(key)
    plan_path = os.path.join(cache_dir, digest + ".plan")
    meta = {**dict(sidecar), "format": SIDECAR_FORMAT, "key": dict(key), "key_digest": digest}
    _atomic_write(plan_path, bytes(plan))
    _atomic_write(os.path.join(cache_dir, digest + ".json"), json.dumps(meta, indent=2, sort_keys=True).encode())
    return plan_path


def find_plan(cache_dir: str, key: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(plan path, sidecar)`` of a cached plan for exactly ``key``, else None."""
    digest = key_digest(key)
    plan_path = os.path.join(cache_dir, digest + ".plan")
    try:
        with open(os.path.join(cache_dir, digest + ".json"), encoding="utf-8") as fh:
            sidecar = json.load(fh)
    except (OSError, ValueError):
        return None
    if sidecar.get("format") != SIDECAR_FORMAT or sidecar.get("key") != json.loads(json.dumps(dict(key))):
        return None
    if not os.path.isfile(plan_path):
        return None
    return plan_path, sidecar


def split_ultralytics_engine(data: bytes) -> tuple[dict[str, Any] | None, bytes]:
    """Ultralytics' ``.engine`` files start with a little-endian int32 length and that many bytes
    of JSON metadata, then the plan. Returns ``(metadata or None, plan bytes)``."""
    if len(data) > 4:
        (n,) = struct.unpack("<i", data[:4])
        if 2 <= n <= min(len(data) - 4, 1 << 20) and data[4:5] == b"{":
            try:
                meta = json.loads(data[4 : 4 + n].decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                meta = None
            if isinstance(meta, dict):
                return meta, data[4 + n :]
    return None, data


def _as_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    """JSON metadata (values of any type) as ONNX-style strings ``parse_metadata`` understands."""
    out: dict[str, str] = {}
    for k, v in meta.items():
        if isinstance(v, dict):
            v = {int(a) if str(a).isdigit() else a: b for a, b in v.items()}
        out[str(k)] = v if isinstance(v, str) else repr(v)
    return out


@dataclass(frozen=True)
class Binding:
    """One I/O tensor of a TensorRT engine: shape has None for dynamic dims; ``profile`` is
    ``(min, opt, max)`` of profile 0 for inputs, None for outputs."""

    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int | None, ...]
    profile: tuple[Shape, Shape, Shape] | None


def binding_layout(engine: Any, trt: Any) -> tuple[list[Binding], list[Binding]]:
    """Inputs and outputs of a deserialised engine, through TensorRT 10's named-tensor API
    (``num_io_tensors``, ``get_tensor_name/mode/shape/dtype``, ``get_tensor_profile_shape``)."""
    inputs: list[Binding] = []
    outputs: list[Binding] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(None if int(d) < 0 else int(d) for d in engine.get_tensor_shape(name))
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        profile = None
        if is_input:
            mn, op, mx = engine.get_tensor_profile_shape(name, 0)
            profile = (tuple(int(d) for d in mn), tuple(int(d) for d in op), tuple(int(d) for d in mx))
        (inputs if is_input else outputs).append(Binding(name, is_input, dtype, shape, profile))
    return inputs, outputs


def _check_feed(b: Binding, arr: Any) -> None:
    shape = getattr(arr, "shape", None)
    if getattr(arr, "dtype", None) != b.dtype or shape is None or len(shape) != len(b.shape):
        raise InvalidInputError(
            f"tensorrt rejected input {b.name!r}: expected {b.dtype} with shape {list(b.shape)}, "
            f"got {getattr(arr, 'dtype', type(arr).__name__)} with shape {shape}"
        )
    if b.profile is not None:
        mn, _, mx = b.profile
        if not all(lo <= d <= hi for lo, d, hi in zip(mn, shape, mx)):
            raise InvalidInputError(
                f"tensorrt input {b.name!r} shape {list(shape)} is outside the engine's profile "
                f"{list(mn)}..{list(mx)}; rebuild with larger engine_options max_batch/imgsz (or profile=)"
            )


# ---------------------------------------------------------------------------------------------
# The engine (needs TensorRT, pycuda and a GPU)
# ---------------------------------------------------------------------------------------------


def _import_runtime() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineUnavailableError(f"tensorrt not installed: {_EXTRA}") from exc
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise EngineUnavailableError(f"pycuda not installed (tensorrt needs it here): {_EXTRA}") from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise EngineUnavailableError(f"tensorrt {trt.__version__} is too old, modelserve needs 10+: {_EXTRA}")
    return trt, cuda


_init_lock = threading.Lock()


def _cuda_init(cuda: Any) -> None:
    with _init_lock:
        try:
            cuda.init()
        except Exception as exc:  # pycuda raises cuda.Error / RuntimeError
            raise EngineUnavailableError(f"CUDA is not usable here (no NVIDIA driver or GPU?): {exc}") from exc


class _Worker:
    """One execution context with its stream and growable pinned-host/device buffers."""

    def __init__(self, engine: Any, cuda: Any) -> None:
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineUnavailableError("tensorrt could not create an execution context (out of GPU memory?)")
        self.stream = cuda.Stream()
        self.buffers: dict[str, tuple[np.ndarray, Any]] = {}
        self._cuda = cuda

    def buffer(self, name: str, dtype: np.dtype, count: int) -> tuple[np.ndarray, Any]:
        host, dev = self.buffers.get(name, (None, None))
        if host is None or host.size < count:
            count = max(count, 1)
            host = self._cuda.pagelocked_empty(count, dtype)
            dev = self._cuda.mem_alloc(host.nbytes)
            self.buffers[name] = (host, dev)
        return host, dev

    def release(self) -> None:
        for _, dev in self.buffers.values():
            dev.free()
        self.buffers.clear()
        self.context = None
        self.stream = None


class TensorRTEngine(Engine):
    """Runs a TensorRT plan (built from ONNX, or prebuilt) on one NVIDIA GPU."""

    name = "tensorrt"
    option_names = frozenset(_KNOWN)

    def __init__(self, path: str, *, device: str = "cuda", **options: Any) -> None:
        unknown = set(options) - _KNOWN
        if unknown:
            raise InvalidInputError(f"unknown tensorrt options {sorted(unknown)}; known: {sorted(_KNOWN)}")
        index = parse_device(device)
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path}")
        trt, cuda = _import_runtime()
        _cuda_init(cuda)
        count = cuda.Device.count()
        if index >= count:
            raise EngineUnavailableError(f"device {device!r} does not exist: this machine has {count} CUDA device(s)")
        self._trt, self._cuda = trt, cuda
        self.device = f"cuda:{index}"
        self.path = path
        dev = cuda.Device(index)
        self.gpu_name = dev.name()
        self.compute_capability = tuple(dev.compute_capability())
        self._ctx = dev.retain_primary_context()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.plan_path: str | None = None
        self._ctx.push()
        try:
            if path.lower().endswith(".onnx"):
                plan, self.metadata = self._plan_from_onnx(path, options)
            else:
                plan, self.metadata = self._read_prebuilt(path)
            runtime = trt.Runtime(self._logger)
            self._engine = runtime.deserialize_cuda_engine(plan)
            if self._engine is None:
                raise ModelLoadError(
                    f"tensorrt {trt.__version__} cannot deserialise {path!r} on {self.gpu_name}: plans only load with the "
                    "TensorRT version and GPU model they were built for"
                )
            self._runtime = runtime
            ins, outs = binding_layout(self._engine, trt)
        finally:
            cuda.Context.pop()
        self._in, self._out = ins, outs
        self.inputs = tuple(TensorSpec(b.name, b.shape, b.dtype) for b in ins)
        self.outputs = tuple(TensorSpec(b.name, b.shape, b.dtype) for b in outs)
        size = _positive_int(options.get("num_contexts", 2), "num_contexts")
        self._pool: SlotPool[_Worker] | None = SlotPool(self._new_worker, size, "tensorrt")

    # -- building ---------------------------------------------------------------------------
    def _plan_from_onnx(self, path: str, options: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        trt = self._trt
        info = read_onnx_info(path)
        metadata = dict(info.metadata)
        if options.get("profile") is not None:
            profile = _check_profile(options["profile"], info.inputs)
        else:
            from .._metadata import parse_metadata

            parsed = parse_metadata(metadata)
            profile = profile_shapes(
                info.inputs,
                imgsz=options.get("imgsz") or parsed.imgsz or 640,
                stride=parsed.stride,
                max_batch=options.get("max_batch", 8),
                opt_batch=options.get("opt_batch", 1),
                min_imgsz=options.get("min_imgsz"),
            )
        fp16 = options.get("fp16", False)
        if not isinstance(fp16, bool):
            raise InvalidInputError(f"fp16 must be a bool, got {fp16!r}")
        key = cache_key(
            onnx_sha256=sha256_file(path),
            tensorrt_version=trt.__version__,
            gpu_name=self.gpu_name,
            compute_capability=self.compute_capability,
            precision="fp16" if fp16 else "fp32",
            profile=profile,
        )
        cache_dir = options.get("cache_dir")
        cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
        if cache_dir is not None:
            hit = find_plan(cache_dir, key)
            if hit is not None:
                self.plan_path = hit[0]
                with open(hit[0], "rb") as fh:
                    return fh.read(), dict(hit[1].get("metadata") or metadata)
        plan = self._build(path, profile, fp16, options.get("workspace"), cache_dir)
        if cache_dir is not None:
            sidecar = {
                "source": os.path.basename(path),
                "metadata": metadata,
                "inputs": [{"name": t.name, "dims": list(t.dims), "dtype": str(t.dtype)} for t in info.inputs],
                "outputs": [{"name": t.name, "dims": list(t.dims), "dtype": str(t.dtype)} for t in info.outputs],
            }
            self.plan_path = write_plan(cache_dir, key, plan, sidecar)
        return plan, metadata

    def _build(
        self, path: str, profile: Mapping[str, tuple[Shape, Shape, Shape]], fp16: bool, workspace: Any, cache_dir: str | None
    ) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(path):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelLoadError(f"tensorrt cannot parse {path!r}: {errors}")
        config = builder.create_builder_config()
        if workspace is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, _positive_int(workspace, "workspace"))
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        opt = builder.create_optimization_profile()
        for name, (mn, op, mx) in profile.items():
            opt.set_shape(name, mn, op, mx)
        config.add_optimization_profile(opt)
        timing_path = None
        if cache_dir is not None:
            cc = ".".join(str(v) for v in self.compute_capability)
            safe_gpu = "".join(c if c.isalnum() else "-" for c in self.gpu_name)
            timing_path = os.path.join(cache_dir, f"timing-{trt.__version__}-{safe_gpu}-{cc}.cache")
        blob = b""
        if timing_path and os.path.isfile(timing_path):
            with open(timing_path, "rb") as fh:
                blob = fh.read()
        timing = config.create_timing_cache(blob)
        config.set_timing_cache(timing, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelLoadError(f"tensorrt could not build an engine for {path!r} (see TensorRT's log above)")
        if timing_path:
            _atomic_write(timing_path, bytes(config.get_timing_cache().serialize()))
        return bytes(serialized)

    @staticmethod
    def _read_prebuilt(path: str) -> tuple[bytes, dict[str, str]]:
        with open(path, "rb") as fh:
            data = fh.read()
        header, plan = split_ultralytics_engine(data)
        sidecar_path = os.path.splitext(path)[0] + ".json"
        metadata: dict[str, str] = {}
        if os.path.isfile(sidecar_path):
            try:
                with open(sidecar_path, encoding="utf-8") as fh:
                    side = json.load(fh)
            except ValueError as exc:
                raise ModelLoadError(f"sidecar {sidecar_path} is not valid JSON: {exc}") from exc
            metadata = dict(side.get("metadata") or {})
        elif header is not None:
            metadata = _as_metadata(header)
        return plan, metadata

    # -- running ----------------------------------------------------------------------------
    def _new_worker(self) -> _Worker:
        self._ctx.push()
        try:
            return _Worker(self._engine, self._cuda)
        finally:
            self._cuda.Context.pop()

    def run(self, feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        pool = self._pool
        if pool is None:
            raise ModelserveError("this tensorrt engine is closed")
        if set(feeds) != {b.name for b in self._in}:
            raise InvalidInputError(f"tensorrt expects inputs {sorted(b.name for b in self._in)}, got {sorted(feeds)}")
        for b in self._in:
            _check_feed(b, feeds[b.name])
        cuda = self._cuda
        with pool.slot() as w:
            self._ctx.push()
            try:
                ctx, stream = w.context, w.stream
                for b in self._in:
                    arr = np.ascontiguousarray(feeds[b.name])
                    if not ctx.set_input_shape(b.name, arr.shape):
                        raise InvalidInputError(f"tensorrt refused shape {list(arr.shape)} for input {b.name!r}")
                    host, dev = w.buffer(b.name, b.dtype, arr.size)
                    np.copyto(host[: arr.size], arr.reshape(-1))
                    cuda.memcpy_htod_async(dev, host[: arr.size], stream)
                    ctx.set_tensor_address(b.name, int(dev))
                shapes = []
                for b in self._out:
                    shape = tuple(int(d) for d in ctx.get_tensor_shape(b.name))
                    host, dev = w.buffer(b.name, b.dtype, int(np.prod(shape)))
                    ctx.set_tensor_address(b.name, int(dev))
                    shapes.append(shape)
                if not ctx.execute_async_v3(stream.handle):
                    raise ModelserveError("tensorrt execute_async_v3 failed (see TensorRT's log)")
                for b, shape in zip(self._out, shapes):
                    host, dev = w.buffers[b.name]
                    cuda.memcpy_dtoh_async(host[: int(np.prod(shape))], dev, stream)
                stream.synchronize()
                return [w.buffers[b.name][0][: int(np.prod(s))].reshape(s).copy() for b, s in zip(self._out, shapes)]
            finally:
                cuda.Context.pop()

    def close(self) -> None:
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is None:
            return
        workers = pool.close()
        self._ctx.push()
        try:
            for w in workers:
                w.release()
            self._engine = None
            self._runtime = None
        finally:
            self._cuda.Context.pop()
        self._ctx.detach()

    # -- introspection ----------------------------------------------------------------------
    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            trt, _ = _import_runtime()
        except EngineUnavailableError as exc:
            return False, str(exc)
        return True, str(trt.__version__)

    @classmethod
    def uses_cache_dir(cls, device: str) -> bool:
        """Built plans (and the timing cache) are kept in ``cache_dir``."""
        return True

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        """``("cuda", "cuda:1", ...)`` for each GPU the CUDA driver sees; ``()`` without one."""
        try:
            _, cuda = _import_runtime()
            _cuda_init(cuda)
            count = cuda.Device.count()
        except Exception:  # noqa: BLE001 - no runtime, driver or GPU: no devices
            return ()
        return tuple("cuda" if i == 0 else f"cuda:{i}" for i in range(count))
