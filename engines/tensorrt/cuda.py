"""TensorRT and pycuda at run time: the CUDA device index, importing the runtimes, the process's
TensorRT logger, CUDA initialisation and context release, deserialising plans, and the builder's
timing cache.

TensorRT and pycuda are imported only when an engine is created or asked whether it is
available (:func:`import_runtime`), so ``modelserve.engines`` imports on machines without them.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from ..._devices import parse_device
from ..._errors import EngineUnavailableError, InvalidInputError
from ..._files import atomic_write

__all__ = [
    "log", "cuda_index", "import_runtime", "trt_logger", "cuda_init", "detach", "deserialize",
    "timing_cache_path", "read_timing_cache", "attach_timing_cache", "save_timing_cache",
]

_EXTRA = "pip install modelserve[tensorrt]"

log = logging.getLogger("modelserve.tensorrt")

_init_lock = threading.Lock()
_logger: Any = None


def cuda_index(device: str) -> int:
    """The GPU index of ``"cuda"`` (0) or ``"cuda:N"`` (N), case-insensitive; any other device
    raises :class:`InvalidInputError`.

    >>> cuda_index("cuda"), cuda_index("CUDA:3")
    (0, 3)
    """
    family, where = parse_device(device)
    if family != "cuda" or isinstance(where, str):
        raise InvalidInputError(f"device must be 'cuda' or 'cuda:N' for tensorrt, got {device!r}")
    return where or 0


def import_runtime() -> tuple[Any, Any]:
    """``(tensorrt, pycuda.driver)``, or :class:`EngineUnavailableError` naming what to install.

    A directory called ``tensorrt`` on ``sys.path`` (a plan cache beside a script, say) imports as
    an empty namespace package when TensorRT is not installed; it counts as not installed.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineUnavailableError(f"tensorrt not installed: {_EXTRA}") from exc
    if getattr(trt, "__version__", None) is None:
        raise EngineUnavailableError(f"tensorrt not installed: {_EXTRA}")
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise EngineUnavailableError(f"pycuda not installed (tensorrt needs it here): {_EXTRA}") from exc
    major = str(trt.__version__).split(".")[0]
    if not (major.isascii() and major.isdigit()) or int(major) < 10:
        raise EngineUnavailableError(f"tensorrt {trt.__version__} is too old, modelserve needs 10+: {_EXTRA}")
    return trt, cuda


def trt_logger(trt: Any) -> Any:
    """The process's one TensorRT logger: TensorRT keeps the first logger it is given for the
    whole process, so every builder, parser and runtime here gets this same one."""
    global _logger
    with _init_lock:
        if _logger is None:
            _logger = trt.Logger(trt.Logger.WARNING)
        return _logger


def cuda_init(cuda: Any) -> None:
    """``cuda.init()``; a missing driver or GPU raises :class:`EngineUnavailableError`."""
    with _init_lock:
        try:
            cuda.init()
        except Exception as exc:  # pycuda raises cuda.Error / RuntimeError
            raise EngineUnavailableError(f"CUDA is not usable here (no NVIDIA driver or GPU?): {exc}") from exc


def detach(ctx: Any) -> None:
    """Release a retained (primary) context from any thread.

    pycuda's ``Context.detach`` acts only when the context is current on the calling thread, or
    the caller is the thread that retained it; anywhere else it silently does nothing (a leaked
    retain). Pushed first, it always acts, and it takes that push off pycuda's context stack
    itself, so no ``pop`` follows.
    """
    try:
        ctx.push()
    except Exception:  # noqa: BLE001 - detach below still acts on the retaining thread
        log.debug("could not push the CUDA context before detaching it", exc_info=True)
    ctx.detach()


def deserialize(runtime: Any, plan: bytes) -> Any:
    """The engine, or None when TensorRT cannot deserialise ``plan`` (it logs why)."""
    try:
        return runtime.deserialize_cuda_engine(plan)
    except Exception:  # noqa: BLE001 - some TensorRT versions raise instead of returning None
        log.debug("tensorrt deserialize_cuda_engine raised", exc_info=True)
        return None


def timing_cache_path(cache_dir: str, tensorrt_version: str, gpu_name: str, compute_capability: tuple[int, ...]) -> str:
    """``<cache_dir>/timing-<TensorRT>-<GPU>-<cc>.cache`` (the GPU name with every character but
    letters and digits as ``-``): timings are valid for one TensorRT version and GPU model.

    >>> os.path.basename(timing_cache_path("cache", "10.9.0", "NVIDIA L4", (8, 9)))
    'timing-10.9.0-NVIDIA-L4-8.9.cache'
    """
    cc = ".".join(str(v) for v in compute_capability)
    safe_gpu = "".join(c if c.isalnum() else "-" for c in gpu_name)
    return os.path.join(cache_dir, f"timing-{tensorrt_version}-{safe_gpu}-{cc}.cache")


def read_timing_cache(path: str) -> bytes:
    """The stored timing cache at ``path``; ``b""`` when there is none or it cannot be read."""
    if not os.path.isfile(path):  # absent, or a FIFO or device that must not be opened
        return b""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        log.warning("cannot read the tensorrt timing cache %s: %s", path, exc)
        return b""


def attach_timing_cache(config: Any, blob: bytes, where: str | None) -> bool:
    """Give the builder config a timing cache: the stored one (``blob``) when TensorRT accepts it,
    else an empty one. Returns whether a cache is attached, i.e. whether saving it afterwards makes
    sense. A corrupt or mismatched stored cache (``create_timing_cache`` failing or returning
    None, ``set_timing_cache`` returning False) is logged and replaced by the fresh one."""

    def attach(data: bytes) -> bool:
        try:
            cache = config.create_timing_cache(data)
            return cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=False))
        except Exception:  # noqa: BLE001 - TensorRT raises assorted errors for bad caches
            log.debug("tensorrt rejected a timing cache", exc_info=True)
            return False

    if blob:
        if attach(blob):
            return True
        log.warning("tensorrt timing cache %s is unusable (corrupt, or from another TensorRT or GPU); "
                    "building with an empty one, which replaces it", where)
    if attach(b""):
        return True
    log.warning("tensorrt could not create a timing cache; building without one (none is saved)")
    return False


def save_timing_cache(config: Any, path: str) -> bool:
    """Store the builder's timing cache at ``path`` (atomically); a failure is logged, not raised."""
    try:
        cache = config.get_timing_cache()
        data = bytes(cache.serialize()) if cache is not None else b""
    except Exception:  # noqa: BLE001
        log.warning("tensorrt could not serialise its timing cache; not saving it", exc_info=True)
        return False
    if not data:
        log.warning("tensorrt returned an empty timing cache; not saving it")
        return False
    try:
        atomic_write(path, data)
    except OSError as exc:
        log.warning("could not write the tensorrt timing cache %s: %s", path, exc)
        return False
    return True
