"""TensorRT engine adapter (``pip install modelserve[tensorrt]``: TensorRT 10+ and pycuda).

Loads an ``.onnx`` file, building a TensorRT plan for it, or a prebuilt ``.engine``/``.plan``.

``device``: ``"cuda"`` or ``"cuda:N"``. No GPU, no TensorRT or no pycuda raises
:class:`EngineUnavailableError`; nothing falls back.

Building from ONNX: the optimisation profile covers what the Predictor sends. For a detector
input ``[batch, 3, height, width]`` with dynamic dimensions that is batch ``1..max_batch``
(optimum ``opt_batch``) and height/width ``min_imgsz..imgsz`` in each axis (optimum ``imgsz``),
because the Predictor letterboxes dynamic models to at most ``imgsz`` (rounded up to the stride)
and at least one stride. Static dimensions stay as the model declares them. TensorRT lets
execution contexts that run at once share no optimisation profile when inputs are dynamic, so
the plan holds ``num_contexts`` identical copies of it, one per context.

Batch limit: :attr:`TensorRTEngine.max_batch_size` is the largest batch ``run`` accepts (the
profile's, or a static batch dimension; None when there is no limit). Callers split bigger
batches; the Predictor does.

Precision: FP32 is strict FP32: TensorRT's default TF32 kernels are turned off. ``fp16=True``
allows FP16 kernels (and TF32 for layers left in FP32); results then differ slightly.

With ``cache_dir`` the plan is kept as ``<key digest>.plan`` plus ``<key digest>.json`` (the
sidecar: the cache key, the ONNX metadata, the tensors and the profile). The key is the ONNX
file's sha256, the TensorRT version, the GPU's name and compute capability, the precision (and
the builder flags behind it), the profile and the number of its copies, so a plan is reused only
where it is valid. Both files are written to a temporary name and moved into place
(``os.replace``), sidecar last, so a reader never sees half a plan. A cached plan that no longer
deserialises is rebuilt and overwritten the same way. The builder's timing cache lives beside
them (``timing-<TensorRT>-<GPU>-<cc>.cache``); one that TensorRT cannot use is replaced by a
fresh one. A plan is a plain TensorRT plan: no custom header.

Prebuilt ``.engine``/``.plan`` files: metadata comes from a sidecar ``<file stem>.json`` when
present, or from the JSON header Ultralytics' TensorRT export writes in front of its plans. Such a
plan with dynamic inputs gets at most as many execution contexts as it has profiles identical to
its profile 0.

Outputs whose shape TensorRT knows only after running (data-dependent shapes, e.g. in-graph NMS)
are not supported: loading such a model raises :class:`ModelLoadError`.

Options:

* ``fp16`` (bool, default False): allow FP16 kernels
* ``max_batch`` (default 32), ``opt_batch`` (default ``min(8, max_batch)``): the profile's batch
  range (``max_batch`` is also taken as a hint from callers that know their batch size)
* ``imgsz`` (int or (h, w); default the model's metadata imgsz, else 640): largest input size;
  ``min_imgsz`` (default the stride, 32): smallest
* ``profile``: ``{input name: (min shape, opt shape, max shape)}`` for models that are not plain
  detectors; replaces the computed profile
* ``cache_dir``: where built plans are cached (None: build in memory on every load)
* ``workspace`` (bytes): the builder's workspace memory pool limit
* ``num_contexts`` (default 2): execution contexts, i.e. runs in flight at once; each has its own
  optimisation profile, CUDA stream and pinned host buffers

Threads: the adapter retains the device's primary CUDA context and pushes it around every call,
so ``run`` works from any thread (batcher threads, web-server pools) without the caller knowing
about CUDA. Each run takes an idle execution context (or waits for one), sets the input shapes,
copies into pinned host buffers, enqueues ``execute_async_v3`` on that context's stream and
synchronises only that stream. ``close()`` refuses new runs, waits up to :attr:`close_timeout`
seconds for runs in flight, and never frees memory a run may still be using: what is still busy
then is freed (and the CUDA context released) when its run finishes.

>>> eng = TensorRTEngine("yolov8n.onnx", device="cuda", cache_dir="trt-cache", fp16=True)  # doctest: +SKIP
>>> eng.max_batch_size  # doctest: +SKIP
32
"""

