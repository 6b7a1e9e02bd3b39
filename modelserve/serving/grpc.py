"""The KServe v2 gRPC front end (Triton's ``inference.GRPCInferenceService``) over
:class:`~modelserve.serving.core.ModelRepository`.

Wire-compatible with ``tritonclient.grpc`` (sync, ``aio`` and the stream API): ``ServerLive``,
``ServerReady``, ``ServerMetadata``, ``ModelReady``, ``ModelMetadata``, ``ModelInfer``,
``ModelStreamInfer`` (one ``ModelStreamInferResponse`` per request, in order; a failed request gives
an ``error_message`` and the stream goes on) and, with ``repository_api=True`` (off by default:
``UNIMPLEMENTED``), ``RepositoryIndex``, ``RepositoryModelLoad`` (parameter ``ref``, a registry
reference; never a path) and ``RepositoryModelUnload``. Other Triton RPCs are ``UNIMPLEMENTED``.

Tensors come as ``raw_input_contents`` (little-endian; a ``BYTES`` element is a 4-byte
little-endian length and its bytes, as Triton) or typed ``contents``; outputs go back as
``raw_output_contents``. Request parameters (``conf``, ``iou``, ``max_det``, ``classes``,
``agnostic``, ``timeout`` in µs) are passed to the core as plain values; the call's gRPC deadline is
the request's deadline too. The model metadata has no class names (Triton's message has no field for
them): they are in each result's ``json`` output and in the REST metadata's ``parameters``.

Errors: the code of :func:`~modelserve.serving.errors.status_for`, with trailing metadata
``retry-after`` (seconds) after a full queue. With ``auth_token``, every RPC but ``ServerLive`` and
``ServerReady`` needs metadata ``authorization: Bearer <token>`` (``UNAUTHENTICATED``). Messages over
``max_message_bytes`` are refused by gRPC itself (``RESOURCE_EXHAUSTED``).
"""

from __future__ import annotations

import hmac
import math
import struct
from concurrent import futures
from typing import Any, Callable, Iterator

import numpy as np

from .._errors import InvalidInputError, ModelserveError
from .core import DATATYPES, ModelRepository, Tensor, bytes_array, server_metadata, split_bytes
from .errors import ServingUnavailableError, UnauthenticatedError, status_for
from .grpc_messages import SERVICE, message

try:
    import grpc
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ServingUnavailableError(f"the gRPC server needs grpcio: pip install modelserve[server] ({exc})") from None

__all__ = ["create_server", "DEFAULT_MAX_MESSAGE_BYTES"]

#: The largest message by default, either way (bigger ones: ``RESOURCE_EXHAUSTED``).
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: The RPCs open without a token.
_OPEN = ("ServerLive", "ServerReady")
#: datatype -> the ``InferTensorContents`` field holding it (FP16 has none: raw only, as Triton).
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}

ModelInferResponse = message("ModelInferResponse")
ModelStreamInferResponse = message("ModelStreamInferResponse")


# -- tensors and parameters -------------------------------------------------------------------------


def _parameters(params: Any) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as plain values (an unset one is skipped)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        kind = value.WhichOneof("parameter_choice")
        if kind is not None:
            out[key] = getattr(value, kind)
    return out


