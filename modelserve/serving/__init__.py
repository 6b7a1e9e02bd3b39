"""Serving models over the Open Inference Protocol (KServe v2).

``core`` knows no protocol (a :class:`ModelRepository` of named batched Predictors, their
metadata, one ``infer``); ``errors`` is the one table from modelserve errors to HTTP statuses and
gRPC codes; ``rest`` is the REST front end (needs ``pip install modelserve[server]``). gRPC comes
later as one more thin module over the same core.

    from modelserve.serving import ModelRepository
    from modelserve.serving.rest import serve
    repo = ModelRepository(); repo.load("det", "yolov8n.onnx"); serve(repo, port=8000)

This package imports neither Starlette nor uvicorn; only ``serving.rest`` does.
"""

from __future__ import annotations

from .core import ModelRepository, ServedModel, Tensor
from .errors import RequestTooLargeError, ServingUnavailableError, Status, UnauthenticatedError, status_for

__all__ = ["ModelRepository", "ServedModel", "Tensor", "Status", "status_for", "RequestTooLargeError",
           "ServingUnavailableError", "UnauthenticatedError"]