from __future__ import annotations

import hashlib
import json
import logging
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
    "identical_profiles",
    "max_batch_of",
    "unresolved_outputs",
    "builder_precision",
    "write_plan",
    "find_plan",
    "split_ultralytics_engine",
]

SIDECAR_FORMAT = "modelserve-tensorrt-plan/1"
_KNOWN = {"fp16", "max_batch", "opt_batch", "imgsz", "min_imgsz", "profile", "cache_dir", "workspace", "num_contexts"}
_EXTRA = "pip install modelserve[tensorrt]"
DEFAULT_MAX_BATCH = 32  # the micro-batcher's default max_batch_size
DEFAULT_OPT_BATCH = 8
DEFAULT_NUM_CONTEXTS = 2

_log = logging.getLogger("modelserve.tensorrt")

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
    max_batch: int = DEFAULT_MAX_BATCH,
    opt_batch: int | None = None,
    min_imgsz: int | Sequence[int] | None = None,
) -> dict[str, tuple[Shape, Shape, Shape]]:
    """The optimisation profile ``{input: (min, opt, max)}`` covering what the Predictor sends.

    A 4-D ``[batch, channels, height, width]`` input: a dynamic batch spans ``1..max_batch``
    (optimum ``opt_batch``, default ``min(8, max_batch)``); a dynamic height/width spans
    ``min_imgsz..imgsz`` rounded up to the stride (optimum ``imgsz``). Static dimensions keep their
    value. Any other dynamic dimension cannot be guessed and raises :class:`InvalidInputError`
    asking for ``profile=``.

    >>> t = OnnxTensor("images", np.dtype("float32"), ("batch", 3, "height", "width"))
    >>> profile_shapes([t], imgsz=320)["images"]
    ((1, 3, 32, 32), (8, 3, 320, 320), (32, 3, 320, 320))
    >>> profile_shapes([t], imgsz=320, max_batch=4)["images"]
    ((1, 3, 32, 32), (4, 3, 320, 320), (4, 3, 320, 320))
    """
    max_batch = _positive_int(max_batch, "max_batch")
    opt_batch = min(DEFAULT_OPT_BATCH, max_batch) if opt_batch is None else _positive_int(opt_batch, "opt_batch")
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
    builder_flags: Sequence[str],
    profile: Mapping[str, tuple[Shape, Shape, Shape]],
    num_profiles: int,
) -> dict[str, Any]:
    """The JSON-able dict a cached plan is keyed by (see :func:`key_digest`).

    ``precision`` and ``builder_flags`` as :func:`builder_precision` gives them; ``profile`` the
    optimisation profile, of which the plan holds ``num_profiles`` identical copies.
    """
    cc = compute_capability if isinstance(compute_capability, str) else f"{compute_capability[0]}.{compute_capability[1]}"
    return {
        "onnx_sha256": str(onnx_sha256),
        "tensorrt": str(tensorrt_version),
        "gpu": str(gpu_name),
        "compute_capability": cc,
        "precision": str(precision),
        "builder_flags": sorted(str(f) for f in builder_flags),
        "profile": {k: [list(s) for s in v] for k, v in sorted(profile.items())},
        "num_profiles": _positive_int(num_profiles, "num_profiles"),
    }