def _tensor(entry: Any, raw: bytes | None) -> Tensor:
    """One input: from its raw contents (``raw``) or its typed ``contents``."""
    name, datatype = entry.name, entry.datatype
    if datatype not in DATATYPES:
        raise InvalidInputError(f"input {name!r}: unknown datatype {datatype!r} (one of {sorted(DATATYPES)})")
    shape = [int(d) for d in entry.shape]
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"input {name!r}: shape must be non-negative integers, got {shape}")
    dtype = DATATYPES[datatype]
    if raw is not None:
        if entry.HasField("contents"):
            raise InvalidInputError(f"input {name!r} has both raw contents and typed contents")
        if datatype == "BYTES":
            return Tensor(name, datatype, bytes_array(split_bytes(memoryview(raw), name, "raw contents"), shape, name))
        need = math.prod(shape) * dtype.itemsize
        if len(raw) != need:
            raise InvalidInputError(f"input {name!r}: {datatype} shape {shape} needs {need} bytes, got {len(raw)}")
        return Tensor(name, datatype, np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape))
    field = _CONTENTS.get(datatype)
    if field is None:
        raise InvalidInputError(f"input {name!r}: {datatype} data must come as raw_input_contents")
    values = list(getattr(entry.contents, field))
    if datatype == "BYTES":
        return Tensor(name, datatype, bytes_array(values, shape, name))
    if len(values) != math.prod(shape):
        raise InvalidInputError(f"input {name!r}: shape {shape} needs {math.prod(shape)} elements, got {len(values)}")
    try:
        return Tensor(name, datatype, np.array(values, dtype=dtype).reshape(shape))
    except (OverflowError, ValueError) as exc:
        raise InvalidInputError(f"input {name!r}: {exc}") from None


def _inputs(request: Any) -> list[Tensor]:
    raws = list(request.raw_input_contents)
    if raws and len(raws) != len(request.inputs):
        raise InvalidInputError(f"the request has {len(request.inputs)} inputs but {len(raws)} raw_input_contents")
    return [_tensor(entry, raws[i] if raws else None) for i, entry in enumerate(request.inputs)]


def _raw(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(struct.pack("<I", len(x)) + bytes(x) for x in tensor.data.reshape(-1))
    return np.ascontiguousarray(tensor.data, dtype=tensor.data.dtype.newbyteorder("<")).tobytes()


def _deadline(context: Any) -> float | None:
    left = context.time_remaining()
    return None if left is None or left > 1e7 else float(left)  # no deadline: None (or ~forever)


def _infer(repo: ModelRepository, request: Any, context: Any) -> Any:
    """Decode, run and encode one ``ModelInferRequest``."""
    name, version = request.model_name, request.model_version or None
    with repo.track(name, version, "grpc"):
        held = repo.get(name, version)  # NOT_FOUND before decoding
        inputs = _inputs(request)
        params = _parameters(request.parameters)
        wanted = [o.name for o in request.outputs] or None
        with held.use() as model:
            outputs = repo.run(model, inputs, params, wanted, timeout_s=_deadline(context))
    response = ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
    for tensor in outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.append(_raw(tensor))
    return response


# -- errors and auth -------------------------------------------------------------------------------


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, ModelserveError) else f"internal error: {type(exc).__name__}: {text}"


def _abort(context: Any, exc: BaseException) -> None:
    status = status_for(exc)
    if status.retry_after is not None:
        context.set_trailing_metadata((("retry-after", str(status.retry_after)),))
    context.abort(grpc.StatusCode[status.grpc], _message(exc))


