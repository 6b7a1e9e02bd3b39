"""Export a model as a Triton Inference Server model repository (``modelserve export triton``).

:func:`export_repository` writes, for an ONNX model (a file, or a registry reference such as
``det@prod``, exported under its registry name and the version the reference resolves to)::

    OUT/<name>/config.pbtxt                   the model itself: ONNX Runtime, OpenVINO or TensorRT backend
    OUT/<name>/<version>/model.onnx           (or model.xml + model.bin, or model.plan)
    OUT/<name>_pipeline/config.pbtxt          the whole pipeline, Python backend
    OUT/<name>_pipeline/<version>/model.py    encoded images in, detections out (modelserve inside)
    OUT/<name>_pipeline/<version>/model.onnx

``config.pbtxt`` maps modelserve's settings to Triton's (see :mod:`modelserve.triton._config`):
``Batching`` to ``max_batch_size`` and ``dynamic_batching`` (preferred size, queue delay, queue
policy with timeout and bound), ``instances`` and ``device`` to ``instance_group``; tensors keep
the model's names, data types and dims.

Why a Python-backend model for the pipeline, not an ensemble (preprocess -> ONNX -> postprocess):
modelserve letterboxes each image to its own rect shape (stride multiples, as Ultralytics does for
dynamic models), so preprocessed tensors of different photos differ in shape and Triton could not
batch them without square padding, which changes the detections; and the decode step needs each
image's letterbox geometry, which would travel as extra tensors between the steps. The Python
model calls ``Predictor.predict`` on everything the dynamic batcher hands it at once, so Triton's
answers are modelserve's, bit for bit, and the batching still happens (inside modelserve, one
engine batch per letterboxed shape). The raw model beside it serves clients that preprocess themselves.

Not run here: Triton itself. The configs are checked against Triton's protobuf schema and the
Python model against a stand-in of ``triton_python_backend_utils`` (``tests/triton/``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._errors import InvalidInputError
from . import _config, _models
from ._source import Source, TritonExportError, resolve

__all__ = ["export_repository", "TritonExportError", "FORMATS", "PIPELINE_SUFFIX"]

#: The formats of the exported model (``model.onnx``, OpenVINO IR, TensorRT ``model.plan``).
FORMATS = ("onnx", "openvino", "plan")
#: The pipeline model's name is the model's name with this suffix.
PIPELINE_SUFFIX = "_pipeline"
_LOAD_KEYS = {"imgsz", "conf", "iou", "max_det", "classes", "agnostic", "multi_label", "task", "layout"}


def export_repository(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    registry: Any = None,
    name: str | None = None,
    version: int | None = None,
    format: str = "onnx",
    batching: Any = None,
    preferred_batch_sizes: Sequence[int] | None = None,
    instances: int | None = None,
    device: str = "cpu",
    pipeline: bool = True,
    pipeline_engine: str = "auto",
    load_options: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write a Triton model repository for ``source`` into ``out_dir`` (see the module doc); returns it.

    ``registry``: the :class:`~modelserve.Registry` to resolve ``source`` in (default: the
    user's, for references). ``name`` / ``version``: the Triton model name and version folder
    (default: the registry name and version, or the file stem and 1). ``format``: ``"onnx"``,
    ``"openvino"`` or ``"plan"`` (a TensorRT plan the registry already holds for ``device``).
    ``batching``: a :class:`~modelserve.Batching` (None: no Triton batching, ``max_batch_size: 0``).
    ``preferred_batch_sizes``: Triton's preferred sizes (default ``[max_batch_size]``).
    ``instances``: model instances (default: ``batching.max_concurrent_batches``, else 1) on
    ``device`` (``cpu``, ``cuda``, ``cuda:N``). ``pipeline``: also write ``<name>_pipeline``, run by
    ``pipeline_engine`` inside Triton, with ``load_options`` (``imgsz``, ``conf``, ``iou``,
    ``max_det``, ``classes``, ``agnostic``, ``multi_label``: its ``ms.load`` defaults; ``task`` and
    ``layout`` for models without Ultralytics metadata). ``force``: write into a
    non-empty ``out_dir``, replacing only the model folders this export writes.
    """
    if format not in FORMATS:
        raise InvalidInputError(f"format must be one of {list(FORMATS)}, got {format!r}")
    if batching is not None and not hasattr(batching, "queue_bound"):
        raise InvalidInputError(f"batching must be a modelserve.Batching or None, got {batching!r}")
    count = instances if instances is not None else (batching.max_concurrent_batches if batching is not None else 1)
    groups = _config.instance_group(count, device)  # checks count and device first
    opts = dict(load_options or {})
    unknown = sorted(set(opts) - _LOAD_KEYS)
    if unknown:
        raise InvalidInputError(f"unknown load option(s) {unknown} for the pipeline (known: {sorted(_LOAD_KEYS)})")
    src = resolve(source, registry, name, version)
    created = not os.path.lexists(out_dir)
    out = _out_dir(Path(out_dir), force)
    try:
        _export(src, out, format, batching, preferred_batch_sizes, groups, device, pipeline, pipeline_engine, opts)
    except BaseException:
        if created:  # leave nothing behind but what was there
            shutil.rmtree(out, ignore_errors=True)
        raise
    return out


