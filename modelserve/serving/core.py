"""The protocol-free core of the server: named models, their metadata, and one ``infer``.

A :class:`ModelRepository` holds named, batched :class:`~modelserve.Predictor` objects. The
protocol front ends (``rest.py``, ``grpc.py``) decode a request into :class:`Tensor` objects, call
:meth:`ModelRepository.infer`, and encode the named tensors it returns. Nothing here knows HTTP.

Inputs (exactly one per request, told apart by datatype):

* ``BYTES`` ``[k]``: ``k`` encoded images (JPEG, PNG, ...). The detection outputs are padded to
  the most detections of any image: ``boxes`` FP32 ``[k, n, 4]`` (xyxy, original pixels),
  ``scores`` FP32 ``[k, n]``, ``class_ids`` INT64 ``[k, n]`` (``-1`` in padding), ``counts``
  INT64 ``[k]`` (the real detections of each image: row ``i`` holds ``counts[i]`` of them, best
  first), and ``json`` BYTES ``[k]`` (each image's ``Detections.to_json()``). Results of other
  tasks (classification) give only ``json``.
* ``FP32`` / ``FP16`` ``[k, 3, h, w]``: an already letterboxed batch, given to the engine as it is
  (one ``Engine.run``, not through the micro-batcher: it is a batch already; at most the engine's
  ``max_batch_size``); the outputs are the engine's raw outputs under their own names.

Parameters: ``conf``, ``iou``, ``max_det``, ``classes`` (ids, as a list or ``"0,2"``), ``agnostic``, ``multi_label``,
and ``timeout`` (microseconds, as Triton's clients send it): the request's deadline. A request still
queued at its deadline (the smaller of ``timeout``, the caller's ``timeout_s`` and the repository's
``timeout_ms``) fails with :class:`~modelserve.DeadlineExceededError` (HTTP 504).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import math
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .._detections import Detections
from .._errors import DeadlineExceededError, InvalidInputError, ModelNotFoundError
from .._version import __version__
from .errors import RequestTooLargeError, status_for

__all__ = ["Tensor", "ServedModel", "ModelRepository", "DATATYPES", "IMAGE_INPUT", "DETECTION_OUTPUTS",
           "DEFAULT_MAX_PIXELS", "server_metadata", "detection_tensors", "predict_options", "split_bytes", "bytes_array"]

#: KServe v2 datatype -> numpy dtype (``BYTES`` is an object array of ``bytes``).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_DATATYPE_OF = {dt: name for name, dt in DATATYPES.items() if name != "BYTES"}

#: The request :meth:`ModelRepository.track` is counting in this context: a model lease
#: (:meth:`ServedModel.use`) writes the version that serves it, for a request that named none.
_TRACKED: contextvars.ContextVar["list[str] | None"] = contextvars.ContextVar("modelserve_tracked", default=None)

#: The name the metadata gives the encoded-image input (requests may name it anything).
IMAGE_INPUT = "image"
#: The outputs of a detection request on encoded images, in order.
DETECTION_OUTPUTS = ("boxes", "scores", "class_ids", "counts", "json")
#: Most pixels (width x height) of one image, by default (a 8K photo has 33 million).
DEFAULT_MAX_PIXELS = 40_000_000
_OPTIONS = ("conf", "iou", "max_det", "classes", "agnostic", "multi_label")


@dataclass(frozen=True)
class Tensor:
    """One named tensor of a request or a response: ``data`` has ``shape`` and the datatype's dtype."""

    name: str
    datatype: str
    data: np.ndarray

    @property
    def shape(self) -> list[int]:
        return [int(d) for d in self.data.shape]

    @classmethod
    def of(cls, name: str, array: np.ndarray) -> "Tensor":
        """A tensor of a numpy array (an object array is ``BYTES``)."""
        if array.dtype == object:
            return cls(name, "BYTES", array)
        datatype = _DATATYPE_OF.get(array.dtype)
        if datatype is None:
            raise InvalidInputError(f"no KServe v2 datatype for numpy {array.dtype}")
        return cls(name, datatype, array)


