"""The plan cache: built TensorRT plans kept on disk, keyed by everything that makes them valid.

A plan is stored as ``<key digest>.plan`` (a plain TensorRT plan, no header) plus
``<key digest>.json``, the sidecar: the cache key, the ONNX metadata, the tensors and the profile.
The key (:func:`cache_key`) is the ONNX file's sha256, the TensorRT version, the GPU's name and
compute capability, the precision and the builder flags behind it, the profile and the number of
its copies, so a plan is reused only where it is valid. Both files are written atomically
(:func:`~modelserve._files.atomic_write`), sidecar last, so a sidecar means a complete plan.

Prebuilt files: :func:`split_ultralytics_engine` separates the JSON header Ultralytics' TensorRT
export writes in front of its plans, and :func:`as_metadata` turns it into ONNX-style metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import Any, Mapping, Sequence

from ..._checks import positive_int
from ..._files import atomic_write
from .profiles import Shape

__all__ = ["cache_key", "builder_precision", "write_plan", "find_plan", "split_ultralytics_engine", "as_metadata"]

SIDECAR_FORMAT = "modelserve-tensorrt-plan/1"


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
        "num_profiles": positive_int(num_profiles, "num_profiles"),
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


def write_plan(cache_dir: str, key: Mapping[str, Any], plan: bytes, sidecar: Mapping[str, Any]) -> str:
    """Store ``plan`` as ``<digest>.plan`` with ``<digest>.json`` atomically; returns the plan path.

    The sidecar holds ``format``, ``key`` and ``key_digest`` plus whatever ``sidecar`` adds. It is
    written after the plan, so its presence means the plan is complete.
    """
    os.makedirs(cache_dir, exist_ok=True)
    digest = key_digest(key)
    plan_path = os.path.join(cache_dir, digest + ".plan")
    meta = {**dict(sidecar), "format": SIDECAR_FORMAT, "key": dict(key), "key_digest": digest}
    atomic_write(plan_path, bytes(plan))
    atomic_write(os.path.join(cache_dir, digest + ".json"), json.dumps(meta, indent=2, sort_keys=True).encode())
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
    if not isinstance(sidecar, dict):
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


def as_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    """JSON metadata (values of any type) as ONNX-style strings ``parse_metadata`` understands."""
    out: dict[str, str] = {}
    for k, v in meta.items():
        if isinstance(v, dict):
            v = {int(a) if str(a).isascii() and str(a).isdigit() else a: b for a, b in v.items()}
        out[str(k)] = v if isinstance(v, str) else repr(v)
    return out
