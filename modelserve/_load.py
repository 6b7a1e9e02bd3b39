"""``modelserve.load``: from a model reference to a ready :class:`Predictor`."""

from __future__ import annotations

import logging
import os
import stat
from typing import Any, Callable, Mapping, Sequence

from ._engine import Engine
from ._engine_catalog import open_engine
from ._errors import InvalidInputError, ModelLoadError
from ._files import file_kind
from ._formats import model_file
from ._metadata import describe_model, parse_metadata
from ._options import PredictOptions
from ._predictor import Predictor
from ._registry import Registry, is_registry_ref, resolve_for_load, set_default_describer
from .batching import Batching
from .batching.options import default_concurrent_batches
from .tasks import ROWS_LAYOUTS, detector_layout

__all__ = ["load"]

_log = logging.getLogger("modelserve")


def _describe_for_registry(path: os.PathLike[str]) -> dict[str, Any] | None:
    """What a :class:`Registry` records as a version's ``model_info``: an ONNX model is loaded on
    the CPU and described (``describe_model``: IO specs, names, imgsz, stride); other files get None."""
    file = os.fspath(path)
    return describe_model(file) if os.path.splitext(file)[1].lower() == ".onnx" else None


# The registry stores files and never imports an engine: describing what it stores is injected here.
set_default_describer(_describe_for_registry)


