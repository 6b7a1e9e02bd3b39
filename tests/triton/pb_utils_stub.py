"""A stand-in for ``triton_python_backend_utils``, the module Triton's Python backend gives a model.

Only the documented calls the exported ``model.py`` uses, with the documented behaviour (Triton's
``python_backend`` README): ``Tensor(name, array)`` with ``name()`` / ``as_numpy()``,
``get_input_tensor_by_name`` (None for an absent optional input), ``InferenceResponse(output_tensors,
error=None)``, ``TritonError(message)``, ``get_output_config_by_name(model_config, name)``,
``triton_string_to_numpy``; plus :class:`Request`, an incoming request as the backend hands it
(``inputs()`` and ``parameters()``, a JSON string). Triton itself is not run in these tests.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any

import numpy as np

_NUMPY = {
    "TYPE_BOOL": np.bool_, "TYPE_UINT8": np.uint8, "TYPE_UINT16": np.uint16, "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64, "TYPE_INT8": np.int8, "TYPE_INT16": np.int16, "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64, "TYPE_FP16": np.float16, "TYPE_FP32": np.float32, "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        if not isinstance(array, np.ndarray):
            raise TypeError(f"pb_utils.Tensor takes a numpy array, got {type(array).__name__}")
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        self._tensors, self._error = list(output_tensors), error

    def output_tensors(self) -> list[Tensor]:
        return self._tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class Request:
    """An incoming inference request: named input tensors and the request's parameters."""

    def __init__(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any] | None = None) -> None:
        self._inputs = [Tensor(k, v) for k, v in inputs.items()]
        self._parameters = json.dumps(parameters or {})

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def parameters(self) -> str:
        return self._parameters


def get_input_tensor_by_name(request: Request, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((o for o in model_config.get("output", []) if o["name"] == name), None)


def triton_string_to_numpy(type_string: str) -> type:
    return _NUMPY[type_string]


def install() -> types.ModuleType:
    """Make ``import triton_python_backend_utils`` give this module (the test undoes it)."""
    module = sys.modules[__name__]
    sys.modules["triton_python_backend_utils"] = module
    return module