def builder_precision(fp16: bool) -> tuple[str, tuple[str, ...]]:
    """``(precision, builder flags enabled)``: FP32 is strict (TensorRT's default ``TF32`` flag is
    cleared); FP16 enables ``FP16`` and keeps ``TF32`` for the layers that stay in FP32.

    >>> builder_precision(False), builder_precision(True)
    (('fp32', ()), ('fp16', ('FP16', 'TF32')))
    """
    return ("fp16", ("FP16", "TF32")) if fp16 else ("fp32", ())


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
    sidecar_path = os.path.join(cache_dir, digest + ".json")
    if not os.path.isfile(sidecar_path):  # absent, or a FIFO or device that must not be opened
        return None
    try:
        with open(sidecar_path, encoding="utf-8") as fh:
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
    ``(min, opt, max)`` of the optimisation profile it was read from for inputs (the shape three
    times for a static input), None for outputs."""

    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int | None, ...]
    profile: tuple[Shape, Shape, Shape] | None


def _profile_of(engine: Any, name: str, index: int) -> tuple[Shape, Shape, Shape]:
    mn, op, mx = engine.get_tensor_profile_shape(name, index)
    return tuple(int(d) for d in mn), tuple(int(d) for d in op), tuple(int(d) for d in mx)


def binding_layout(engine: Any, trt: Any, profile_index: int = 0) -> tuple[list[Binding], list[Binding]]:
    """Inputs and outputs of a deserialised engine, through TensorRT 10's named-tensor API
    (``num_io_tensors``, ``get_tensor_name/mode/shape/dtype``, ``get_tensor_profile_shape``);
    dynamic inputs carry the shapes of optimisation profile ``profile_index``."""
    inputs: list[Binding] = []
    outputs: list[Binding] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(None if int(d) < 0 else int(d) for d in engine.get_tensor_shape(name))
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        profile = None
        if is_input:
            if any(d is None for d in shape):
                profile = _profile_of(engine, name, profile_index)
            else:
                fixed = tuple(int(d) for d in shape if d is not None)
                profile = (fixed, fixed, fixed)
        (inputs if is_input else outputs).append(Binding(name, is_input, dtype, shape, profile))
    return inputs, outputs


def identical_profiles(engine: Any, inputs: Sequence[Binding]) -> list[int] | None:
    """Indices of the engine's optimisation profiles that equal profile 0 for every dynamic input:
    the profiles concurrently running contexts can take, one each, and accept the same shapes.
    None when no input is dynamic (then contexts may all share profile 0).

    TensorRT requires, for dynamic shapes, that every execution context in concurrent use has an
    optimisation profile of its own.
    """
    names = [b.name for b in inputs if any(d is None for d in b.shape)]
    if not names:
        return None
    first = {n: _profile_of(engine, n, 0) for n in names}
    count = int(engine.num_optimization_profiles)
    return [p for p in range(count) if all(_profile_of(engine, n, p) == first[n] for n in names)]


def max_batch_of(inputs: Sequence[Binding]) -> int | None:
    """The largest batch (axis 0) every input accepts: its profile's maximum (a static dimension's
    value). None for an engine without inputs or with only scalar inputs.

    >>> b = Binding("images", True, np.dtype("float32"), (None, 3, None, None), ((1, 3, 32, 32), (8, 3, 320, 320), (32, 3, 320, 320)))
    >>> max_batch_of([b])
    32
    """
    limits = [b.profile[2][0] for b in inputs if b.profile is not None and len(b.profile[2]) > 0]
    return min(limits) if limits else None


def unresolved_outputs(context: Any, inputs: Sequence[Binding], outputs: Sequence[Binding]) -> list[str]:
    """Outputs whose shape stays unknown (a ``-1``) once every input shape is set (to its profile's
    optimum): data-dependent shapes, which TensorRT only knows after running and which this adapter
    cannot size buffers for."""
    for b in inputs:
        opt = b.profile[1] if b.profile is not None else tuple(d or 1 for d in b.shape)
        if not context.set_input_shape(b.name, opt):
            raise ModelLoadError(f"tensorrt refused its own profile shape {list(opt)} for input {b.name!r}")
    return [b.name for b in outputs if any(int(d) < 0 for d in context.get_tensor_shape(b.name))]


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
_logger: Any = None


def _trt_logger(trt: Any) -> Any:
    """The process's one TensorRT logger: TensorRT keeps the first logger it is given for the
    whole process, so every builder, parser and runtime here gets this same one."""
    global _logger
    with _init_lock:
        if _logger is None:
            _logger = trt.Logger(trt.Logger.WARNING)
        return _logger


def _cuda_init(cuda: Any) -> None:
    with _init_lock:
        try:
            cuda.init()
        except Exception as exc:  # pycuda raises cuda.Error / RuntimeError
            raise EngineUnavailableError(f"CUDA is not usable here (no NVIDIA driver or GPU?): {exc}") from exc


def _detach(ctx: Any) -> None:
    """Release a retained (primary) context from any thread.

    pycuda's ``Context.detach`` acts only when the context is current on the calling thread, or
    the caller is the thread that retained it; anywhere else it silently does nothing (a leaked
    retain). Pushed first, it always acts, and it takes that push off pycuda's context stack
    itself, so no ``pop`` follows.
    """
    try:
        ctx.push()
    except Exception:  # noqa: BLE001 - detach below still acts on the retaining thread
        _log.debug("could not push the CUDA context before detaching it", exc_info=True)
    ctx.detach()


def _attach_timing_cache(config: Any, blob: bytes, where: str | None) -> bool:
    """Give the builder config a timing cache: the stored one (``blob``) when TensorRT accepts it,
    else an empty one. Returns whether a cache is attached, i.e. whether saving it afterwards makes
    sense. A corrupt or mismatched stored cache (``create_timing_cache`` failing or returning
    None, ``set_timing_cache`` returning False) is logged and replaced by the fresh one."""

    def attach(data: bytes) -> bool:
        try:
            cache = config.create_timing_cache(data)
            return cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=False))
        except Exception:  # noqa: BLE001 - TensorRT raises assorted errors for bad caches
            _log.debug("tensorrt rejected a timing cache", exc_info=True)
            return False

    if blob:
        if attach(blob):
            return True
        _log.warning("tensorrt timing cache %s is unusable (corrupt, or from another TensorRT or GPU); "
                     "building with an empty one, which replaces it", where)
    if attach(b""):
        return True
    _log.warning("tensorrt could not create a timing cache; building without one (none is saved)")
    return False


def _save_timing_cache(config: Any, path: str) -> bool:
    """Store the builder's timing cache at ``path`` (atomically); a failure is logged, not raised."""
    try:
        cache = config.get_timing_cache()
        data = bytes(cache.serialize()) if cache is not None else b""
    except Exception:  # noqa: BLE001
        _log.warning("tensorrt could not serialise its timing cache; not saving it", exc_info=True)
        return False
    if not data:
        _log.warning("tensorrt returned an empty timing cache; not saving it")
        return False
    try:
        _atomic_write(path, data)
    except OSError as exc:
        _log.warning("could not write the tensorrt timing cache %s: %s", path, exc)
        return False
    return True