@dataclass
class ServedModel:
    """A model the server holds: its name, version and (batched) predictor; ``ref``: the registry
    reference it follows (``det@prod``), when it follows one."""

    name: str
    version: str
    predictor: Any  # modelserve.Predictor
    ref: str | None = None

    def __post_init__(self) -> None:
        self._users = 0
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def use(self) -> Iterator["ServedModel"]:
        """Hold the model for one request: a model being replaced or unloaded is closed only once
        every request holding it has finished."""
        with self._idle:
            self._users += 1
        tracked = _TRACKED.get()
        if tracked is not None:
            tracked[0] = self.version
        try:
            yield self
        finally:
            with self._idle:
                self._users -= 1
                if not self._users:
                    self._idle.notify_all()

    def retire(self, timeout_s: float = 60.0) -> None:
        """Wait (up to ``timeout_s``) for the requests holding the model to finish, then close it."""
        with self._idle:
            self._idle.wait_for(lambda: not self._users, timeout=timeout_s)
        self.predictor.close()

    def metadata(self) -> dict[str, Any]:
        """The KServe v2 model metadata, plus ``parameters`` with the task, engine and class names."""
        p = self.predictor
        spec = p.engine.inputs[0]
        raw_shape = [-1 if d is None else int(d) for d in spec.shape]
        inputs = [
            {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": spec.name, "datatype": _DATATYPE_OF[np.dtype(spec.dtype)], "shape": raw_shape},
        ]
        outputs = [
            {"name": "boxes", "datatype": "FP32", "shape": [-1, -1, 4]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "class_ids", "datatype": "INT64", "shape": [-1, -1]},
            {"name": "counts", "datatype": "INT64", "shape": [-1]},
            {"name": "json", "datatype": "BYTES", "shape": [-1]},
        ]
        outputs += [{"name": o.name, "datatype": _DATATYPE_OF.get(np.dtype(o.dtype), "FP32"),
                     "shape": [-1 if d is None else int(d) for d in o.shape]} for o in p.engine.outputs]
        return {
            "name": self.name, "versions": [self.version], "platform": f"modelserve_{p.engine.name}",
            "inputs": inputs, "outputs": outputs,
            "parameters": {"task": p.task, "layout": p.layout, "engine": p.engine.name, "device": p.engine.device,
                           "imgsz": list(p.imgsz), "class_names": {str(k): v for k, v in p.names.items()}},
        }


def server_metadata() -> dict[str, Any]:
    """The KServe v2 server metadata."""
    return {"name": "modelserve", "version": __version__, "extensions": ["binary_tensor_data"]}


class ModelRepository:
    """Named models, each a batched :class:`~modelserve.Predictor`; safe to share between threads.

    ``max_pixels``: most pixels of one encoded image (larger ones: :class:`RequestTooLargeError`,
    checked from the image header, before decoding).
    """

    def __init__(self, *, max_pixels: int = DEFAULT_MAX_PIXELS, timeout_ms: float | None = None,
                 metrics: Any = None, registry: Any = None, drift: Mapping[str, Any] | None = None) -> None:
        self.max_pixels = max_pixels
        #: the default deadline of a request, in ms (None: none)
        self.timeout_ms = timeout_ms
        #: the :class:`~modelserve.Registry` references resolve in (None: the default one, made when needed)
        self.registry = registry
        #: options of a :class:`~modelserve.monitoring.DriftMonitor` kept per model (None: no drift monitoring)
        self.drift_options = None if drift is None else dict(drift)
        self._drift: dict[str, tuple[Any, Any]] = {}  # name -> (DriftMonitor, its registered collector or None)
        #: a :class:`modelserve.monitoring.Metrics` (or None): what :meth:`track` and loading record
        self.metrics = metrics
        self._models: dict[str, ServedModel] = {}
        self._load_options: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def track(self, name: str, version: str | None, protocol: str) -> Iterator[None]:
        """Count one request of a front end (``protocol``: ``"rest"``, ``"grpc"``) in the metrics:
        in flight while the block runs, then its status (from :func:`status_for` when it raises,
        which re-raises) and duration, under the version that served it (the one named, else the
        one the request's model lease held, else ``""``). A no-op without metrics."""
        metrics = self.metrics
        if metrics is None:
            yield
            return
        start = time.perf_counter()
        status = 200
        served = [version or ""]
        token = _TRACKED.set(served)
        metrics.in_flight(name, 1)
        try:
            yield
        except BaseException as exc:
            status = status_for(exc).http
            raise
        finally:
            _TRACKED.reset(token)
            metrics.in_flight(name, -1)
            metrics.request(name, served[0], protocol, status, time.perf_counter() - start)

    def load(self, name: str, source: Any, **load_options: Any) -> ServedModel:
        """``ms.load(source, batching=True, **load_options)`` served as ``name``: a registry
        reference (``det``, ``det@prod``, ``det:3``) is served as the version it names now, under
        that version's number (through ``lock=``, a lock file, when given: then it is never
        followed); one with an alias or no version (latest) is *followed*
        (:meth:`following`, moved by :class:`~modelserve.serving.rollouts.AliasFollower`). A file is
        served as version ``"1"``."""
        from .._load import load
        from .._registry import is_registry_ref, resolve_for_load

        load_options.setdefault("batching", True)
        version, ref = "1", None
        if isinstance(source, str) and is_registry_ref(source):
            registry = load_options.get("registry") or self._registry()
            lock = load_options.pop("lock", None)
            mv = resolve_for_load(source, registry=registry, lock=lock)  # a locked ref: its pin, never followed
            if lock is None:
                ref = source if "@" in source or ":" not in source else None  # an alias or 'latest' may move
            source, version = f"{mv.name}:{mv.version}", str(mv.version)
            load_options["registry"] = registry
        self._load_options[name] = dict(load_options)
        start = time.perf_counter()
        predictor = load(source, **load_options)
        model = self.add(name, predictor, version, ref=ref)
        self._loaded(model, time.perf_counter() - start)
        return model

    def _registry(self) -> Any:
        if self.registry is None:
            from .._registry import Registry

            self.registry = Registry()
        return self.registry

    def drift(self, name: str) -> Any:
        """The :class:`~modelserve.monitoring.DriftMonitor` of model ``name`` (None without drift monitoring)."""
        self.get(name)
        return self._drift.get(name, (None, None))[0]

    def _loaded(self, model: ServedModel, seconds: float) -> None:
        if self.drift_options is not None:
            self._watch_drift(model)
        if self.metrics is not None:
            self.metrics.instrument(model.predictor, model.name, model.version)
            self.metrics.model_loaded(model.name, model.version, seconds)

    def add(self, name: str, predictor: Any, version: str = "1", *, ref: str | None = None) -> ServedModel:
        """Serve ``predictor`` as ``name``; a second model of the same name is refused."""
        if not name or "/" in name:
            raise InvalidInputError(f"a model name must be non-empty without '/', got {name!r}")
        with self._lock:
            if name in self._models:
                raise InvalidInputError(f"a model named {name!r} is already served")
            model = self._models[name] = ServedModel(name, version, predictor, ref)
        return model

    def replace(self, name: str, predictor: Any, version: str, *, ref: str | None = None) -> ServedModel:
        """Serve ``predictor`` as ``name`` from now on, atomically: requests that already hold the
        old model finish on it, then it is closed (in this thread); new ones get the new model."""
        new = ServedModel(name, version, predictor, ref)
        with self._lock:
            old = self._models.get(name)
            self._models[name] = new
        if old is not None:
            self._retire(old)
        return new

    def _watch_drift(self, model: ServedModel) -> None:
        """A new drift monitor for a newly loaded model (a new version starts a new reference)."""
        from ..monitoring import DriftMonitor

        monitor = DriftMonitor(**(self.drift_options or {}))
        model.predictor.add_observer(monitor.as_observer())
        collector = None
        if self.metrics is not None:
            collector = monitor.collector(model.name, model.version)
            self.metrics.registry.register(collector)
        self._forget_drift(model.name)
        self._drift[model.name] = (monitor, collector)

    def _forget_drift(self, name: str) -> None:
        _, collector = self._drift.pop(name, (None, None))
        if collector is not None and self.metrics is not None:
            self.metrics.registry.unregister(collector)

    def _retire(self, model: ServedModel) -> None:
        if self.metrics is not None:
            self.metrics.detach(model.predictor)
        model.retire()

    def unload(self, name: str) -> None:
        """Stop serving ``name``: new requests get 404 at once, those running finish, then it is closed."""
        with self._lock:
            model = self._models.pop(name, None)
        if model is None:
            raise ModelNotFoundError(f"no model named {name!r} is served (served: {self.names()})")
        self._forget_drift(name)
        self._retire(model)

    def load_from_registry(self, name: str, ref: str | None = None) -> ServedModel:
        """Load registry reference ``ref`` (default ``name``, its latest version) as ``name``
        (the repository API's *load*); a model already served as ``name`` is replaced once the
        new one is ready. Only registry references: never a path (a client names models, not files)."""
        from .._load import load

        ref = name if ref is None else ref
        if not isinstance(ref, str) or "/" in ref or "\\" in ref:
            raise InvalidInputError(f"the repository API loads registry references only (det, det:3, det@prod), "
                                    f"got {ref!r}")
        registry = self.registry_of(name)
        mv = registry.resolve(ref)  # InvalidNameError / ModelNotFoundError for a bad or unknown reference
        options = dict(self._load_options.get(name) or {"batching": True})
        options["registry"] = registry
        start = time.perf_counter()
        predictor = load(f"{mv.name}:{mv.version}", **options)
        follows = ref if "@" in ref or ":" not in ref else None
        self._load_options[name] = options
        with self._lock:
            served = name in self._models
        if served:
            model = self.replace(name, predictor, str(mv.version), ref=follows)
        else:
            model = self.add(name, predictor, str(mv.version), ref=follows)
        self._loaded(model, time.perf_counter() - start)
        return model

    def index(self) -> list[dict[str, str]]:
        """Every served model: ``name``, ``version``, ``state`` (``READY`` / ``UNAVAILABLE``), ``reason``."""
        with self._lock:
            models = sorted(self._models.values(), key=lambda m: m.name)
        out = []
        for m in models:
            batcher = m.predictor.batcher
            ok = batcher is None or not batcher.closed
            out.append({"name": m.name, "version": m.version, "state": "READY" if ok else "UNAVAILABLE",
                        "reason": "" if ok else "closed"})
        return out

    def registry_of(self, name: str) -> Any:
        """The registry model ``name`` was loaded from (the repository's own for others)."""
        return (self._load_options.get(name) or {}).get("registry") or self._registry()

    def following(self) -> list[ServedModel]:
        """The served models that follow a registry alias (or a name's latest version)."""
        with self._lock:
            return [m for m in self._models.values() if m.ref is not None]

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model ``name`` (at ``version``, when given), else :class:`ModelNotFoundError`."""
        with self._lock:
            model = self._models.get(name)
        if model is None:
            raise ModelNotFoundError(f"no model named {name!r} is served (served: {self.names()})")
        if version not in (None, "", model.version):
            raise ModelNotFoundError(f"model {name!r} has no version {version!r} (versions: [{model.version!r}])")
        return model

    def ready(self, name: str, version: str | None = None) -> bool:
        """Whether the model is served and can take requests."""
        batcher = self.get(name, version).predictor.batcher
        return batcher is None or not batcher.closed

    def close(self) -> None:
        """Finish queued work and release every model."""
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            self._retire(model)

    def infer(self, name: str, version: str | None, inputs: Sequence[Tensor],
              parameters: Mapping[str, Any] | None = None, outputs: Sequence[str] | None = None, *,
              timeout_s: float | None = None) -> list[Tensor]:
        """Run one request: decoded input tensors in, named output tensors out (``outputs``: only
        these, in this order; default all). ``timeout_s``: the caller's deadline (e.g. gRPC's),
        from now. Blocks; protocol layers call it from a worker thread."""
        with self.get(name, version).use() as model:
            return self.run(model, inputs, parameters, outputs, timeout_s=timeout_s)

    def run(self, model: ServedModel, inputs: Sequence[Tensor], parameters: Mapping[str, Any] | None = None,
            outputs: Sequence[str] | None = None, *, timeout_s: float | None = None) -> list[Tensor]:
        """:meth:`infer` on a model the caller holds (``with repo.get(name).use() as model``), so
        the version it answers with is the one that ran, even while a rollout replaces it."""
        parameters = parameters or {}
        if len(inputs) != 1:
            raise InvalidInputError(f"expected exactly one input tensor (encoded images as BYTES, or a raw "
                                    f"FP32/FP16 batch), got {len(inputs)}")
        (tensor,) = inputs
        timeout_ms = self._timeout_ms(parameters, timeout_s)
        if tensor.datatype == "BYTES":
            images = [_image_bytes(x, tensor.name) for x in tensor.data.reshape(-1)]
            answer = detection_tensors(self._predict(model.predictor, images, parameters, timeout_ms))
        elif tensor.datatype in ("FP32", "FP16"):
            answer = _raw(model.predictor, tensor)
        else:
            raise InvalidInputError(f"input {tensor.name!r}: expected BYTES (encoded images) or FP32/FP16 "
                                    f"(a letterboxed NCHW batch), got {tensor.datatype}")
        if not outputs:
            return answer
        by_name = {t.name: t for t in answer}
        missing = [o for o in outputs if o not in by_name]
        if missing:
            raise InvalidInputError(f"unknown output(s) {missing}; this request gives {list(by_name)}")
        return [by_name[o] for o in outputs]

    def _timeout_ms(self, parameters: Mapping[str, Any], timeout_s: float | None) -> float | None:
        """The request's deadline in ms: the least of its ``timeout`` parameter (microseconds),
        the caller's ``timeout_s`` and the repository's default."""
        limits = [] if self.timeout_ms is None else [self.timeout_ms]
        if timeout_s is not None:
            limits.append(max(timeout_s, 0.0) * 1000)
        if "timeout" in parameters:
            us = parameters["timeout"]
            if isinstance(us, bool) or not isinstance(us, (int, float)) or not us > 0:
                raise InvalidInputError(f"parameter timeout: expected microseconds > 0, got {us!r}")
            limits.append(us / 1000)
        if not limits:
            return None
        left = min(limits)
        if left <= 0:
            raise DeadlineExceededError("the request's deadline passed before it could run")
        return left

    def predict_images(self, name: str, version: str | None, images: Sequence[bytes],
                       parameters: Mapping[str, Any], *, timeout_s: float | None = None) -> list[Any]:
        """The results of ``k`` encoded images on model ``name`` (each image checked against
        ``max_pixels`` first): the /v1 predict route's call."""
        with self.get(name, version).use() as model:
            return self._predict(model.predictor, images, parameters, self._timeout_ms(parameters, timeout_s))

    def _predict(self, predictor: Any, images: Sequence[bytes], parameters: Mapping[str, Any],
                 timeout_ms: float | None) -> list[Any]:
        if not images:
            raise InvalidInputError("the request holds no images")
        for n, data in enumerate(images):
            _check_pixels(data, self.max_pixels, n)
        return list(predictor.predict(list(images), timeout_ms=timeout_ms, **predict_options(parameters)))


