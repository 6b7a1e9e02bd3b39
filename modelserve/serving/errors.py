"""The one table from modelserve errors to protocol statuses (HTTP status, gRPC code).

Every protocol front end asks :func:`status_for` how to answer a failed request; no route picks a
status of its own. The table is ordered most specific first and the first matching class wins, so
a subclass listed before its parent keeps its own status. A client's mistake is never a 500:

=============================  ======  =====================  ===============================
error                          HTTP    gRPC                   why
=============================  ======  =====================  ===============================
UnauthenticatedError           401     UNAUTHENTICATED        no or wrong bearer token
RequestTooLargeError           413     RESOURCE_EXHAUSTED     body or image over the limit
InvalidInputError, SourceError 400     INVALID_ARGUMENT       bad image, tensor or parameter
InvalidNameError               400     INVALID_ARGUMENT       a model name breaks the rules
ModelNotFoundError             404     NOT_FOUND              no such model or version
QueueFullError                 503     UNAVAILABLE            try again (``Retry-After``)
BatcherClosedError             503     UNAVAILABLE            the model is shutting down
DeadlineExceededError          504     DEADLINE_EXCEEDED      waited in the queue too long
EngineUnavailableError         503     UNAVAILABLE            the engine cannot run here now
ModelLoadError                 500     INTERNAL               the served model is broken
any other ModelserveError      500     INTERNAL
=============================  ======  =====================  ===============================
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import (
    BatcherClosedError,
    DeadlineExceededError,
    EngineUnavailableError,
    InvalidInputError,
    InvalidNameError,
    ModelLoadError,
    ModelNotFoundError,
    ModelserveError,
    QueueFullError,
)

__all__ = ["Status", "STATUSES", "status_for", "RequestTooLargeError", "ServingUnavailableError", "UnauthenticatedError",
           "RETRY_AFTER_S"]

#: Seconds a client is told to wait (``Retry-After``) after a full queue.
RETRY_AFTER_S = 1


class RequestTooLargeError(InvalidInputError):
    """A request body, or an image in it, is over the server's limit (HTTP 413)."""


class UnauthenticatedError(InvalidInputError):
    """The request lacks the server's bearer token, or has a wrong one (HTTP 401)."""


class ServingUnavailableError(ModelserveError):
    """The server stack (Starlette, uvicorn) is not installed: ``pip install modelserve[server]``."""


@dataclass(frozen=True)
class Status:
    """How a protocol answers one kind of error."""

    http: int
    grpc: str
    retry_after: int | None = None  # seconds, sent as ``Retry-After`` (HTTP) / metadata (gRPC)


#: ``(error class, status)``, most specific first.
STATUSES: tuple[tuple[type[BaseException], Status], ...] = (
    (UnauthenticatedError, Status(401, "UNAUTHENTICATED")),
    (RequestTooLargeError, Status(413, "RESOURCE_EXHAUSTED")),
    (InvalidInputError, Status(400, "INVALID_ARGUMENT")),  # SourceError included
    (InvalidNameError, Status(400, "INVALID_ARGUMENT")),
    (ModelNotFoundError, Status(404, "NOT_FOUND")),
    (QueueFullError, Status(503, "UNAVAILABLE", RETRY_AFTER_S)),
    (BatcherClosedError, Status(503, "UNAVAILABLE")),
    (DeadlineExceededError, Status(504, "DEADLINE_EXCEEDED")),
    (EngineUnavailableError, Status(503, "UNAVAILABLE")),
    (ModelLoadError, Status(500, "INTERNAL")),
    (ModelserveError, Status(500, "INTERNAL")),
)

_UNEXPECTED = Status(500, "INTERNAL")


def status_for(exc: BaseException) -> Status:
    """The status of ``exc``: its first match in :data:`STATUSES`, else 500 / ``INTERNAL``."""
    for cls, status in STATUSES:
        if isinstance(exc, cls):
            return status
    return _UNEXPECTED
