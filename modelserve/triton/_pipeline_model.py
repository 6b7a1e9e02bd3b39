"""Triton Python-backend model written by ``modelserve export triton``: encoded images in, detections out.

This file is copied into the repository as ``<name>_pipeline/<version>/model.py``; modelserve never
imports it. Triton's Python backend runs it with ``modelserve`` installed in its Python
environment (``pip install modelserve[onnxruntime]``, or a packed environment named by the
config's ``EXECUTION_ENV_PATH`` parameter). It loads the model file beside it with ``ms.load``, so
decoding, letterbox, inference and NMS are modelserve's own kernels and Triton answers with the
same detections as ``modelserve serve`` and ``Predictor.predict``.

Inputs: ``image`` (BYTES, one encoded image per batch row), optional ``conf`` / ``iou`` (FP32).
Request parameters (as ``modelserve serve`` takes them): ``conf``, ``iou``, ``max_det``,
``classes`` (a list or ``"0,2"``), ``agnostic``; an input tensor wins over a parameter of the same name.
Outputs, per request of ``k`` images (padded to the most detections ``n`` of its images, as
``modelserve serve``): ``boxes`` FP32 ``[k, n, 4]`` (xyxy, original pixels), ``scores`` FP32
``[k, n]``, ``class_ids`` INT64 ``[k, n]`` (``-1`` in padding), ``counts`` INT64 ``[k, 1]``, ``json``
BYTES ``[k, 1]`` (each image's ``Detections.to_json()``); without batching (``max_batch_size: 0``)
``counts`` and ``json`` are ``[k]``. Classification models give ``json`` only.

Requests Triton's dynamic batcher hands over together run as one ``predict`` call per set of
options (modelserve groups same-shaped images into engine batches); if that call fails, each
request is run alone so that one bad image fails only its own request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameters(request: Any) -> dict[str, Any]:
    """The request's parameters (a JSON string in Triton's Python backend), or {} where unsupported."""
    get = getattr(request, "parameters", None)
    if get is None:
        return {}
    raw = get()
    data = json.loads(raw) if isinstance(raw, (str, bytes)) and raw else (raw or {})
    return dict(data) if isinstance(data, dict) else {}


def _options(request: Any) -> dict[str, Any]:
    from modelserve.serving.core import predict_options  # parsed as modelserve serve parses them

    options = predict_options(_parameters(request))
    for name in ("conf", "iou"):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is not None:
            values = np.asarray(tensor.as_numpy(), dtype=np.float32).reshape(-1)
            if values.size == 0 or not np.all(values == values[0]):
                raise ValueError(f"input {name!r}: expected one value for the whole request, got {values.tolist()}")
            options[name] = float(values[0])
    return options


def _images(request: Any) -> list[bytes]:
    tensor = pb_utils.get_input_tensor_by_name(request, "image")
    if tensor is None:
        raise ValueError("the request has no 'image' input (encoded images as BYTES)")
    items = np.asarray(tensor.as_numpy(), dtype=object).reshape(-1)
    if not len(items):
        raise ValueError("the request holds no images")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, (bytes, bytearray, memoryview, np.bytes_)):
            raise ValueError(f"image {n}: expected encoded image bytes, got {type(item).__name__}")
        out.append(bytes(item))
    return out


class TritonPythonModel:
    """modelserve's Predictor behind Triton's Python backend."""

    def initialize(self, args: dict[str, str]) -> None:
        import modelserve as ms
        from modelserve.serving.core import detection_tensors

        self._tensors = detection_tensors
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        folder = Path(args["model_repository"]) / str(args["model_version"])
        if args.get("model_instance_kind") == "GPU":
            device = f"cuda:{args.get('model_instance_device_id', '0')}"
        else:
            device = params.get("modelserve_device") or "cpu"
        load = json.loads(params.get("modelserve_load") or "{}")
        self._batched = int(config.get("max_batch_size") or 0) > 0
        names = [o["name"] for o in config["output"]]
        self._dtypes = {n: pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(config, n)["data_type"])
                        for n in names}
        self.predictor = ms.load(str(folder / params["modelserve_model_file"]),
                                 engine=params.get("modelserve_engine") or "auto", device=device, **load)

    def _answer(self, images: list[bytes], results: list[Any]) -> Any:
        tensors = []
        for t in self._tensors(results):
            data = t.data
            if self._batched and data.ndim == 1:  # counts, json: one value per batch row
                data = data.reshape(len(images), 1)
            if t.name in self._dtypes:
                data = data.astype(self._dtypes[t.name], copy=False)
            tensors.append(pb_utils.Tensor(t.name, data))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _run(self, work: list[tuple[list[bytes], dict[str, Any]]]) -> list[list[Any]]:
        """The results of each request of ``work`` (same options): one predict call for all."""
        flat = [img for images, _ in work for img in images]
        results = list(self.predictor.predict(flat, **work[0][1]))
        out, start = [], 0
        for images, _ in work:
            out.append(results[start : start + len(images)])
            start += len(images)
        return out

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        work: dict[int, tuple[list[bytes], dict[str, Any]]] = {}
        for i, request in enumerate(requests):
            try:
                images, options = _images(request), _options(request)
            except Exception as exc:  # noqa: BLE001 - the request's own error, never its neighbours'
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc)))
                continue
            work[i] = (images, options)
            groups.setdefault(json.dumps(options, sort_keys=True), []).append(i)
        for members in groups.values():
            try:
                done = self._run([work[i] for i in members])
            except Exception:  # noqa: BLE001 - find the request at fault: run each alone
                for i in members:
                    try:
                        (results,) = self._run([work[i]])
                        responses[i] = self._answer(work[i][0], results)
                    except Exception as exc:  # noqa: BLE001
                        responses[i] = pb_utils.InferenceResponse(output_tensors=[],
                                                                  error=pb_utils.TritonError(str(exc)))
                continue
            for i, results in zip(members, done):
                responses[i] = self._answer(work[i][0], results)
        return responses

    def finalize(self) -> None:
        self.predictor.close()
