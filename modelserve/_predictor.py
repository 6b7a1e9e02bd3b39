"""The Predictor: images in, the task's results (:class:`Detections`, :class:`Classification`)
out, through any engine.

One Predictor may be shared by any number of threads: it keeps no per-call state, and engines are
thread-safe by contract. Each call decodes its images, has the task's head (``modelserve.tasks``)
preprocess each one straight into its slot of a batch tensor (images with the same input shape
share a batch), runs the engine, and has the head decode the outputs in original-image pixels.
Folders, videos, streams and iterables come as decoded frames from ``modelserve.sources``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import _checks, sources
from ._detections import Detections
from ._engine import Engine
from ._errors import DeadlineExceededError, InvalidInputError, ModelLoadError
from ._images import Image, is_single_image, load_image
from ._letterbox import OTYPES
from ._metadata import ModelInfo
from ._options import PredictOptions
from ._result_base import attach_image, with_speed
from .batching import Batching, MicroBatcher
from .batching.options import check_ms
from .tasks import head_for

__all__ = ["Predictor", "PredictOptions"]

_log = logging.getLogger("modelserve")
_DEFAULT_IMGSZ = 640
_MAX_GEOMETRIES = 256  # image sizes whose letterbox plans a Predictor keeps


def _shape_key(tensor: np.ndarray) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _timeout(timeout_ms: Any) -> float | None:
    """A call's ``timeout_ms`` checked (> 0; ``None`` or ``inf``: no deadline)."""
    if timeout_ms is None:
        return None
    value = check_ms("timeout_ms", timeout_ms, allow_zero=False, allow_inf=True)
    return None if value == float("inf") else value


def _check_deadline(deadline: float | None, n: int) -> float | None:
    """The milliseconds left before ``deadline`` (a ``time.monotonic()``); raises
    :class:`DeadlineExceededError` once it has passed."""
    if deadline is None:
        return None
    left_ms = (deadline - time.monotonic()) * 1000
    if left_ms <= 0:
        raise DeadlineExceededError(f"the call's deadline passed before its {n} image(s) could run")
    return left_ms


