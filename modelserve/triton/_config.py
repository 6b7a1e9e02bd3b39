"""``config.pbtxt`` text: Triton's model configuration (protobuf text format), written by hand.

Only plain text is produced here (no protobuf dependency at export time); the tests parse every
file with Triton's own schema (``tritonclient.grpc.model_config_pb2.ModelConfig``). The mapping
from modelserve's settings (see :func:`batching_fields` and :func:`instance_group`):

* ``Batching.max_batch_size`` -> ``max_batch_size`` (0, no Triton batching, when ``batching`` is
  None or the model's batch dimension is fixed: Triton batches only along a dynamic first dim).
* ``preferred_batch_size: [max_batch_size]``: modelserve's micro-batcher runs a batch as soon as it
  is full or its oldest request has waited ``max_delay_ms``; Triton does the same with the full
  size as its preferred size. Powers of two would make Triton cut batches short on purpose, which
  pays only where some sizes run much faster (TensorRT profiles), so they are an option, not the default.
* ``max_delay_ms`` -> ``max_queue_delay_microseconds``.
* ``queue_bound`` (``max_queue_size`` or its default) and ``timeout_ms`` ->
  ``default_queue_policy { timeout_action: REJECT, default_timeout_microseconds, allow_timeout_override:
  true, max_queue_size }``: a request still queued at its deadline is rejected, as modelserve's
  batcher fails it with ``DeadlineExceededError``; clients may shorten it per request (modelserve's
  ``timeout`` parameter). Triton counts queued *requests* where modelserve counts images, so for
  clients that send several images per request the same bound admits more images.
* ``instances`` (default ``max_concurrent_batches``: batches that may run at once) and ``device`` ->
  ``instance_group [{ count, kind: KIND_CPU | KIND_GPU, gpus }]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .._errors import InvalidInputError

__all__ = ["TensorConfig", "Queue", "triton_type", "batching_fields", "instance_group", "render"]

_TYPES = {
    np.dtype(np.bool_): "TYPE_BOOL", np.dtype(np.uint8): "TYPE_UINT8", np.dtype(np.uint16): "TYPE_UINT16",
    np.dtype(np.uint32): "TYPE_UINT32", np.dtype(np.uint64): "TYPE_UINT64", np.dtype(np.int8): "TYPE_INT8",
    np.dtype(np.int16): "TYPE_INT16", np.dtype(np.int32): "TYPE_INT32", np.dtype(np.int64): "TYPE_INT64",
    np.dtype(np.float16): "TYPE_FP16", np.dtype(np.float32): "TYPE_FP32", np.dtype(np.float64): "TYPE_FP64",
    np.dtype(object): "TYPE_STRING",
}


def triton_type(dtype: object) -> str:
    """Triton's ``data_type`` name of a numpy dtype (``object``: ``TYPE_STRING``, Triton's BYTES)."""
    dt = np.dtype(dtype)  # type: ignore[call-overload]
    if dt not in _TYPES:
        raise InvalidInputError(f"Triton has no data type for numpy {dt}")
    return _TYPES[dt]


@dataclass(frozen=True)
class TensorConfig:
    """One ``input`` or ``output`` entry: ``dims`` without the batch dim when batching (-1: dynamic)."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class Queue:
    """The ``dynamic_batching`` block."""

    preferred: tuple[int, ...]
    delay_us: int
    timeout_us: int  # 0: no default deadline
    max_queue_size: int


@dataclass(frozen=True)
class Config:
    """One model's configuration, as :func:`render` writes it."""

    name: str
    backend_line: str  # 'backend: "onnxruntime"' or 'platform: "tensorrt_plan"'
    max_batch_size: int
    inputs: Sequence[TensorConfig]
    outputs: Sequence[TensorConfig]
    queue: Queue | None
    instances: str
    default_model_filename: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    comment: Sequence[str] = ()


