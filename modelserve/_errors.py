"""The one exception hierarchy of modelserve.

Everything modelserve raises on purpose derives from :class:`ModelserveError`, so an
application can catch the whole family with one ``except`` clause::

    ModelserveError
    ├── ModelLoadError            a model file is missing, truncated, not ONNX, or unreadable
    ├── EngineUnavailableError    an engine or device cannot be used here (says why)
    ├── InvalidInputError         an image, array or argument is not what the API accepts (also a ValueError)
    │   ├── SourceError           a folder, URL, video or live stream cannot be read (missing, unreachable,
    │   │                         timed out, too large, undecodable, or a live stream lost for good)
    │   ├── RequestTooLargeError  a served request's body or image is over the limit (modelserve.serving)
    │   └── UnauthenticatedError  a served request lacks the server's bearer token (modelserve.serving)
    ├── QueueFullError            the micro-batcher's bounded queue is full
    ├── BatcherClosedError        submit() after close()
    ├── DeadlineExceededError     a request's deadline passed before it ran (also a TimeoutError)
    ├── BatchResultError          a batched function returned the wrong number of results
    ├── ServingUnavailableError   the server stack (or Ray Serve) is not installed (modelserve.serving)
    ├── TritonExportError         a Triton model repository cannot be written as asked (modelserve.triton)
    └── RegistryError             anything the local model registry refuses
        ├── ModelNotFoundError    no such model, version or alias
        ├── VersionConflictError  a version label already holds different content
        ├── IntegrityError        stored bytes differ from their recorded digest or size
        ├── PinMismatchError      a lock file pins other content than what resolves
        ├── FileKindError         a FIFO, device or directory where a registry file belongs (also an OSError)
        └── InvalidNameError      a name, label or alias breaks the naming rules (also a ValueError)

The three serving errors are defined in :mod:`modelserve.serving.errors` (which maps every error of
this tree to an HTTP status and a gRPC code), ``TritonExportError`` in :mod:`modelserve.triton`,
``FileKindError`` in ``modelserve._registry._fs``.
"""

from __future__ import annotations

__all__ = [
    "ModelserveError",
    "ModelLoadError",
    "EngineUnavailableError",
    "InvalidInputError",
    "SourceError",
    "QueueFullError",
    "BatcherClosedError",
    "DeadlineExceededError",
    "BatchResultError",
    "RegistryError",
    "ModelNotFoundError",
    "VersionConflictError",
    "IntegrityError",
    "PinMismatchError",
    "InvalidNameError",
]


class ModelserveError(Exception):
    """Root of every error modelserve raises on purpose."""


class ModelLoadError(ModelserveError):
    """A model could not be loaded: missing, truncated, not a model file, or rejected by the engine."""


class EngineUnavailableError(ModelserveError):
    """The requested engine or device cannot be used on this machine; the message says why."""


class InvalidInputError(ModelserveError, ValueError):
    """An input (image, array, option) is not what the API accepts; the message says what was expected."""


class SourceError(InvalidInputError):
    """A source of images (a folder, glob, list file, URL, video file, camera or live stream) cannot
    be read: the message names it and says why (not found, HTTP status, timeout, size limit, no
    video stream, PyAV missing, or a live stream that stayed down through its reconnect attempts)."""


class QueueFullError(ModelserveError):
    """The micro-batcher's queue is at its bound and the request was refused at once."""


class BatcherClosedError(ModelserveError):
    """The micro-batcher is closed (or its loop died) and takes no more requests."""


class DeadlineExceededError(ModelserveError, TimeoutError):
    """A request's deadline passed before it could run; it was never run."""


class BatchResultError(ModelserveError):
    """A micro-batched function returned a result whose length differs from its batch (a bug in it)."""


class RegistryError(ModelserveError):
    """Root of the model registry's errors."""


class ModelNotFoundError(RegistryError, LookupError):
    """No model, version or alias of that name in the registry."""


class VersionConflictError(RegistryError):
    """A version label already exists with different content; versions are written once."""


class IntegrityError(RegistryError):
    """Stored bytes do not match their recorded sha256 digest or size."""


class PinMismatchError(RegistryError):
    """A lock file pins a different version or digest than what was about to be loaded."""


class InvalidNameError(RegistryError, ValueError):
    """A model name, version label or alias does not follow the registry's naming rules."""