def _unary(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``fn(request, context)`` with every exception answered by its status."""

    def handler(request: Any, context: Any) -> Any:
        try:
            return fn(request, context)
        except Exception as exc:  # noqa: BLE001 - every failure is answered with its status
            failure = exc
        _abort(context, failure)

    return handler


class _BearerAuth(grpc.ServerInterceptor):  # type: ignore[misc]
    """Every RPC but ``ServerLive`` / ``ServerReady`` needs metadata ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or details.method.rsplit("/", 1)[-1] in _OPEN:
            return handler
        given = next((v for k, v in details.invocation_metadata or () if k == "authorization"), "")
        if hmac.compare_digest(given.encode() if isinstance(given, str) else given, self.expected):
            return handler
        error = UnauthenticatedError("this server needs metadata 'authorization: Bearer <token>'")

        def refuse(request: Any, context: Any) -> Any:
            _abort(context, error)

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(refuse)
        return grpc.unary_unary_rpc_method_handler(refuse)


# -- the service -----------------------------------------------------------------------------------


def _handlers(repo: ModelRepository, repository_api: bool) -> dict[str, Any]:
    m = message

    def server_live(request: Any, context: Any) -> Any:
        return m("ServerLiveResponse")(live=True)

    def server_ready(request: Any, context: Any) -> Any:
        return m("ServerReadyResponse")(ready=all(repo.ready(n) for n in repo.names()))

    def server_meta(request: Any, context: Any) -> Any:
        meta = server_metadata()
        return m("ServerMetadataResponse")(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    def model_ready(request: Any, context: Any) -> Any:
        return m("ModelReadyResponse")(ready=repo.ready(request.name, request.version or None))

    def model_meta(request: Any, context: Any) -> Any:
        meta = repo.get(request.name, request.version or None).metadata()
        response = m("ModelMetadataResponse")(name=meta["name"], versions=meta["versions"], platform=meta["platform"])
        for kind in ("inputs", "outputs"):
            for t in meta[kind]:
                getattr(response, kind).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return response

    def model_infer(request: Any, context: Any) -> Any:
        return _infer(repo, request, context)

    def stream_infer(requests: Iterator[Any], context: Any) -> Iterator[Any]:
        for request in requests:
            try:
                response = ModelStreamInferResponse(infer_response=_infer(repo, request, context))
            except Exception as exc:  # noqa: BLE001 - a failed request is answered in the stream
                response = ModelStreamInferResponse(error_message=f"[{status_for(exc).grpc}] {_message(exc)}")
            yield response

    def repository_off(request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "the repository API is off on this server (start it with repository_api=True)")

    def repository_index(request: Any, context: Any) -> Any:
        response = m("RepositoryIndexResponse")()
        for entry in repo.index():
            if not request.ready or entry["state"] == "READY":
                response.models.add(**entry)
        return response

    def repository_load(request: Any, context: Any) -> Any:
        ref = None
        if "ref" in request.parameters:
            param = request.parameters["ref"]
            if param.WhichOneof("parameter_choice") != "string_param":
                raise InvalidInputError("parameter ref must be a registry reference string (string_param)")
            ref = param.string_param
        repo.load_from_registry(request.model_name, ref)
        return m("RepositoryModelLoadResponse")()

    def repository_unload(request: Any, context: Any) -> Any:
        repo.unload(request.model_name)
        return m("RepositoryModelUnloadResponse")()

    def repository(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        return _unary(fn) if repository_api else repository_off

    unary = {
        "ServerLive": (_unary(server_live), "ServerLiveRequest"),
        "ServerReady": (_unary(server_ready), "ServerReadyRequest"),
        "ServerMetadata": (_unary(server_meta), "ServerMetadataRequest"),
        "ModelReady": (_unary(model_ready), "ModelReadyRequest"),
        "ModelMetadata": (_unary(model_meta), "ModelMetadataRequest"),
        "ModelInfer": (_unary(model_infer), "ModelInferRequest"),
        "RepositoryIndex": (repository(repository_index), "RepositoryIndexRequest"),
        "RepositoryModelLoad": (repository(repository_load), "RepositoryModelLoadRequest"),
        "RepositoryModelUnload": (repository(repository_unload), "RepositoryModelUnloadRequest"),
    }
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=m(request).FromString,
            response_serializer=lambda r: r.SerializeToString())
        for method, (fn, request) in unary.items()
    }
    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        stream_infer, request_deserializer=m("ModelInferRequest").FromString,
        response_serializer=lambda r: r.SerializeToString())
    return handlers


def create_server(repository: ModelRepository, *, host: str = "127.0.0.1", port: int = 8001, max_workers: int = 64,
                  max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, auth_token: str | None = None,
                  repository_api: bool = False) -> tuple[Any, int]:
    """A started gRPC server for ``repository`` on ``host:port`` (``port=0``: a free one) and the
    port it is bound to. Stop it with ``server.stop(grace)``; the caller closes the repository."""
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes),
               ("grpc.so_reuseport", 0)]  # a taken port is an error, not silently shared
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="modelserve-grpc"),
                         options=options, interceptors=[_BearerAuth(auth_token)] if auth_token else None,
                         maximum_concurrent_rpcs=None)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, _handlers(repository,
                                                                                           repository_api)),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if not bound:
        raise OSError(f"cannot listen on {address}")
    server.start()
    return server, bound