def _check_model_path(path: str) -> None:
    """A model path must name a regular file (or a directory, for engines that take one): a FIFO
    would block the engine's read forever, and a device or socket is no model."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelLoadError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc}") from exc
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ModelLoadError(f"model path {path} is a {file_kind(mode)}, not a model file")


def load(
    source: str | os.PathLike[str] | Engine,
    *,
    engine: str | type[Engine] = "auto",
    device: str = "cpu",
    imgsz: int | Sequence[int] | None = None,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    classes: Sequence[int] | None = None,
    agnostic: bool | None = None,
    multi_label: bool | None = None,
    names: Mapping[int, str] | Sequence[str] | None = None,
    channels: str = "bgr",
    task: str | None = None,
    layout: str | None = None,
    engine_options: Mapping[str, Any] | None = None,
    batching: Batching | bool | None = None,
    registry: Registry | None = None,
    lock: str | os.PathLike[str] | None = None,
    fast_decode: bool = False,
) -> Predictor:
    """Load a detector and return a thread-safe :class:`Predictor`.

    ``source``: a model file (``.onnx``), a registry reference (``"det"``, ``"det:3"``,
    ``"det@prod"``, ``"det@sha256:<hex>"``; see :class:`Registry`), or a constructed :class:`Engine`.
    ``registry``: the :class:`Registry` that references resolve in (default: ``$MODELSERVE_HOME``,
    else the user cache dir). ``lock``: a ``modelserve.lock`` pinning what references resolve to;
    content whose digest differs from the pin raises :class:`PinMismatchError`. Registered files are
    size-checked on every load and hashed on first use or when they changed (:class:`IntegrityError`).
    ``engine``: ``"auto"`` or an engine name: ``"onnxruntime"``, ``"openvino"``, ``"tensorrt"`` or a
    plugin's (``ms.list_engines()`` lists them). ``auto``: ``.xml`` -> OpenVINO, ``.engine``/``.plan`` ->
    TensorRT, ``.onnx`` -> the first installed engine for the device (CPU: ONNX Runtime, then
    OpenVINO; CUDA: TensorRT, then ONNX Runtime).
    ``device``: ``"cpu"``; ``"cuda[:N]"``; ONNX Runtime's providers ``"tensorrt[:N]"`` and
    ``"openvino[:CPU|GPU|NPU]"``; OpenVINO's ``"gpu[:N]"``, ``"npu"``, ``"auto"``. Nothing falls
    back silently: a device that cannot be used raises :class:`EngineUnavailableError`.
    ``imgsz``: inference size for dynamic-shape models, an int or ``(height, width)`` of ints
    (default: the model's metadata, else 640; rounded up to the stride; at most
    ``modelserve.ops.MAX_IMGSZ`` = 8192 per side). Fixed-shape models always use their own input size.
    ``conf``, ``iou``, ``max_det``, ``classes``, ``agnostic``: defaults for every ``predict`` call,
    with Ultralytics' meanings; unset, the layout's family's own defaults (Ultralytics: 0.25, 0.7,
    300, all classes, class-aware; YOLOv5/YOLOv7: iou 0.45 and max_det 1000/300; YOLOX: conf 0.1,
    iou 0.45, class-agnostic, no max_det cap). ``multi_label``: YOLOv5/YOLOv7's option, one row per class whose
    confidence passes ``conf`` (default False, as their ``detect.py``).
    ``names``: class names for models without metadata.
    ``task``: ``"detect"``, ``"segment"``, ``"pose"``, ``"obb"``, ``"classify"`` or ``"rtdetr"``
    (RT-DETR's detection layout); default: the model's metadata. The outputs must have that
    task's layout (see :mod:`modelserve.tasks`), else :class:`ModelLoadError` says what was
    expected and found.
    ``channels``: channel order of numpy inputs, ``"bgr"`` (OpenCV) or ``"rgb"``.
    ``fast_decode``: decode JPEG paths and bytes in the DCT domain at 1/2, 1/4 or 1/8 of each side
    when that still covers the size the image is letterboxed to (detect, segment, pose, obb,
    RT-DETR; a classifier decodes fully). Faster, but not bit-identical to Ultralytics: results are
    still in the image's own pixels, boxes move by a fraction of a pixel (``benchmarks/RESULTS.md``).
    ``engine_options``: passed to the engine (e.g. ``{"intra_op_threads": 2}`` for ONNX Runtime,
    ``{"performance_hint": "throughput"}`` for OpenVINO, ``{"fp16": True}`` for TensorRT). Models
    loaded from a registry keep compiled artifacts (OpenVINO cache, TensorRT plans) in its artifact
    area unless ``cache_dir`` is given.
    ``batching``: ``True`` or a :class:`Batching` to let concurrent ``predict``/``apredict`` calls
    share engine batches through a :class:`MicroBatcher` (``None``/``False``: each call runs alone).
    ``True`` lets one engine batch per CPU core (at most 4; on a GPU one) run at once, as
    ``modelserve serve`` does; a :class:`Batching` is used as given (its default is one).

    Example::

        p = modelserve.load("yolov8n.onnx")
        r = p.predict("bus.jpg")
        r.xyxy, r.confidence, r.class_id, r.class_names
    """
    given: dict[str, Any] = {k: v for k, v in dict(conf=conf, iou=iou, max_det=max_det, classes=classes, agnostic=agnostic,
                                   multi_label=multi_label).items() if v is not None}
    PredictOptions(**given)  # refuse bad values before opening the model
    batching = _batching(batching, str(source.device) if isinstance(source, Engine) else device)
    if isinstance(source, Engine):
        eng = source
    else:
        hints = {"imgsz": imgsz, "max_batch": batching.max_batch_size if batching is not None else None}
        eng = _open(source, engine, device, registry, lock, hints, engine_options)
    try:
        info, layout = _model_info(eng, task, names, layout)
        predictor = Predictor(eng, info, imgsz=imgsz, options=given, channels=channels, batching=batching, task=task,
                              fast_decode=fast_decode, layout=layout)
    except BaseException:
        if not isinstance(source, Engine):
            eng.close()
        raise
    if _log.isEnabledFor(logging.DEBUG):
        provider = next((getattr(eng, a) for a in ("providers", "execution_devices", "gpu_name") if hasattr(eng, a)), None)
        _log.debug("loaded %s: engine=%s device=%s provider=%s imgsz=%s (%s) task=%s classes=%d batching=%s",
                   getattr(eng, "path", source), eng.name, eng.device, provider, predictor.imgsz,
                   "dynamic" if predictor.dynamic else "fixed", predictor.task, len(predictor.names), batching)
    return predictor


def _batching(batching: Batching | bool | None, device: str) -> Batching | None:
    """``True``: the defaults, with one engine batch per core (at most 4) running at once on the
    CPU and one on a GPU (``default_concurrent_batches``); a :class:`Batching` is taken as it is."""
    if batching is True:
        return Batching(max_concurrent_batches=default_concurrent_batches(device))
    if batching is False or batching is None:
        return None
    if not isinstance(batching, Batching):
        raise InvalidInputError(f"batching must be True, False, None or a Batching, got {batching!r}")
    return batching


def _open(source: str | os.PathLike[str], engine: str | type[Engine], device: str, registry: Registry | None,
          lock: str | os.PathLike[str] | None, hints: Mapping[str, Any],
          engine_options: Mapping[str, Any] | None) -> Engine:
    """The engine for a model path or a registry reference (whose compiled artifacts, such as
    TensorRT plans, are kept in the registry's artifact area)."""
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidInputError(f"source must be a model path or an Engine, got {type(source).__name__}")
    path = os.fspath(source)
    cache_dir_for = None
    if registry is not None or lock is not None or is_registry_ref(path):
        reg = registry if registry is not None else Registry()
        version = resolve_for_load(path, registry=reg, lock=lock)
        path = os.fspath(version.path)
        cache_dir_for = _artifact_dirs(reg, version.digest, device)
    path = model_file(path)
    _check_model_path(path)
    return open_engine(path, engine=engine, device=device, cache_dir_for=cache_dir_for, hints=dict(hints),
                       **dict(engine_options or {}))


def _artifact_dirs(reg: Registry, digest: str, device: str) -> Callable[[type[Engine]], os.PathLike[str] | None]:
    """Where each engine keeps what it compiles for one registered model on ``device``."""

    def cache_dir_for(cls: type[Engine]) -> os.PathLike[str] | None:
        return reg.engine_cache_dir(digest, {"engine": cls.name, "device": str(device)})

    return cache_dir_for


def _model_info(eng: Engine, task: str | None, names: Mapping[int, str] | Sequence[str] | None,
                layout: str | None) -> tuple[Any, str | None]:
    """The model's metadata and, for a detector with one output, its layout (read once, here:
    :func:`modelserve.tasks.detector_layout`); without names in the metadata or ``names=``, the
    class count of the layouts that show it: detect ``[B, 4 + nc, anchors]``, the rows layouts
    ``[B, rows, 5 + nc]`` and classify ``[B, nc]`` (end-to-end rows and other tasks need ``names=``)."""
    shape = tuple(eng.outputs[0].shape) if eng.outputs else ()
    said = task or eng.metadata.get("task", "detect")
    nc = None
    if said == "detect" and len(shape) == 3:
        if len(eng.outputs) == 1:
            layout = detector_layout(shape, tuple(eng.inputs[0].shape[2:4]), eng.metadata, layout)
        if layout in ROWS_LAYOUTS:
            nc = None if shape[2] is None else shape[2] - 5
        elif layout == "end2end":
            if names is None and "names" not in eng.metadata:
                raise ModelLoadError(f"end-to-end detector rows {list(shape)} do not show how many classes the "
                                     "model has: pass names= (a list, or a dict id -> name)")
        elif shape[1] is not None:
            nc = shape[1] - 4
    elif said == "classify" and len(shape) == 2 and shape[1] is not None:
        nc = shape[1]
    return parse_metadata(eng.metadata, names=names, imgsz=None, num_classes=nc), layout