def split_bytes(chunk: memoryview, name: str, where: str) -> list[bytes]:
    """The elements of a serialized ``BYTES`` tensor (each a 4-byte little-endian length, then the
    bytes), as both protocols carry it (``where``: "binary data", "raw contents", for the errors)."""
    items, pos = [], 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise InvalidInputError(f"input {name!r}: truncated BYTES element length")
        (n,) = struct.unpack_from("<I", chunk, pos)
        pos += 4
        if pos + n > len(chunk):
            raise InvalidInputError(f"input {name!r}: a BYTES element of {n} bytes overruns the {where}")
        items.append(bytes(chunk[pos : pos + n]))
        pos += n
    return items


def bytes_array(items: Sequence[Any], shape: list[int], name: str) -> np.ndarray:
    """``items`` as an object array of ``shape`` (a ``BYTES`` tensor), refusing a count that does not fit."""
    if len(items) != math.prod(shape):
        raise InvalidInputError(f"input {name!r}: shape {shape} needs {math.prod(shape)} elements, got {len(items)}")
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array.reshape(shape)


def detection_tensors(results: Sequence[Any]) -> list[Tensor]:
    """The output tensors of ``k`` results, padded to the most detections (see the module doc)."""
    texts = np.empty(len(results), dtype=object)
    texts[:] = [r.to_json().encode() for r in results]
    if not all(isinstance(r, Detections) for r in results):
        return [Tensor("json", "BYTES", texts)]
    k, n = len(results), max(len(r) for r in results)
    boxes = np.zeros((k, n, 4), np.float32)
    scores = np.zeros((k, n), np.float32)
    class_ids = np.full((k, n), -1, np.int64)
    for i, r in enumerate(results):
        m = len(r)
        boxes[i, :m], scores[i, :m], class_ids[i, :m] = r.xyxy, r.confidence, r.class_id
    counts = np.array([len(r) for r in results], np.int64)
    return [Tensor("boxes", "FP32", boxes), Tensor("scores", "FP32", scores),
            Tensor("class_ids", "INT64", class_ids), Tensor("counts", "INT64", counts), Tensor("json", "BYTES", texts)]


