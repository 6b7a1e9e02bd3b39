"""The TensorRT engine: one plan on one NVIDIA GPU, run from any thread.

The plan comes from :mod:`.build` (built from ONNX or cached, or prebuilt); the tensors are laid
out by :mod:`.bindings`; TensorRT and pycuda are reached through :mod:`.cuda`. See the package
docstring for the options and the threading contract.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from ..._checks import positive_int
from ..._engine import Engine, TensorSpec
from ..._errors import EngineUnavailableError, InvalidInputError, ModelLoadError, ModelserveError
from .._pool import SlotPool
from .bindings import Binding, binding_layout, check_feed, identical_profiles, max_batch_of, unresolved_outputs
from .build import build_plan, cached_plan, onnx_build, read_prebuilt
from .cuda import cuda_index, cuda_init, deserialize, detach, import_runtime, log, trt_logger
from .plan_cache import write_plan

__all__ = ["TensorRTEngine"]

_OPTIONS = frozenset(
    {"fp16", "max_batch", "opt_batch", "imgsz", "min_imgsz", "profile", "cache_dir", "workspace", "num_contexts"}
)
DEFAULT_NUM_CONTEXTS = 2


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
    option_names = frozenset(_OPTIONS)

    #: Seconds ``close()`` waits for runs in flight before leaving their memory to be freed when
    #: they finish.
    close_timeout: float = 30.0

    def __init__(self, path: str, *, device: str = "cuda", **options: Any) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise InvalidInputError(f"unknown tensorrt options {sorted(unknown)}; known: {sorted(_OPTIONS)}")
        index = cuda_index(device)
        requested = options.get("num_contexts")
        size = positive_int(requested if requested is not None else DEFAULT_NUM_CONTEXTS, "num_contexts")
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path}")
        trt, cuda = import_runtime()
        cuda_init(cuda)
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
        self._logger = trt_logger(trt)
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
                detach(ctx)
            except Exception:  # noqa: BLE001 - never hide the load error behind a cleanup error
                log.debug("detaching the CUDA context after a failed load failed", exc_info=True)
            raise
        self._pool = SlotPool(self._new_worker, len(self._free_profiles) + 1, "tensorrt", initial=[first])

    # -- loading ----------------------------------------------------------------------------
    def _load(self, path: str, options: Mapping[str, Any], size: int, explicit_size: bool) -> _Worker:
        """Deserialise (building or rebuilding as needed), lay out the tensors and create the first
        worker; runs with the CUDA context pushed."""
        trt = self._trt
        runtime = trt.Runtime(self._logger)
        if path.lower().endswith(".onnx"):
            engine = self._onnx_engine(runtime, path, options, size)
        else:
            plan, self.metadata = read_prebuilt(path)
            engine = deserialize(runtime, plan)
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
        profiles = self._context_profiles(engine, ins, path, size, explicit_size)
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

    def _onnx_engine(self, runtime: Any, path: str, options: Mapping[str, Any], size: int) -> Any:
        """The engine for an ONNX file: its cached plan, else (also when the cached plan no longer
        deserialises) a plan built now and stored in the cache; None if even that fails."""
        spec = onnx_build(path, options, size, tensorrt_version=self._trt.__version__, gpu_name=self.gpu_name,
                          compute_capability=self.compute_capability)
        hit = cached_plan(spec)
        if hit is not None:
            self.plan_path, plan, self.metadata = hit
            engine = deserialize(runtime, plan) if plan is not None else None
            if engine is not None:
                return engine
            if plan is not None:
                log.warning("cached tensorrt plan %s does not deserialise; rebuilding it", self.plan_path)
        plan = build_plan(self._trt, self._logger, spec, self.gpu_name, self.compute_capability)
        if spec.cache_dir is not None:
            self.plan_path = write_plan(spec.cache_dir, spec.key, plan, spec.sidecar)  # sidecar last
        self.metadata = spec.metadata
        return deserialize(runtime, plan)

    @staticmethod
    def _context_profiles(engine: Any, ins: Sequence[Binding], path: str, size: int, explicit_size: bool) -> list[int | None]:
        """The optimisation profile of each of the ``size`` execution contexts (None: static
        shapes, every context shares profile 0). A plan with fewer usable profiles gets fewer
        contexts, unless ``num_contexts`` was asked for explicitly, which raises."""
        usable = identical_profiles(engine, ins)
        if usable is None:
            return [None] * size
        if explicit_size and size > len(usable):
            raise InvalidInputError(
                f"{path!r} has {len(usable)} optimisation profile(s) that concurrent execution contexts can use, "
                f"so num_contexts must be at most {len(usable)}, got {size}"
            )
        return list(usable[:size])

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
            check_feed(b, feeds[b.name])
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
                log.warning(
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
                    log.warning("freeing a tensorrt execution context failed", exc_info=True)
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
        detach(self._ctx)

    # -- introspection ----------------------------------------------------------------------
    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            trt, _ = import_runtime()
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
            _, cuda = import_runtime()
            cuda_init(cuda)
            count = cuda.Device.count()
        except Exception:  # noqa: BLE001 - no runtime, driver or GPU: no devices
            return ()
        return tuple("cuda" if i == 0 else f"cuda:{i}" for i in range(count))