def _deserialize(runtime: Any, plan: bytes) -> Any:
    """The engine, or None when TensorRT cannot deserialise ``plan`` (it logs why)."""
    try:
        return runtime.deserialize_cuda_engine(plan)
    except Exception:  # noqa: BLE001 - some TensorRT versions raise instead of returning None
        _log.debug("tensorrt deserialize_cuda_engine raised", exc_info=True)
        return None


@dataclass(frozen=True)
class _OnnxBuild:
    """Everything that decides the plan built from one ONNX file."""

    path: str
    metadata: dict[str, str]
    sidecar: dict[str, Any]
    profile: dict[str, tuple[Shape, Shape, Shape]]
    num_profiles: int
    fp16: bool
    flags: tuple[str, ...]
    key: dict[str, Any]
    workspace: Any
    cache_dir: str | None


class _Worker:
    """One execution context, on its own optimisation profile, with its stream and growable
    pinned-host/device buffers. Created and released with the engine's CUDA context pushed."""

    def __init__(self, engine: Any, cuda: Any, profile_index: int | None) -> None:
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineUnavailableError("tensorrt could not create an execution context (out of GPU memory?)")
        self.buffers: dict[str, tuple[np.ndarray, Any]] = {}
        self._cuda = cuda
        self.stream = cuda.Stream()
        self.profile_index = profile_index
        # before any set_input_shape; enqueued on this worker's stream, so ordered before its runs
        if profile_index is not None and not self.context.set_optimization_profile_async(profile_index, self.stream.handle):
            self.release()
            raise EngineUnavailableError(f"tensorrt could not select optimisation profile {profile_index}")

    def buffer(self, name: str, dtype: np.dtype, count: int) -> tuple[np.ndarray, Any]:
        host, dev = self.buffers.get(name, (None, None))
        if host is None or host.size < count:
            if dev is not None:
                self.stream.synchronize()  # a failed run may have left copies from it queued
                dev.free()
            count = max(count, 1)
            host = self._cuda.pagelocked_empty(count, dtype)
            dev = self._cuda.mem_alloc(host.nbytes)
            self.buffers[name] = (host, dev)
        return host, dev

    def release(self) -> None:
        if self.stream is not None and self.buffers:
            self.stream.synchronize()  # nothing queued may still touch the buffers
        for _, dev in self.buffers.values():
            dev.free()
        self.buffers.clear()
        self.context = None
        self.stream = None