def _raw(predictor: Any, tensor: Tensor) -> list[Tensor]:
    engine = predictor.engine
    spec = engine.inputs[0]
    data = tensor.data
    if data.dtype != np.dtype(spec.dtype):
        raise InvalidInputError(f"input {tensor.name!r}: this model takes {_DATATYPE_OF[np.dtype(spec.dtype)]} "
                                f"tensors, got {tensor.datatype}")
    fits = data.ndim == len(spec.shape) and all(d is None or d == s for d, s in zip(spec.shape, data.shape))
    if not fits or data.ndim != 4 or 0 in data.shape:
        want = [-1 if d is None else d for d in spec.shape]
        raise InvalidInputError(f"input {tensor.name!r}: expected a tensor shaped {want}, got {list(data.shape)}")
    limit = getattr(engine, "max_batch_size", None)
    if limit is not None and data.shape[0] > limit:
        raise InvalidInputError(f"input {tensor.name!r}: at most {limit} images per raw batch, got {data.shape[0]}")
    outs = engine.run({spec.name: np.ascontiguousarray(data)})
    return [Tensor.of(o.name, np.ascontiguousarray(np.asarray(a))) for o, a in zip(engine.outputs, outs)]


def _image_bytes(item: Any, name: str) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    raise InvalidInputError(f"input {name!r}: expected encoded image bytes, got {type(item).__name__}")


def _check_pixels(data: bytes, max_pixels: int, n: int) -> None:
    """Refuse an image whose header says it is over ``max_pixels``; undecodable bytes are left to
    the Predictor, whose error says why."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Exception:  # noqa: BLE001 - the Predictor decodes it again and raises the typed error
        return
    if w * h > max_pixels:
        raise RequestTooLargeError(f"image {n} is {w}x{h} = {w * h} pixels, over the server's limit of {max_pixels}")


def predict_options(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The predict options among a request's parameters (``conf``, ``iou``, ``max_det``,
    ``classes`` as ids or ``"0,2"``, ``agnostic``, ``multi_label`` (YOLOv5/YOLOv7 models); others,
    e.g. the binary-data ones, are the protocol's), ready for ``Predictor.predict``."""
    options = {k: parameters[k] for k in _OPTIONS if k in parameters}
    classes = options.get("classes")
    if isinstance(classes, str):
        try:
            options["classes"] = [int(c) for c in classes.replace(",", " ").split()]
        except ValueError:
            raise InvalidInputError(f"parameter classes: expected class ids like '0,2', got {classes!r}") from None
    elif isinstance(classes, int) and not isinstance(classes, bool):
        options["classes"] = [classes]
    return options
