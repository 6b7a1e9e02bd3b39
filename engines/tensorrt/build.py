"""Getting a plan: building one from an ONNX file (or taking it from the plan cache), or reading
a prebuilt ``.engine``/``.plan`` with its metadata.

:func:`onnx_build` turns a model and the engine options into an :class:`OnnxBuild`: the
optimisation profile, the precision, the cache key and the sidecar, everything that decides the
plan. :func:`build_plan` runs TensorRT's builder for it (strict FP32 unless ``fp16``, one copy of
the profile per execution context, the timing cache from ``cache_dir``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

from ..._checks import positive_int
from ..._errors import InvalidInputError, ModelLoadError
from .._onnxinfo import read_onnx_info, sha256_file
from .cuda import attach_timing_cache, log, read_timing_cache, save_timing_cache, timing_cache_path
from .plan_cache import as_metadata, builder_precision, cache_key, find_plan, split_ultralytics_engine
from .profiles import DEFAULT_MAX_BATCH, Profile, check_profile, profile_shapes

__all__ = ["OnnxBuild", "onnx_build", "cached_plan", "build_plan", "read_prebuilt"]


@dataclass(frozen=True)
class OnnxBuild:
    """Everything that decides the plan built from one ONNX file."""

    path: str
    metadata: dict[str, str]
    sidecar: dict[str, Any]
    profile: Profile
    num_profiles: int
    fp16: bool
    flags: tuple[str, ...]
    key: dict[str, Any]
    workspace: Any
    cache_dir: str | None


def onnx_build(
    path: str, options: Mapping[str, Any], num_contexts: int, *,
    tensorrt_version: str, gpu_name: str, compute_capability: tuple[int, ...],
) -> OnnxBuild:
    """The build of ``path`` for ``options`` (the engine options: ``profile`` or ``imgsz``,
    ``min_imgsz``, ``max_batch``, ``opt_batch``; ``fp16``, ``workspace``, ``cache_dir``) on this
    TensorRT and GPU. Dynamic inputs get one profile per execution context; static ones one."""
    info = read_onnx_info(path)
    metadata = dict(info.metadata)
    if options.get("profile") is not None:
        profile = check_profile(options["profile"], info.inputs)
    else:
        from ..._metadata import parse_metadata

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
        tensorrt_version=tensorrt_version,
        gpu_name=gpu_name,
        compute_capability=(compute_capability[0], compute_capability[1]),
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
    return OnnxBuild(
        path=path, metadata=metadata, sidecar=sidecar, profile=profile, num_profiles=num_profiles, fp16=fp16,
        flags=flags, key=key, workspace=options.get("workspace"),
        cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
    )


def cached_plan(spec: OnnxBuild) -> tuple[str, bytes | None, dict[str, str]] | None:
    """``(plan path, plan bytes, metadata)`` from the cache for ``spec``; the bytes are None when
    the plan is listed but cannot be read (it is then rebuilt over). None on a cache miss."""
    if spec.cache_dir is None:
        return None
    hit = find_plan(spec.cache_dir, spec.key)
    if hit is None:
        return None
    plan_path, sidecar = hit
    try:
        with open(plan_path, "rb") as fh:
            plan = fh.read()
    except OSError as exc:
        log.warning("cannot read cached tensorrt plan %s (%s); rebuilding it", plan_path, exc)
        return plan_path, None, spec.metadata
    return plan_path, plan, dict(sidecar.get("metadata") or spec.metadata)


def build_plan(trt: Any, logger: Any, spec: OnnxBuild, gpu_name: str, compute_capability: tuple[int, ...]) -> bytes:
    """Parse ``spec.path`` and build its serialised plan (raises :class:`ModelLoadError` when
    TensorRT cannot parse or build it). With ``spec.cache_dir`` the builder starts from the stored
    timing cache and saves the updated one."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(spec.path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(f"tensorrt cannot parse {spec.path!r}: {errors}")
    config = builder.create_builder_config()
    if spec.workspace is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, positive_int(spec.workspace, "workspace"))
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
        timing_path = timing_cache_path(spec.cache_dir, trt.__version__, gpu_name, compute_capability)
    blob = read_timing_cache(timing_path) if timing_path else b""
    cache_usable = attach_timing_cache(config, blob, timing_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelLoadError(f"tensorrt could not build an engine for {spec.path!r} (see TensorRT's log above)")
    if timing_path and cache_usable:
        save_timing_cache(config, timing_path)
    return bytes(serialized)


def read_prebuilt(path: str) -> tuple[bytes, dict[str, str]]:
    """``(plan, metadata)`` of a prebuilt ``.engine``/``.plan``: the metadata from the sidecar
    ``<file stem>.json`` when there is one, else from an Ultralytics header, else empty."""
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
        if not isinstance(side, dict):
            raise ModelLoadError(f"sidecar {sidecar_path} must hold a JSON object, got {type(side).__name__}")
        metadata = dict(side.get("metadata") or {})
    elif header is not None:
        metadata = as_metadata(header)
    return plan, metadata
