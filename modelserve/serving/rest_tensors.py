"""KServe v2 tensors over HTTP: the JSON form and Triton's binary-data extension, both ways.

A request body is a JSON header, optionally followed by binary tensor data; the header's length is
the ``Inference-Header-Content-Length`` HTTP header. An input whose ``parameters`` hold
``binary_data_size`` takes that many bytes of the binary part, in input order. ``BYTES`` elements in
the binary part are each a 4-byte little-endian length and the bytes; in JSON they are strings, and
encoded images there are base64. An output goes back binary when its request entry says
``"parameters": {"binary_data": true}``, or, for outputs not listed, when the request parameter
``binary_data_output`` is true.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from typing import Any, Mapping, Sequence

import numpy as np

from .._errors import InvalidInputError
from .core import DATATYPES, Tensor, bytes_array, split_bytes

__all__ = ["Request", "decode_request", "encode_response", "HEADER_LENGTH"]

HEADER_LENGTH = "Inference-Header-Content-Length"
_END = object()


class Request:
    """A decoded infer request: input tensors, parameters, requested outputs (name -> binary?)."""

    def __init__(self, inputs: list[Tensor], parameters: dict[str, Any], outputs: dict[str, bool | None],
                 request_id: str | None) -> None:
        self.inputs = inputs
        self.parameters = parameters
        self.outputs = outputs
        self.id = request_id


def _json_header(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    view = memoryview(body)
    if header_length is None:
        end = len(body)
    else:
        try:
            end = int(header_length)
        except ValueError:
            raise InvalidInputError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 <= end <= len(body):
            raise InvalidInputError(f"{HEADER_LENGTH} is {end}, but the body has {len(body)} bytes")
    try:
        header = json.loads(bytes(view[:end]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"the request's JSON header is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInputError("the request's JSON header is nested too deeply") from None
    if not isinstance(header, dict):
        raise InvalidInputError("the request's JSON header must be an object")
    return header, view[end:]


def _shape(entry: Mapping[str, Any], name: str) -> list[int]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise InvalidInputError(f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    return shape


def _binary_input(chunk: memoryview, datatype: str, shape: list[int], name: str) -> np.ndarray:
    if datatype == "BYTES":
        return bytes_array(split_bytes(chunk, name, "binary data"), shape, name)
    dtype = DATATYPES[datatype]
    if len(chunk) != math.prod(shape) * dtype.itemsize:
        raise InvalidInputError(f"input {name!r}: {datatype} shape {shape} needs {math.prod(shape) * dtype.itemsize} "
                                f"bytes, got {len(chunk)}")
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)


def _flatten(data: Any) -> list[Any]:
    """The elements of nested lists in row-major order (iterative: any depth JSON allowed)."""
    out: list[Any] = []
    stack = [iter([data])]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            out.append(item)
    return out


def _json_input(data: Any, datatype: str, shape: list[int], name: str) -> np.ndarray:
    flat = _flatten(data)
    if datatype == "BYTES":
        try:
            items = [base64.b64decode(s, validate=True) for s in flat]
        except (binascii.Error, TypeError, ValueError):
            raise InvalidInputError(f"input {name!r}: BYTES data in JSON must be base64 strings "
                                    f"(or send it binary)") from None
        return bytes_array(items, shape, name)
    if len(flat) != math.prod(shape):
        raise InvalidInputError(f"input {name!r}: shape {shape} needs {math.prod(shape)} elements, got {len(flat)}")
    if not all(isinstance(x, (int, float)) for x in flat):
        raise InvalidInputError(f"input {name!r}: {datatype} data must be numbers")
    try:
        return np.array(flat, dtype=DATATYPES[datatype]).reshape(shape)
    except (OverflowError, ValueError) as exc:
        raise InvalidInputError(f"input {name!r}: {exc}") from None


def _input(entry: Any, rest: memoryview, pos: int) -> tuple[Tensor, int]:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InvalidInputError("every input must be an object with a name")
    name = entry["name"]
    datatype = entry.get("datatype")
    if datatype not in DATATYPES:
        raise InvalidInputError(f"input {name!r}: unknown datatype {datatype!r} (one of {sorted(DATATYPES)})")
    shape = _shape(entry, name)
    params = entry.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or pos + size > len(rest):
            raise InvalidInputError(f"input {name!r}: binary_data_size {size!r} overruns the binary data")
        return Tensor(name, datatype, _binary_input(rest[pos : pos + size], datatype, shape, name)), pos + size
    if "data" not in entry:
        raise InvalidInputError(f"input {name!r} has neither data nor binary_data_size")
    return Tensor(name, datatype, _json_input(entry["data"], datatype, shape, name)), pos


def decode_request(body: bytes, header_length: str | None) -> Request:
    """Parse an infer request body (JSON, or JSON + binary data)."""
    header, rest = _json_header(body, header_length)
    entries = header.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise InvalidInputError("the request must have a non-empty list of inputs")
    inputs, pos = [], 0
    for entry in entries:
        tensor, pos = _input(entry, rest, pos)
        inputs.append(tensor)
    if pos != len(rest):
        raise InvalidInputError(f"the request has {len(rest) - pos} bytes of binary data no input claims")
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInputError("the request's parameters must be an object")
    outputs: dict[str, bool | None] = {}
    for entry in header.get("outputs") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidInputError("every requested output must be an object with a name")
        params = entry.get("parameters") or {}
        outputs[entry["name"]] = params.get("binary_data") if isinstance(params, dict) else None
    request_id = header.get("id")
    return Request(inputs, parameters, outputs, request_id if isinstance(request_id, str) else None)


def _to_bytes(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(struct.pack("<I", len(x)) + x for x in tensor.data.reshape(-1))
    return np.ascontiguousarray(tensor.data, dtype=tensor.data.dtype.newbyteorder("<")).tobytes()


def _to_json(tensor: Tensor) -> list[Any]:
    flat = tensor.data.reshape(-1)
    if tensor.datatype == "BYTES":
        return [x.decode("utf-8", "replace") for x in flat]
    if tensor.data.dtype.kind == "f" and not np.isfinite(flat).all():
        return [x if math.isfinite(x) else None for x in flat.tolist()]
    return flat.tolist()  # type: ignore[no-any-return]


def encode_response(model: str, version: str, outputs: Sequence[Tensor], request: Request) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the length of its JSON header."""
    default = bool(request.parameters.get("binary_data_output", False))
    entries, blobs = [], []
    for tensor in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        binary = request.outputs.get(tensor.name)
        if default if binary is None else binary:
            blob = _to_bytes(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _to_json(tensor)
        entries.append(entry)
    head: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": entries}
    if request.id is not None:
        head["id"] = request.id
    text = json.dumps(head, allow_nan=False).encode()
    if not blobs:
        return text, None
    return text + b"".join(blobs), len(text)
