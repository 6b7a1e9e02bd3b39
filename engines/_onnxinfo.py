"""What an ONNX file declares about itself, read without the ``onnx`` package.

Engines other than ONNX Runtime (TensorRT, OpenVINO) do not carry an ONNX model's
``metadata_props`` (Ultralytics' names, stride, imgsz), and a GPU machine need not have ``onnx``
installed, so this module decodes just enough of the protobuf wire format: the graph's inputs and
outputs (name, element type, dimensions) and the metadata. Initializers and nodes are skipped by
length, never decoded, so a large model costs one read and one pass over its bytes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .._errors import ModelLoadError

__all__ = ["OnnxInfo", "OnnxTensor", "read_onnx_info", "sha256_file"]

# TensorProto.DataType -> numpy dtype
_ELEM_TYPES = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
}


@dataclass(frozen=True)
class OnnxTensor:
    """One graph input or output: ``dims`` holds an int, or a str (named dynamic dim), or None."""

    name: str
    dtype: np.dtype
    dims: tuple[int | str | None, ...]

    @property
    def shape(self) -> tuple[int | None, ...]:
        """Dimensions with every dynamic one as ``None`` (the :class:`TensorSpec` convention)."""
        return tuple(d if isinstance(d, int) and d > 0 else None for d in self.dims)


@dataclass(frozen=True)
class OnnxInfo:
    inputs: tuple[OnnxTensor, ...]
    outputs: tuple[OnnxTensor, ...]
    metadata: dict[str, str]


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ModelLoadError("truncated protobuf varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ModelLoadError("malformed protobuf varint")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field number, wire type, value)``; length-delimited values are sub-views."""
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ModelLoadError("truncated protobuf field")
            yield field, wire, buf[pos : pos + length]
            pos += length
        else:
            raise ModelLoadError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ModelLoadError("truncated protobuf field")


def _text(value: int | memoryview) -> str:
    if not isinstance(value, memoryview):
        raise ModelLoadError("expected a string field in the ONNX file")
    return bytes(value).decode("utf-8", errors="replace")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _value_info(buf: memoryview) -> OnnxTensor:
    name, elem, dims = "", 1, []  # type: str, int, list[int | str | None]
    for f, _, v in _fields(buf):
        if f == 1:
            name = _text(v)
        elif f == 2 and isinstance(v, memoryview):  # TypeProto
            for tf, _, tv in _fields(v):
                if tf != 1 or not isinstance(tv, memoryview):  # tensor_type only
                    continue
                for sf, _, sv in _fields(tv):
                    if sf == 1 and isinstance(sv, int):
                        elem = sv
                    elif sf == 2 and isinstance(sv, memoryview):  # TensorShapeProto
                        for df, _, dv in _fields(sv):
                            if df != 1 or not isinstance(dv, memoryview):
                                continue
                            dim: int | str | None = None
                            for xf, _, xv in _fields(dv):
                                if xf == 1 and isinstance(xv, int):
                                    dim = _signed(xv)
                                elif xf == 2:
                                    dim = _text(xv)
                            dims.append(dim)
    return OnnxTensor(name, np.dtype(_ELEM_TYPES.get(elem, np.float32)), tuple(dims))


def _parse(buf: memoryview) -> OnnxInfo:
    metadata: dict[str, str] = {}
    inputs: list[OnnxTensor] = []
    outputs: list[OnnxTensor] = []
    initializers: set[str] = set()
    saw_graph = False
    for field, _, value in _fields(buf):
        if field == 14 and isinstance(value, memoryview):  # metadata_props
            key = val = ""
            for f, _, v in _fields(value):
                if f == 1:
                    key = _text(v)
                elif f == 2:
                    val = _text(v)
            metadata[key] = val
        elif field == 7 and isinstance(value, memoryview):  # graph
            saw_graph = True
            for f, _, v in _fields(value):
                if not isinstance(v, memoryview):
                    continue
                if f == 11:
                    inputs.append(_value_info(v))
                elif f == 12:
                    outputs.append(_value_info(v))
                elif f == 5:  # initializer: only its name (TensorProto field 8)
                    for tf, _, tv in _fields(v):
                        if tf == 8:
                            initializers.add(_text(tv))
    if not saw_graph:
        raise ModelLoadError("not an ONNX model: no graph")
    real_inputs = tuple(t for t in inputs if t.name not in initializers)
    return OnnxInfo(real_inputs, tuple(outputs), metadata)


def read_onnx_info(path: str | os.PathLike[str]) -> OnnxInfo:
    """Inputs, outputs and ``metadata_props`` of the ONNX file at ``path``.

    Raises :class:`ModelLoadError` when the file is missing or is not an ONNX protobuf.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc}") from exc
    if not data:
        raise ModelLoadError(f"{path} is empty, not an ONNX model")
    try:
        return _parse(memoryview(data))
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path} is not a readable ONNX model: {exc}") from None


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(os.fspath(path), "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
