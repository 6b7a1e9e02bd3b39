"""Model metadata: what Ultralytics exports write into ONNX ``metadata_props``, parsed safely.

Ultralytics stores ``names`` (a dict literal), ``stride``, ``imgsz`` (a list literal), ``task``,
``batch`` and, for NMS-free models, ``end2end`` as strings. They are parsed with
``ast.literal_eval`` (never ``eval``); a value that does not parse, or parses to the wrong shape,
raises :class:`ModelLoadError` naming the key, unless the caller supplies that value itself.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ._checks import MAX_IMGSZ, is_int, pair
from ._engine import Engine, TensorSpec
from ._errors import InvalidInputError, ModelLoadError

__all__ = ["ModelInfo", "parse_metadata", "describe_model"]


@dataclass(frozen=True)
class ModelInfo:
    """What the Predictor needs to know about a detector, from metadata and user overrides."""

    names: Mapping[int, str]
    stride: int = 32
    imgsz: tuple[int, int] | None = None
    task: str = "detect"
    batch: int | None = None
    end2end: bool = False
    raw: Mapping[str, str] = field(default_factory=dict)


def _literal(key: str, value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ModelLoadError(f"model metadata {key!r} is not a Python literal: {value[:80]!r}") from exc


def _parse_names(value: Any, source: str) -> dict[int, str]:
    if isinstance(value, str) and source == "metadata":
        value = _literal("names", value)
    if isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if not isinstance(value, Mapping) or not all(is_int(k) and k >= 0 for k in value):
        raise (ModelLoadError if source == "metadata" else InvalidInputError)(
            f"names from {source} must be a dict of int -> str or a list of str, got {str(value)[:80]!r}"
        )
    return {int(k): str(v) for k, v in value.items()}


def _parse_imgsz(value: Any, source: str) -> tuple[int, int]:
    """``_checks.pair``'s rules (an int or 1-2 ints, each in 1..MAX_IMGSZ); from metadata a refusal
    is the model's fault (:class:`ModelLoadError`)."""
    if isinstance(value, str) and source == "metadata":
        value = _literal("imgsz", value)
    try:
        return pair(value, f"imgsz from {source}")
    except InvalidInputError as exc:
        if source != "metadata":
            raise
        raise ModelLoadError(str(exc)) from None


def _parse_int(key: str, value: str) -> int:
    text = str(value).strip()
    if len(text) > 20:  # int() of a 100,000-digit string is slow and no stride or batch is that long
        raise ModelLoadError(f"model metadata {key!r} must be an integer, got {text[:40]!r}...")
    try:
        return int(text)
    except ValueError as exc:
        raise ModelLoadError(f"model metadata {key!r} must be an integer, got {value!r}") from exc


def parse_metadata(
    meta: Mapping[str, str],
    *,
    names: Mapping[int, str] | Sequence[str] | None = None,
    imgsz: int | Sequence[int] | None = None,
    num_classes: int | None = None,
) -> ModelInfo:
    """Build a :class:`ModelInfo` from raw metadata, with user overrides taking precedence.

    Without names from either source, classes are named by their index (``"0"``, ``"1"``, ...)
    when ``num_classes`` is known.
    """
    if names is not None:
        parsed_names = _parse_names(names, "the names= argument")
    elif "names" in meta:
        parsed_names = _parse_names(meta["names"], "metadata")
    else:
        parsed_names = {i: str(i) for i in range(num_classes or 0)}
    size = _parse_imgsz(imgsz, "the imgsz= argument") if imgsz is not None else None
    if size is None and "imgsz" in meta:
        size = _parse_imgsz(meta["imgsz"], "metadata")
    stride = _parse_int("stride", meta["stride"]) if "stride" in meta else 32
    if not 1 <= stride <= MAX_IMGSZ:
        raise ModelLoadError(f"model metadata 'stride' must be in 1..{MAX_IMGSZ}, got {stride}")
    batch = _parse_int("batch", meta["batch"]) if "batch" in meta else None
    end2end = False
    if "end2end" in meta:
        end2end = bool(_literal("end2end", meta["end2end"]))
    if "args" in meta:
        args = _literal("args", meta["args"])
        if isinstance(args, Mapping) and args.get("nms"):
            end2end = True
    return ModelInfo(
        names=parsed_names,
        stride=stride,
        imgsz=size,
        task=str(meta.get("task", "detect")),
        batch=batch,
        end2end=end2end,
        raw=dict(meta),
    )


def _spec_dict(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "shape": list(spec.shape), "dtype": str(spec.dtype)}


def describe_engine(engine: Engine) -> dict[str, Any]:
    """JSON-serialisable description of a loaded model: IO specs and parsed Ultralytics metadata."""
    info: dict[str, Any] = {
        "inputs": [_spec_dict(s) for s in engine.inputs],
        "outputs": [_spec_dict(s) for s in engine.outputs],
        "metadata": dict(engine.metadata),
    }
    try:
        parsed = parse_metadata(engine.metadata)
    except ModelLoadError:
        return info
    info.update(
        names={str(k): v for k, v in parsed.names.items()},
        imgsz=list(parsed.imgsz) if parsed.imgsz else None,
        stride=parsed.stride,
        task=parsed.task,
        end2end=parsed.end2end,
    )
    return info


def describe_model(path: str, *, engine: str = "auto") -> dict[str, Any]:
    """Load ``path`` on the CPU and describe it (see :func:`describe_engine`)."""
    from ._engine_catalog import open_engine

    with open_engine(path, engine=engine, device="cpu") as eng:
        return describe_engine(eng)
