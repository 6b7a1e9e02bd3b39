"""TensorRT engine adapter (``pip install modelserve[tensorrt]``: TensorRT 10+ and pycuda).

Modules: :mod:`.profiles` (optimisation-profile shapes), :mod:`.plan_cache` (cache key, plan
files, Ultralytics headers), :mod:`.bindings` (tensor layout, feed checks), :mod:`.cuda`
(TensorRT/pycuda at run time, timing cache), :mod:`.build` (building or loading a plan) and
:mod:`.engine` (:class:`TensorRTEngine`). Only the engine is public.

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

from .engine import TensorRTEngine

__all__ = ["TensorRTEngine"]
