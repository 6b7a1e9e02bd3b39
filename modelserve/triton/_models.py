"""The model files of a Triton version folder, one function per format, and the tensors they declare.

* ``onnx``: the registry's bytes, copied unchanged (``model.onnx``, ONNX Runtime backend).
* ``openvino``: ``model.xml`` + ``model.bin`` converted with the ``openvino`` package, FP32 weights
  kept (``compress_to_fp16=False``), so the IR answers as the ONNX does (OpenVINO backend).
* ``plan``: a TensorRT plan modelserve's TensorRT engine already built and cached in the registry
  for this version and device (``ms.load("det@prod", device="cuda", engine="tensorrt")`` on the GPU
  host builds it). Plans are tied to a GPU model and TensorRT version, so none is built here.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._errors import EngineUnavailableError
from ._source import Source

__all__ = ["ModelFiles", "write_onnx", "write_openvino", "write_plan", "Spec"]

_PLAN_FORMAT = "modelserve-tensorrt-plan/1"  # the sidecar format of modelserve's TensorRT plan cache


@dataclass(frozen=True)
class Spec:
    """One tensor of the exported model: name, shape (None: dynamic), numpy dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class ModelFiles:
    """What a format wrote: the backend line, the file Triton opens, the tensors, and notes."""

    backend_line: str
    filename: str
    inputs: Sequence[Spec]
    outputs: Sequence[Spec]
    batch_ceiling: int | None = None
    notes: tuple[str, ...] = ()


def _specs(tensors: Sequence[Any]) -> list[Spec]:
    return [Spec(t.name, tuple(t.shape), np.dtype(t.dtype)) for t in tensors]


def write_onnx(src: Source, folder: Path, engine: Any) -> ModelFiles:
    """Copy the ONNX file unchanged; ``engine``: the model opened with modelserve (its tensors)."""
    shutil.copyfile(src.path, folder / "model.onnx")
    return ModelFiles('backend: "onnxruntime"', "model.onnx", _specs(engine.inputs), _specs(engine.outputs))


def write_openvino(src: Source, folder: Path) -> ModelFiles:
    """Convert to OpenVINO IR (FP32) and read its tensors back with modelserve's OpenVINO engine."""
    try:
        import openvino as ov
    except ImportError:
        raise EngineUnavailableError("format='openvino' converts with the openvino package: "
                                     "pip install modelserve[openvino]") from None
    from .._engine_catalog import open_engine

    xml = folder / "model.xml"
    ov.save_model(ov.convert_model(str(src.path)), str(xml), compress_to_fp16=False)
    with open_engine(str(xml), engine="openvino", device="cpu") as eng:
        return ModelFiles('backend: "openvino"', "model.xml", _specs(eng.inputs), _specs(eng.outputs),
                          notes=("OpenVINO IR converted from the ONNX model with FP32 weights",))


def _dims(dims: Sequence[Any]) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None for d in dims)


def _cached_plans(src: Source, device: str) -> list[tuple[Path, dict[str, Any]]]:
    """(plan, sidecar) of every complete plan modelserve's TensorRT engine cached for this version on ``device``."""
    if src.model_version is None:
        return []
    from .._registry import Registry

    reg = Registry(src.registry.root)  # writable: engine_cache_dir is None for a read-only registry
    cache = reg.engine_cache_dir(src.model_version.digest, {"engine": "tensorrt", "device": device})
    found = []
    for sidecar_path in sorted(cache.glob("*.json")) if cache is not None else []:
        plan = sidecar_path.with_suffix(".plan")
        try:
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(sidecar, dict) and sidecar.get("format") == _PLAN_FORMAT and plan.is_file():
            found.append((plan, sidecar))
    found.sort(key=lambda p: p[0].stat().st_mtime_ns)
    return found


def write_plan(src: Source, folder: Path, device: str) -> ModelFiles:
    """Copy the newest TensorRT plan the registry holds for this version on ``device``, else refuse."""
    if not device.startswith("cuda"):
        raise EngineUnavailableError(f"format='plan' runs on Triton's TensorRT backend, on a GPU: give "
                                     f"device='cuda' or 'cuda:N' (the device the plan was built for), not {device!r}")
    plans = _cached_plans(src, device)
    if not plans:
        raise EngineUnavailableError(
            f"{src.ref}: the registry holds no TensorRT plan built for it on {device!r}, and none can be built "
            f"here (a plan is specific to a GPU model and TensorRT version). On the GPU host run "
            f"ms.load({src.ref!r}, device={device!r}, engine='tensorrt') once, then export again")
    plan, sidecar = plans[-1]
    shutil.copyfile(plan, folder / "model.plan")
    inputs = [Spec(t["name"], _dims(t["dims"]), np.dtype(t["dtype"])) for t in sidecar.get("inputs", [])]
    outputs = [Spec(t["name"], _dims(t["dims"]), np.dtype(t["dtype"])) for t in sidecar.get("outputs", [])]
    key = sidecar.get("key") or {}
    tops = [int(shapes[2][0]) for shapes in (key.get("profile") or {}).values() if shapes and shapes[2]]
    notes = (f"TensorRT plan {plan.name}: TensorRT {key.get('tensorrt')}, GPU {key.get('gpu')}, "
             f"precision {key.get('precision')}",)
    return ModelFiles('platform: "tensorrt_plan"', "model.plan", inputs, outputs,
                      batch_ceiling=min(tops) if tops else None, notes=notes)