def batching_fields(batching: object | None, preferred: Sequence[int] | None, batch_dim_dynamic: bool,
                    ceiling: int | None = None) -> tuple[int, Queue | None]:
    """``(max_batch_size, dynamic_batching block or None)`` for a :class:`~modelserve.Batching`
    (``None``: no batching). ``ceiling``: the most the model itself takes (a TensorRT profile's
    top), which ``max_batch_size`` never exceeds."""
    if batching is None or not batch_dim_dynamic:
        return 0, None
    size = int(batching.max_batch_size)  # type: ignore[attr-defined]
    if ceiling is not None:
        size = min(size, int(ceiling))
    sizes = tuple(sorted({int(p) for p in preferred})) if preferred else (size,)
    bad = [p for p in sizes if not 1 <= p <= size]
    if bad:
        raise InvalidInputError(f"preferred batch sizes must be in 1..max_batch_size={size}, got {list(sizes)}")
    if getattr(batching, "on_full", "reject") != "reject":
        raise InvalidInputError("Triton rejects requests when its queue is full; it cannot block like "
                                "on_full='block': export with on_full='reject'")
    timeout_ms = batching.timeout_ms  # type: ignore[attr-defined]
    return size, Queue(
        preferred=sizes,
        delay_us=int(round(batching.max_delay_ms * 1000)),  # type: ignore[attr-defined]
        timeout_us=0 if timeout_ms is None else max(1, int(round(timeout_ms * 1000))),
        max_queue_size=int(batching.queue_bound),  # type: ignore[attr-defined]
    )


def instance_group(count: int, device: str) -> str:
    """The ``instance_group`` text for ``count`` instances on ``device`` (``cpu``, ``cuda``, ``cuda:N``)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidInputError(f"instances must be an integer >= 1, got {count!r}")
    dev = device.strip().lower() if isinstance(device, str) else device
    if dev == "cpu":
        return f"[ {{ count: {count} kind: KIND_CPU }} ]"
    if dev in ("cuda", "gpu"):
        return f"[ {{ count: {count} kind: KIND_GPU }} ]"
    kind, sep, index = str(dev).partition(":")
    if kind in ("cuda", "gpu") and sep and index.isdigit():
        return f"[ {{ count: {count} kind: KIND_GPU gpus: [ {int(index)} ] }} ]"
    raise InvalidInputError(f"device must be 'cpu', 'cuda' or 'cuda:N' for a Triton export, got {device!r}")


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a protobuf text-format string: double quotes, backslash escapes


def _tensors(kind: str, tensors: Sequence[TensorConfig]) -> list[str]:
    lines = [f"{kind} ["]
    for n, t in enumerate(tensors):
        dims = ", ".join(str(d) for d in t.dims)
        opt = " optional: true" if t.optional else ""
        comma = "," if n < len(tensors) - 1 else ""
        lines.append(f"  {{ name: {_quote(t.name)} data_type: {t.data_type} dims: [ {dims} ]{opt} }}{comma}")
    lines.append("]")
    return lines


def render(config: Config) -> str:
    """The ``config.pbtxt`` text of one model."""
    lines = [f"# {c}" for c in config.comment]
    lines += [f"name: {_quote(config.name)}", config.backend_line, f"max_batch_size: {config.max_batch_size}"]
    if config.default_model_filename:
        lines.append(f"default_model_filename: {_quote(config.default_model_filename)}")
    lines += _tensors("input", config.inputs)
    lines += _tensors("output", config.outputs)
    q = config.queue
    if q is not None:
        lines += [
            "dynamic_batching {",
            f"  preferred_batch_size: [ {', '.join(str(p) for p in q.preferred)} ]",
            f"  max_queue_delay_microseconds: {q.delay_us}",
            "  default_queue_policy {",
            "    timeout_action: REJECT",
            f"    default_timeout_microseconds: {q.timeout_us}",
            "    allow_timeout_override: true",
            f"    max_queue_size: {q.max_queue_size}",
            "  }",
            "}",
        ]
    lines.append(f"instance_group {config.instances}")
    for key, value in config.parameters.items():
        lines.append(f"parameters {{ key: {_quote(key)} value: {{ string_value: {_quote(value)} }} }}")
    return "\n".join(lines) + "\n"