def _export(src: Source, out: Path, format: str, batching: Any, preferred_batch_sizes: Sequence[int] | None,
            groups: str, device: str, pipeline: bool, pipeline_engine: str, opts: Mapping[str, Any]) -> None:
    from .._load import load

    # Open it as the pipeline will: a model modelserve cannot load is refused before anything is written.
    predictor = load(str(src.path), **opts)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".modelserve-export-", dir=out))
        try:
            written = [_write_model(src, staging, format, predictor.engine, batching, preferred_batch_sizes,
                                    groups, device)]
            if pipeline:
                written.append(_write_pipeline(src, staging, predictor, batching, preferred_batch_sizes, groups,
                                               device, pipeline_engine, opts))
            for folder in written:
                final = out / folder.name
                if final.is_dir() and not final.is_symlink():
                    shutil.rmtree(final)
                elif final.exists() or final.is_symlink():
                    final.unlink()
                os.replace(folder, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        predictor.close()


def _out_dir(out: Path, force: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise TritonExportError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise TritonExportError(f"{out} is not empty; choose an empty folder or pass force=True (--force) to "
                                "replace the model folders this export writes")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _tensor(spec: Any, batched: bool) -> _config.TensorConfig:
    dims = spec.shape[1:] if batched else spec.shape
    return _config.TensorConfig(spec.name, _config.triton_type(spec.dtype), tuple(-1 if d is None else d for d in dims))


def _comment(src: Source, extra: Sequence[str] = ()) -> list[str]:
    from .._version import __version__

    what = src.ref if src.model_version is None else f"{src.ref} ({src.model_version.digest})"
    return [f"Written by modelserve {__version__} (modelserve export triton) from {what}.", *extra]


def _write_model(src: Source, staging: Path, format: str, engine: Any, batching: Any,
                 preferred: Sequence[int] | None, groups: str, device: str) -> Path:
    folder = staging / src.name / str(src.version)
    folder.mkdir(parents=True)
    if format == "onnx":
        files = _models.write_onnx(src, folder, engine)
    elif format == "openvino":
        files = _models.write_openvino(src, folder)
    else:
        files = _models.write_plan(src, folder, device)
    dynamic = all(t.shape and t.shape[0] is None for t in (*files.inputs, *files.outputs))
    size, queue = _config.batching_fields(batching, preferred, dynamic, files.batch_ceiling)
    notes = list(files.notes)
    if batching is not None and not dynamic:
        notes.append("the model's batch dimension is fixed: Triton cannot batch it (max_batch_size 0)")
    config = _config.Config(
        name=src.name, backend_line=files.backend_line, max_batch_size=size,
        inputs=[_tensor(t, size > 0) for t in files.inputs], outputs=[_tensor(t, size > 0) for t in files.outputs],
        queue=queue, instances=groups, default_model_filename=files.filename, comment=_comment(src, notes))
    (staging / src.name / "config.pbtxt").write_text(_config.render(config), encoding="utf-8")
    return staging / src.name


def _write_pipeline(src: Source, staging: Path, predictor: Any, batching: Any, preferred: Sequence[int] | None,
                    groups: str, device: str, engine: str, opts: Mapping[str, Any]) -> Path:
    import json

    name = src.name + PIPELINE_SUFFIX
    folder = staging / name / str(src.version)
    folder.mkdir(parents=True)
    shutil.copyfile(Path(__file__).with_name("_pipeline_model.py"), folder / "model.py")
    shutil.copyfile(src.path, folder / "model.onnx")
    size, queue = _config.batching_fields(batching, preferred, True)
    batched = size > 0
    T = _config.TensorConfig
    row = (1,) if batched else (-1,)
    per_image = () if batched else (-1,)
    inputs = [T("image", "TYPE_STRING", row), T("conf", "TYPE_FP32", (1,), True), T("iou", "TYPE_FP32", (1,), True)]
    outputs = [T("json", "TYPE_STRING", row)]
    if predictor.task != "classify":
        outputs = [T("boxes", "TYPE_FP32", (*per_image, -1, 4)), T("scores", "TYPE_FP32", (*per_image, -1)),
                   T("class_ids", "TYPE_INT64", (*per_image, -1)), T("counts", "TYPE_INT64", row), *outputs]
    params = {"modelserve_model_file": "model.onnx", "modelserve_engine": engine,
              "modelserve_device": device,  # KIND_CPU instances; KIND_GPU ones use the GPU Triton gives them
              "modelserve_load": json.dumps(dict(opts), sort_keys=True)}
    config = _config.Config(
        name=name, backend_line='backend: "python"', max_batch_size=size, inputs=inputs, outputs=outputs,
        queue=queue, instances=groups, parameters=params, comment=_comment(src, [
            "The whole pipeline (decode, letterbox, inference, NMS) run by modelserve in Triton's Python backend:",
            "its Python environment needs `pip install modelserve[onnxruntime]` (or set the EXECUTION_ENV_PATH",
            "parameter to a packed environment that has it). Answers as `modelserve serve` does for encoded images.",
        ]))
    (staging / name / "config.pbtxt").write_text(_config.render(config), encoding="utf-8")
    return staging / name