class TensorRTEngine(Engine):
    """Runs a TensorRT plan (built from ONNX, or prebuilt) on one NVIDIA GPU.

    ``max_batch_size``: the largest batch ``run`` accepts (None: no limit); split bigger batches.
    """

    name = "tensorrt"
    option_names = frozenset(_KNOWN)

    #: Seconds ``close()`` waits for runs in flight before leaving their memory to be freed when
    #: they finish.
    close_timeout: float = 30.0

    def __init__(self, path: str, *, device: str = "cuda", **options: Any) -> None:
        unknown = set(options) - _KNOWN
        if unknown:
            raise InvalidInputError(f"unknown tensorrt options {sorted(unknown)}; known: {sorted(_KNOWN)}")
        index = parse_device(device)
        requested = options.get("num_contexts")
        size = _positive_int(requested if requested is not None else DEFAULT_NUM_CONTEXTS, "num_contexts")
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
        self.plan_path: str | None = None
        self.max_batch_size: int | None = None
        self._pool: SlotPool[_Worker] | None = None
        self._engine: Any = None
        self._runtime: Any = None
        self._close_lock = threading.Lock()
        self._finalized = False
        self._profile_lock = threading.Lock()
        self._free_profiles: list[int | None] = []
        dev = cuda.Device(index)
        self.gpu_name = dev.name()
        self.compute_capability = tuple(dev.compute_capability())
        self._logger = _trt_logger(trt)
        self._ctx = dev.retain_primary_context()
        try:
            self._ctx.push()
            try:
                try:
                    first = self._load(path, options, size, requested is not None)
                except BaseException:
                    self._engine = self._runtime = None  # freed while the context is current
                    raise
            finally:
                cuda.Context.pop()
        except BaseException:
            ctx, self._ctx = self._ctx, None
            try:
                _detach(ctx)
            except Exception:  # noqa: BLE001 - never hide the load error behind a cleanup error
                _log.debug("detaching the CUDA context after a failed load failed", exc_info=True)
            raise
        self._pool = SlotPool(self._new_worker, len(self._free_profiles) + 1, "tensorrt", initial=[first])

    # -- loading ----------------------------------------------------------------------------
    def _load(self, path: str, options: Mapping[str, Any], size: int, explicit_size: bool) -> _Worker:
        """Deserialise (building or rebuilding as needed), lay out the tensors and create the first
        worker; runs with the CUDA context pushed."""
        trt = self._trt
        runtime = trt.Runtime(self._logger)
        if path.lower().endswith(".onnx"):
            spec = self._onnx_build(path, options, size)
            plan, self.metadata = self._cached_plan(spec)
            engine = _deserialize(runtime, plan) if plan is not None else None
            if engine is None:
                if plan is not None:
                    _log.warning("cached tensorrt plan %s does not deserialise; rebuilding it", self.plan_path)
                plan, self.metadata = self._build_and_store(spec), spec.metadata
                engine = _deserialize(runtime, plan)
        else:
            plan, self.metadata = self._read_prebuilt(path)
            engine = _deserialize(runtime, plan)
        if engine is None:
            raise ModelLoadError(
                f"tensorrt {trt.__version__} cannot deserialise {path!r} on {self.gpu_name}: plans only load with the "
                "TensorRT version and GPU model they were built for"
            )
        self._engine, self._runtime = engine, runtime
        ins, outs = binding_layout(engine, trt)
        self._in, self._out = ins, outs
        self.inputs = tuple(TensorSpec(b.name, b.shape, b.dtype) for b in ins)
        self.outputs = tuple(TensorSpec(b.name, b.shape, b.dtype) for b in outs)
        self.max_batch_size = max_batch_of(ins)
        usable = identical_profiles(engine, ins)
        if usable is None:  # static shapes: contexts share profile 0
            profiles: list[int | None] = [None] * size
        else:
            if explicit_size and size > len(usable):
                raise InvalidInputError(
                    f"{path!r} has {len(usable)} optimisation profile(s) that concurrent execution contexts can use, "
                    f"so num_contexts must be at most {len(usable)}, got {size}"
                )
            profiles = list(usable[:size])
        first = _Worker(engine, self._cuda, profiles[0])
        try:
            unknown = unresolved_outputs(first.context, ins, outs)
            if unknown:
                raise ModelLoadError(
                    f"tensorrt outputs {unknown} of {path!r} have data-dependent shapes (known only after running, e.g. "
                    "NMS inside the model), which modelserve's tensorrt engine does not support; export the model "
                    "without in-graph NMS, or use engine='onnxruntime'"
                )
        except BaseException:
            first.release()
            raise
        self._free_profiles = profiles[:0:-1]  # popped from the end: profile 1, 2, ...
        return first

    def _onnx_build(self, path: str, options: Mapping[str, Any], num_contexts: int) -> _OnnxBuild:
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
                max_batch=options["max_batch"] if options.get("max_batch") is not None else DEFAULT_MAX_BATCH,
                opt_batch=options.get("opt_batch"),
                min_imgsz=options.get("min_imgsz"),
            )
        fp16 = options.get("fp16", False)
        if not isinstance(fp16, bool):
            raise InvalidInputError(f"fp16 must be a bool, got {fp16!r}")
        # dynamic inputs: one profile per execution context; static ones: the contexts share one
        dynamic = any(d is None for t in info.inputs for d in t.shape)
        num_profiles = num_contexts if dynamic else 1
        precision, flags = builder_precision(fp16)
        key = cache_key(
            onnx_sha256=sha256_file(path),
            tensorrt_version=trt.__version__,
            gpu_name=self.gpu_name,
            compute_capability=self.compute_capability,
            precision=precision,
            builder_flags=flags,
            profile=profile,
            num_profiles=num_profiles,
        )
        cache_dir = options.get("cache_dir")
        sidecar = {
            "source": os.path.basename(path),
            "metadata": metadata,
            "inputs": [{"name": t.name, "dims": list(t.dims), "dtype": str(t.dtype)} for t in info.inputs],
            "outputs": [{"name": t.name, "dims": list(t.dims), "dtype": str(t.dtype)} for t in info.outputs],
        }
        return _OnnxBuild(
            path=path, metadata=metadata, sidecar=sidecar, profile=profile, num_profiles=num_profiles, fp16=fp16,
            flags=flags, key=key, workspace=options.get("workspace"),
            cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
        )

    def _cached_plan(self, spec: _OnnxBuild) -> tuple[bytes | None, dict[str, str]]:
        """The cached plan for ``spec`` (and its sidecar's metadata), or ``(None, ONNX metadata)``."""
        if spec.cache_dir is None:
            return None, spec.metadata
        hit = find_plan(spec.cache_dir, spec.key)
        if hit is None:
            return None, spec.metadata
        self.plan_path = hit[0]
        try:
            with open(hit[0], "rb") as fh:
                plan = fh.read()
        except OSError as exc:
            _log.warning("cannot read cached tensorrt plan %s (%s); rebuilding it", hit[0], exc)
            return None, spec.metadata
        return plan, dict(hit[1].get("metadata") or spec.metadata)

    def _build_and_store(self, spec: _OnnxBuild) -> bytes:
        plan = self._build(spec)
        if spec.cache_dir is not None:
            self.plan_path = write_plan(spec.cache_dir, spec.key, plan, spec.sidecar)  # sidecar last
        return plan

    def _build(self, spec: _OnnxBuild) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(spec.path):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelLoadError(f"tensorrt cannot parse {spec.path!r}: {errors}")
        config = builder.create_builder_config()
        if spec.workspace is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, _positive_int(spec.workspace, "workspace"))
        if "TF32" in spec.flags:
            config.set_flag(trt.BuilderFlag.TF32)
        else:
            config.clear_flag(trt.BuilderFlag.TF32)  # on by default in TensorRT: FP32 would not be FP32
        if "FP16" in spec.flags:
            config.set_flag(trt.BuilderFlag.FP16)
        for _ in range(spec.num_profiles):  # one per execution context: contexts in use at once share none
            opt = builder.create_optimization_profile()
            for name, (mn, op, mx) in spec.profile.items():
                opt.set_shape(name, mn, op, mx)
            if config.add_optimization_profile(opt) < 0:
                raise ModelLoadError(f"tensorrt rejected the optimisation profile {spec.profile} for {spec.path!r}")
        timing_path = None
        if spec.cache_dir is not None:
            os.makedirs(spec.cache_dir, exist_ok=True)
            cc = ".".join(str(v) for v in self.compute_capability)
            safe_gpu = "".join(c if c.isalnum() else "-" for c in self.gpu_name)
            timing_path = os.path.join(spec.cache_dir, f"timing-{trt.__version__}-{safe_gpu}-{cc}.cache")
        blob = b""
        if timing_path and os.path.isfile(timing_path):
            try:
                with open(timing_path, "rb") as fh:
                    blob = fh.read()
            except OSError as exc:
                _log.warning("cannot read the tensorrt timing cache %s: %s", timing_path, exc)
        cache_usable = _attach_timing_cache(config, blob, timing_path)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelLoadError(f"tensorrt could not build an engine for {spec.path!r} (see TensorRT's log above)")
        if timing_path and cache_usable:
            _save_timing_cache(config, timing_path)
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
        with self._profile_lock:
            if not self._free_profiles:  # the pool never asks for more than there are
                raise ModelserveError("tensorrt has no free optimisation profile for another execution context")
            profile = self._free_profiles.pop()
        try:
            self._ctx.push()
            try:
                return _Worker(self._engine, self._cuda, profile)
            finally:
                self._cuda.Context.pop()
        except BaseException:
            with self._profile_lock:
                self._free_profiles.append(profile)
            raise

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
                    if any(d < 0 for d in shape):  # checked at load; never size a buffer from a -1
                        raise ModelserveError(f"tensorrt output {b.name!r} has no known shape ({list(shape)}) before running")
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

    # -- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Refuse new runs, wait up to :attr:`close_timeout` seconds for runs in flight, then free
        the contexts and buffers and release the CUDA context. What a run still uses after the
        wait is freed (and the CUDA context released) when that run finishes. Idempotent."""
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is None:
            return
        with self._close_lock:
            idle = pool.close(self.close_timeout, on_late=self._release_late, on_drained=self._finalize)
            self._release_workers(idle)
            pending = pool.pending
            if pending:
                _log.warning(
                    "tensorrt engine closed with %d run(s) still in flight after %.0f s; their GPU memory and the "
                    "CUDA context are released when they finish", pending, self.close_timeout,
                )
            else:
                self._finalize_locked()

    def _release_workers(self, workers: Sequence[_Worker]) -> None:
        if not workers:
            return
        self._ctx.push()
        try:
            for w in workers:
                try:
                    w.release()
                except Exception:  # noqa: BLE001 - free the others regardless
                    _log.warning("freeing a tensorrt execution context failed", exc_info=True)
        finally:
            self._cuda.Context.pop()

    def _release_late(self, worker: _Worker) -> None:
        with self._close_lock:
            self._release_workers([worker])

    def _finalize(self) -> None:
        with self._close_lock:
            self._finalize_locked()

    def _finalize_locked(self) -> None:
        if self._finalized:
            return
        self._finalized = True
        self._ctx.push()
        try:
            self._engine = None
            self._runtime = None
        finally:
            self._cuda.Context.pop()
        _detach(self._ctx)

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