class Predictor:
    """Runs a YOLO-style detector on images. Create with :func:`modelserve.load`.

    ``predict(image)`` returns one :class:`Detections`; ``predict([a, b])`` returns a list.
    """

    def __init__(
        self,
        engine: Engine,
        info: ModelInfo,
        *,
        imgsz: int | Sequence[int] | None = None,
        options: PredictOptions | Mapping[str, Any] | None = None,
        channels: str = "bgr",
        batching: Batching | None = None,
        task: str | None = None,
        fast_decode: bool = False,
        layout: str | None = None,
    ) -> None:
        if channels not in ("bgr", "rgb"):
            raise InvalidInputError(f"channels must be 'bgr' or 'rgb', got {channels!r}")
        self.engine = engine
        self.info = info
        self.channels = channels
        if len(engine.inputs) != 1:
            raise ModelLoadError(f"expected a detector with one input, got {len(engine.inputs)} inputs")
        spec = engine.inputs[0]
        if len(spec.shape) != 4 or spec.shape[1] not in (3, None):
            raise ModelLoadError(f"expected a detector input shaped [batch, 3, height, width], got {list(spec.shape)}")
        if spec.dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ModelLoadError(f"expected a float32 or float16 model input, got {spec.dtype}")
        self._input = spec
        self._otype = OTYPES[spec.dtype.char]
        self._head = head_for(engine, info, task, layout)
        #: the default predict options: ``options`` (a PredictOptions as it is, or the values given,
        #: over the layout's own defaults: YOLOv5's iou=0.45, YOLOX's conf=0.1 and class-agnostic NMS)
        self.options = (options if isinstance(options, PredictOptions)
                        else PredictOptions(**{**self._head.option_defaults, **dict(options or {})}))
        self._options(multi_label=self.options.multi_label)
        #: decode JPEGs in the DCT domain at 1/2, 1/4 or 1/8 when the letterboxed size allows it
        #: (faster, not bit-identical; letterbox tasks only: a classifier always decodes fully)
        self.fast_decode = bool(fast_decode) and self._head.scaled_input
        self._run_limit = self._head.run_limit(engine)
        self._geometries: dict[Any, Any] = {}  # image size (or real size, decoded size) -> geometry
        self._fixed_batch = spec.shape[0]
        h, w = spec.shape[2], spec.shape[3]
        stride = info.stride
        if h is not None and w is not None:
            self.dynamic = False
            if max(h, w) > _checks.MAX_IMGSZ:
                raise ModelLoadError(f"this model's fixed input size {(h, w)} exceeds ops.MAX_IMGSZ={_checks.MAX_IMGSZ}")
            if imgsz is not None and tuple(_checks.pair(imgsz, "imgsz")) != (h, w):
                raise InvalidInputError(f"this model has a fixed input size {(h, w)}; imgsz={imgsz!r} cannot apply")
            self.imgsz: tuple[int, int] = (h, w)
        else:
            self.dynamic = True
            size = _checks.pair(imgsz, "imgsz") if imgsz is not None else (info.imgsz or (_DEFAULT_IMGSZ, _DEFAULT_IMGSZ))
            self.imgsz = (_checks.round_up(size[0], stride), _checks.round_up(size[1], stride))
            if max(self.imgsz) > _checks.MAX_IMGSZ:
                error = InvalidInputError if imgsz is not None else ModelLoadError
                raise error(f"imgsz {size} rounded up to the model's stride {stride} gives {self.imgsz}, beyond "
                            f"ops.MAX_IMGSZ={_checks.MAX_IMGSZ}")
        self._observers: tuple[Callable[[list[Any]], None], ...] = ()
        self._batcher: MicroBatcher | None = None
        if batching is not None:
            self._batcher = MicroBatcher(self._run_tensors, group_key=_shape_key, **dataclasses.asdict(batching))

    def _options(self, **overrides: Any) -> PredictOptions:
        """The call's options: the defaults with the given ones; ``multi_label`` only where the
        layout has it (YOLOv5/YOLOv7)."""
        opts = self.options.merged(**overrides)
        if opts.multi_label and not self._head.multi_label:
            raise InvalidInputError(f"multi_label=True is YOLOv5/YOLOv7's option; this model's layout is "
                                    f"{self._head.layout!r}")
        return opts

    # -- properties -----------------------------------------------------------------------------
    @property
    def task(self) -> str:
        """The model's task: ``detect``, ``segment``, ``pose``, ``obb`` or ``classify``."""
        return self._head.task

    @property
    def layout(self) -> str:
        """How the model's outputs are read: ``ultralytics``, ``end2end``, ``rtdetr``, ``yolov5``,
        ``yolov7``, ``yolox`` (detectors) or ``probabilities`` (classifiers)."""
        return "end2end" if self._head.end2end else self._head.layout

    @property
    def _kernels(self) -> bool:
        """Whether this Predictor runs the Cython kernels (else the NumPy reference), chosen at load."""
        return self._head.kernels

    @property
    def names(self) -> Mapping[int, str]:
        """Class names, ``{class id: name}``."""
        return self.info.names

    def __repr__(self) -> str:
        kind = "dynamic" if self.dynamic else "fixed"
        return (f"<Predictor engine={self.engine.name} device={self.engine.device} imgsz={self.imgsz} ({kind}) "
                f"classes={len(self.names)}>")

    # -- the pipeline ---------------------------------------------------------------------------
    def _geometry(self, image: Image) -> Any:
        """The letterbox layout, kernel plan and box scaling of this image's size (cached); for a
        scaled decode (``fast_decode``), the layout of its real size with a plan from its pixels."""
        if image.orig_hw is None:
            return self._geometry_hw(image.pixels.shape[:2])
        return self._geometry_hw(image.orig_hw, image.pixels.shape[:2])

    def _decode_target(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The size an image of size ``hw`` is resized to before padding (``fast_decode``'s floor)."""
        rw, rh = self._geometry_hw(hw).layout.resized_wh
        return int(rh), int(rw)

    def _geometry_hw(self, hw: tuple[int, int], pixels_hw: tuple[int, int] | None = None) -> Any:
        """The geometry of an image of size ``hw`` (cached), whose pixels are ``pixels_hw`` when
        they are a scaled decode of it."""
        key = hw if pixels_hw is None else (hw, pixels_hw)
        geometry = self._geometries.get(key)
        if geometry is None:
            geometry = self._head.geometry(hw, self.imgsz, self.dynamic, self.info.stride, pixels_hw=pixels_hw)
            if len(self._geometries) >= _MAX_GEOMETRIES:
                self._geometries.clear()  # many sizes: start over rather than grow without bound
            self._geometries[key] = geometry
        return geometry

    def _letterbox(self, image: Image, geometry: Any, out: np.ndarray) -> None:
        """Letterbox ``image`` into ``out`` (one ``(3, h, w)`` tensor: a batch slot, or a batch of one)."""
        self._head.fill(image.pixels, image.bgr, geometry, out, self._otype)

    def _preprocess(self, images: Sequence[Image], geometries: Sequence[Any]
                    ) -> list[tuple[list[int], np.ndarray]]:
        """Group images by letterboxed shape and fill one batch tensor per group."""
        if len(images) == 1:  # the common case: one image, one (1, 3, h, w) batch
            batch = np.empty((1, 3, *geometries[0].layout.output_hw), dtype=self._input.dtype)
            self._letterbox(images[0], geometries[0], batch)
            return [([0], batch)]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, geometry in enumerate(geometries):
            groups.setdefault(geometry.layout.output_hw, []).append(i)
        batches = []
        for (h, w), idx in groups.items():
            batch = np.empty((len(idx), 3, h, w), dtype=self._input.dtype)
            for slot, i in enumerate(idx):
                # load_image gave a C-contiguous HxWx3 uint8 array and the slot has the layout's shape
                self._letterbox(images[i], geometries[i], batch[slot])
            batches.append((idx, batch))
        return batches

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one batch: zero-padded to the engine's fixed batch size when it has one, and split
        into chunks the engine accepts (its fixed size, ``engine.max_batch_size``, e.g. the top of
        a TensorRT optimisation profile, or one image for models whose output batch is fixed at 1).
        Returns the head's outputs; every run's outputs must have one block per input image (else
        :class:`ModelLoadError`)."""
        fixed = self._fixed_batch
        limit = fixed or self._run_limit or getattr(self.engine, "max_batch_size", None)
        if limit is None or (len(batch) <= limit and (fixed is None or fixed == len(batch))):
            return self._run(batch)
        parts = []
        for start in range(0, len(batch), limit):
            chunk = batch[start : start + limit]
            n = len(chunk)
            if fixed is not None and n < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), chunk.dtype)])
            parts.append([o[:n] for o in self._run(chunk)])
        return [np.concatenate(outs) for outs in zip(*parts)]

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        answer = self.engine.run({self._input.name: batch})
        head = self._head
        try:
            outs = [np.asarray(answer[i]) for i in head.outputs]
        except (IndexError, KeyError, TypeError):
            raise ModelLoadError(f"the engine answered with {len(answer)} output(s); the {head.task} head reads "
                                 f"outputs {list(head.outputs)}") from None
        head.check_run(outs, len(batch))
        return outs

    def _detect(self, outs: Sequence[np.ndarray], opts: PredictOptions, images: Sequence[Image],
                geometries: Sequence[Any]) -> list[Any]:
        """Raw outputs of one batch -> the task's results in each image's pixels (each keeping its
        image, for ``plot()``)."""
        results = self._head.decode(outs, opts, images, geometries)
        for result, image in zip(results, images):
            attach_image(result, image)
        return results

    def predict(
        self,
        images: Any = None,
        *,
        source: Any = None,
        stream: bool = False,
        vid_stride: int = 1,
        batch: int = 1,
        verbose: bool = False,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        classes: Sequence[int] | None = None,
        agnostic: bool | None = None,
        multi_label: bool | None = None,
        timeout_ms: float | None = None,
    ) -> Any:
        """Detect objects in one image (a path, bytes, a PIL image, a uint8 array: BGR unless loaded
        with ``channels="rgb"``) -> :class:`Detections`; in a list of images -> a list; in any other
        source (``images`` or ``source=``: a folder, glob, list file, video, URL, ``rtsp://`` stream,
        camera index or iterable, see :mod:`modelserve.sources`) -> a list, one result per image or
        kept video frame. ``stream=True``: a generator instead, reading ``batch`` frames at a time
        (a few more decoded ahead), so a long video is never held whole; live streams need it.
        ``vid_stride``: keep every n-th video frame. Each result has an ``origin``
        (:class:`~modelserve.sources.Origin`). ``verbose``: log Ultralytics' line per image (INFO,
        ``modelserve`` logger). Thresholds default to the Predictor's. With batching on, images
        join the shared micro-batcher from the calling thread; results are the same either way.
        ``timeout_ms``: a deadline for the call's images (for a stream: each batch's), counted from
        when they start being decoded; an image not yet running by then fails the call with
        :class:`DeadlineExceededError` (with batching: still queued; without: before inference).
        """
        src = sources.one_source(images, source)
        opts = self._options(conf=conf, iou=iou, max_det=max_det, classes=classes, agnostic=agnostic,
                             multi_label=multi_label)
        timeout_ms = _timeout(timeout_ms)
        batch = _checks.positive_int(batch, "batch")
        _checks.positive_int(vid_stride, "vid_stride")
        if not stream and (isinstance(src, (list, tuple)) or sources.is_one_image(src)):
            return self._predict_images(src, opts, verbose, timeout_ms)
        opened = sources.open_source(src, vid_stride=vid_stride, channels=self.channels)
        if not stream:
            opened.check_finite()
        run = functools.partial(self._run_images, opts=opts, timeout_ms=timeout_ms)
        results = sources.feed(opened, run, batch, sources.Report(verbose, self._input_hw))
        if stream:
            return results
        done = list(results)
        return done[0] if opened.single else done

    def _predict_images(self, images: Any, opts: PredictOptions, verbose: bool,
                        timeout_ms: float | None) -> Detections | list[Detections]:
        """What ``predict`` always did: one image, or a list of images in one call."""
        single = is_single_image(images)
        items = [images] if single else list(images)
        if not items:
            return []
        report = sources.Report(verbose, self._input_hw)
        results = self._run_images(items, False, opts, timeout_ms)
        report.add(results, *sources.describe_items(items, single))
        report.finish()
        return results[0] if single else results

    def _run_images(self, items: list[Any], admitted: bool, opts: PredictOptions,
                    timeout_ms: float | None = None) -> list[Detections]:
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        if self._batcher is not None:
            results = self._predict_batched(self._batcher, items, opts, admitted, deadline)
        else:
            results = self._predict_direct(items, opts, deadline)
        self._notify(results)
        return results

    def add_observer(self, observer: Callable[[list[Any]], None]) -> None:
        """Call ``observer(results)`` after each run of images (a ``predict`` call, each batch of a
        stream, each image of ``apredict``), in the calling thread, with the results and their
        ``speed``; e.g. :func:`modelserve.monitoring.instrument` records metrics this way. An
        observer that raises is logged and otherwise ignored: it never fails a prediction."""
        if not callable(observer):
            raise InvalidInputError(f"an observer must be callable, got {observer!r}")
        self._observers = (*self._observers, observer)

    def remove_observer(self, observer: Callable[[list[Any]], None]) -> None:
        """Stop calling ``observer`` (nothing happens if it was not added)."""
        self._observers = tuple(o for o in self._observers if o is not observer)

    def _notify(self, results: list[Any]) -> None:
        for observer in self._observers:
            try:
                observer(results)
            except Exception:  # noqa: BLE001 - an observer never fails a prediction
                _log.exception("modelserve: a Predictor observer raised (ignored)")

    def _decode(self, source: Any) -> Image:
        if isinstance(source, Image):
            return source
        return load_image(source, self.channels, self._decode_target if self.fast_decode else None)

    def _input_hw(self, orig_shape: tuple[int, int]) -> tuple[int, int]:
        """The model-input size an image of ``orig_shape`` is letterboxed to (for the log lines)."""
        return tuple(self._geometry_hw(orig_shape).layout.output_hw)  # type: ignore[return-value]

    def _predict_direct(self, items: list[Any], opts: PredictOptions, deadline: float | None) -> list[Detections]:
        t0 = time.perf_counter()
        decoded = [self._decode(s) for s in items]
        geometries = [self._geometry(img) for img in decoded]
        batches = self._preprocess(decoded, geometries)
        _check_deadline(deadline, len(items))
        t1 = time.perf_counter()
        raws = [(idx, self._infer(batch)) for idx, batch in batches]
        t2 = time.perf_counter()
        if len(raws) == 1:  # one shape group: its indices are 0..n-1 in order
            results = self._detect(raws[0][1], opts, decoded, geometries)
        else:
            by_index: dict[int, Detections] = {}
            for idx, raw in raws:
                dets = self._detect(raw, opts, [decoded[i] for i in idx], [geometries[i] for i in idx])
                by_index.update(zip(idx, dets))
            results = [by_index[i] for i in range(len(decoded))]
        return with_speed(results, t0, t1, t2, time.perf_counter())

    # -- batched path ---------------------------------------------------------------------------
    def _prepare(self, source: Any) -> tuple[Image, Any, np.ndarray]:
        """Decode and letterbox one image into its own ``(3, h, w)`` tensor (caller's thread)."""
        img = self._decode(source)
        geometry = self._geometry(img)
        tensor = np.empty((3, *geometry.layout.output_hw), dtype=self._input.dtype)
        self._letterbox(img, geometry, tensor)
        return img, geometry, tensor

    def _run_tensors(self, tensors: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
        """The batcher's function: same-shaped tensors in, each image's raw outputs out (a batch of
        one is a view of its tensor, larger ones are stacked into one array)."""
        batch = tensors[0][None] if len(tensors) == 1 else np.stack(tensors)
        return list(zip(*self._infer(batch)))

    def _finish(self, image: Image, geometry: Any, raw: Sequence[np.ndarray], opts: PredictOptions) -> Any:
        return self._detect([o[None] for o in raw], opts, [image], [geometry])[0]

    def _predict_batched(self, batcher: MicroBatcher, items: list[Any], opts: PredictOptions,
                         admitted: bool = False, deadline: float | None = None) -> list[Detections]:
        t0 = time.perf_counter()
        prepared = [self._prepare(s) for s in items]
        t1 = time.perf_counter()
        futures = []
        try:
            # The first image meets the queue's policy (on_full); once the call is admitted, the
            # rest of its images (and a stream's later batches) wait for room, so a long list or
            # video never fails on its own length.
            for n, (_, _, tensor) in enumerate(prepared):
                left_ms = None if deadline is None else _check_deadline(deadline, len(items))
                futures.append(batcher.submit(tensor, block=True if n or admitted else None, timeout_ms=left_ms))
            raws = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        t2 = time.perf_counter()
        results = [self._finish(img, geometry, raw, opts) for (img, geometry, _), raw in zip(prepared, raws)]
        return with_speed(results, t0, t1, t2, time.perf_counter())

    def __call__(self, images: Any = None, **kwargs: Any) -> Any:
        return self.predict(images, **kwargs)

    async def apredict(
        self,
        images: Any,
        *,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        classes: Sequence[int] | None = None,
        agnostic: bool | None = None,
        multi_label: bool | None = None,
        timeout_ms: float | None = None,
    ) -> Detections | list[Detections]:
        """``predict`` for asyncio code, on one image or a list; never blocks the event loop (for
        folders, videos and streams, iterate ``predict(..., stream=True)`` in a thread).

        Without batching the whole call runs in the loop's default executor. With batching, decoding
        and letterboxing run in the executor and each image awaits the shared micro-batcher, so
        hundreds of concurrent coroutines form engine batches together.
        """
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = dict(conf=conf, iou=iou, max_det=max_det, classes=classes, agnostic=agnostic,
                                      multi_label=multi_label)
        batcher = self._batcher
        if batcher is None:
            call = functools.partial(self.predict, images, timeout_ms=timeout_ms, **kwargs)
            return await loop.run_in_executor(None, call)
        opts = self._options(**kwargs)
        timeout_ms = _timeout(timeout_ms)
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        single = is_single_image(images)
        items = [images] if single else list(images)
        # The first image is admitted (or refused) by the batcher's on_full policy; the others wait
        # for it to be queued and then for room, as in predict(), whatever order they finish
        # preparing in. If any image fails, the call fails and its other images are cancelled.
        admitted: asyncio.Future[None] = loop.create_future()
        tasks = [asyncio.ensure_future(self._apredict_one(batcher, s, opts, admitted, n == 0, deadline))
                 for n, s in enumerate(items)]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        sources.Report(False, self._input_hw).add(results, *sources.describe_items(items, single))
        return results[0] if single else list(results)

    async def _apredict_one(self, batcher: MicroBatcher, source: Any, opts: PredictOptions,
                            admitted: "asyncio.Future[None]", first: bool, deadline: float | None) -> Detections:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        img, geometry, tensor = await loop.run_in_executor(None, self._prepare, source)
        t1 = time.perf_counter()
        if first:
            left_ms = None if deadline is None else _check_deadline(deadline, 1)
            future = await batcher.asubmit(tensor, timeout_ms=left_ms)
            admitted.set_result(None)
        else:
            await asyncio.shield(admitted)
            left_ms = None if deadline is None else _check_deadline(deadline, 1)
            future = await batcher.asubmit(tensor, block=True, timeout_ms=left_ms)
        raw = await asyncio.wrap_future(future, loop=loop)
        t2 = time.perf_counter()
        result = self._finish(img, geometry, raw, opts)
        results = with_speed([result], t0, t1, t2, time.perf_counter())
        self._notify(results)
        return results[0]

    @property
    def batcher(self) -> MicroBatcher | None:
        """The micro-batcher shared by all calls, when batching is on (see its ``stats()``)."""
        return self._batcher

    def close(self) -> None:
        """Finish queued batched work, then release the engine. The Predictor cannot be used afterwards."""
        if self._batcher is not None:
            self._batcher.close(drain=True)
        self.engine.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
