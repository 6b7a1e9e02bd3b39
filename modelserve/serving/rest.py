"""The KServe v2 REST front end (Starlette on uvicorn) over :class:`~modelserve.serving.core.ModelRepository`.

Routes: ``GET /v2/health/live``, ``/v2/health/ready``, ``/v2`` (server metadata),
``/v2/models/{name}[/versions/{v}]`` (model metadata), ``.../ready``; ``POST .../infer`` (JSON
tensors and Triton's binary-data extension, see ``rest_tensors``); and ``POST
/v1/models/{name}/predict``: a multipart image upload (every file part is one image) or the image
as the raw body, with ``conf``, ``iou``, ``max_det``, ``classes``, ``agnostic``, ``multi_label`` as query parameters,
answered with the ``Detections`` JSON (a list for several files).

``GET /metrics``: Prometheus metrics, when the repository has :class:`~modelserve.monitoring.Metrics`.
With ``repository_api=True`` (off by default), Triton's model-repository extension:
``POST /v2/repository/index``, ``POST /v2/repository/models/{name}/load`` (body ``{"parameters":
{"ref": "det@prod"}}``, optional: registry references only, never a path) and ``.../unload``.
With ``auth_token``, every route but ``/v2/health/*`` needs ``Authorization: Bearer <token>`` (401).

Errors are ``{"error": message}`` with the status of :func:`~modelserve.serving.errors.status_for`.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

from .._errors import InvalidInputError, ModelserveError
from .core import ModelRepository, server_metadata
from .errors import RequestTooLargeError, ServingUnavailableError, UnauthenticatedError, status_for
from .rest_tensors import HEADER_LENGTH, decode_request, encode_response

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ServingUnavailableError(f"the server needs Starlette and uvicorn: pip install modelserve[server] "
                                  f"({exc})") from None

__all__ = ["create_app", "serve", "DEFAULT_MAX_BODY_BYTES"]

#: The largest request body by default (bigger ones: 413).
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
_TRUE = ("1", "true", "yes", "on")


def _error_response(exc: BaseException) -> JSONResponse:
    status = status_for(exc)
    headers = {"Retry-After": str(status.retry_after)} if status.retry_after is not None else None
    message = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, ModelserveError):
        message = f"internal error: {type(exc).__name__}: {message}"
    return JSONResponse({"error": message}, status_code=status.http, headers=headers)


async def _on_error(request: Request, exc: Exception) -> Response:
    return _error_response(exc)


class _BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is a :class:`RequestTooLargeError`
    (413), told by ``Content-Length`` before reading or counted while it streams in."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        for key, value in scope.get("headers", ()):
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                error = RequestTooLargeError(f"the request body has {int(value)} bytes, over the limit of {limit}")
                await _error_response(error)(scope, receive, send)
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise RequestTooLargeError(f"the request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, limited, send)


class _BearerAuth:
    """ASGI middleware: every path but ``/v2/health/...`` needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] == "http" and not scope.get("path", "").startswith("/v2/health/"):
            given = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
            if not hmac.compare_digest(given, self.expected):
                error = UnauthenticatedError("this server needs 'Authorization: Bearer <token>'")
                response = _error_response(error)
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(repository: ModelRepository, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               auth_token: str | None = None, repository_api: bool = False) -> Any:
    """The ASGI application serving ``repository`` (which the caller closes)."""
    repo = repository

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        ok = all(repo.ready(n) for n in repo.names())
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def metadata(request: Request) -> Response:
        return JSONResponse(server_metadata())

    async def model_metadata(request: Request) -> Response:
        p = request.path_params
        return JSONResponse(repo.get(p["name"], p.get("version")).metadata())

    async def model_ready(request: Request) -> Response:
        p = request.path_params
        ok = repo.ready(p["name"], p.get("version"))
        return JSONResponse({"name": p["name"], "ready": ok}, status_code=200 if ok else 503)

    async def infer(request: Request) -> Response:
        p = request.path_params
        with repo.track(p["name"], p.get("version"), "rest"):
            repo.get(p["name"], p.get("version"))  # 404 before reading the body
            body = await request.body()
            payload, header_length = await run_in_threadpool(_infer, repo, p["name"], p.get("version"), body,
                                                             request.headers.get(HEADER_LENGTH))
        if header_length is None:
            return Response(payload, media_type="application/json")
        return Response(payload, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)})

    async def predict_v1(request: Request) -> Response:
        name = request.path_params["name"]
        with repo.track(name, None, "rest"):
            repo.get(name)  # 404 before reading the upload
            images = await _uploaded_images(request)
            params = _query_options(request.query_params)
            results = await run_in_threadpool(repo.predict_images, name, None, images, params)
        text = results[0].to_json() if len(results) == 1 else "[" + ", ".join(r.to_json() for r in results) + "]"
        return Response(text, media_type="application/json")

    async def drift(request: Request) -> Response:
        monitor = repo.drift(request.path_params["name"])
        if monitor is None:
            return JSONResponse({"error": "this server does not monitor drift (modelserve serve --drift)"},
                                status_code=404)
        return JSONResponse(monitor.report())

    async def metrics(request: Request) -> Response:
        if repo.metrics is None:
            return JSONResponse({"error": "this server keeps no metrics"}, status_code=404)
        payload, content_type = repo.metrics.exposition()
        return Response(payload, headers={"Content-Type": content_type})

    async def repository_index(request: Request) -> Response:
        return JSONResponse(repo.index())

    async def repository_load(request: Request) -> Response:
        body = await request.body()
        ref = _load_ref(body)
        await run_in_threadpool(repo.load_from_registry, request.path_params["name"], ref)
        return JSONResponse({})

    async def repository_unload(request: Request) -> Response:
        await run_in_threadpool(repo.unload, request.path_params["name"])
        return JSONResponse({})

    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", metadata),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/versions/{version}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v1/models/{name}/predict", predict_v1, methods=["POST"]),
        Route("/v2/models/{name}/drift", drift),
        Route("/metrics", metrics),
    ]
    if repository_api:
        routes += [
            Route("/v2/repository/index", repository_index, methods=["POST"]),
            Route("/v2/repository/models/{name}/load", repository_load, methods=["POST"]),
            Route("/v2/repository/models/{name}/unload", repository_unload, methods=["POST"]),
        ]
    app: Any = Starlette(routes=routes, exception_handlers={Exception: _on_error, ModelserveError: _on_error})
    if auth_token:
        app = _BearerAuth(app, auth_token)
    return _BodyLimit(app, max_body_bytes)


def _load_ref(body: bytes) -> str | None:
    """The registry reference of a repository *load* request body (``parameters.ref``), if any."""
    if not body.strip():
        return None
    try:
        header = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInputError("the load request's body is not valid JSON") from None
    params = header.get("parameters") if isinstance(header, dict) else None
    ref = params.get("ref") if isinstance(params, dict) else None
    if ref is not None and not isinstance(ref, str):
        raise InvalidInputError(f"parameters.ref must be a registry reference string, got {ref!r}")
    return ref


def _infer(repo: ModelRepository, name: str, version: str | None, body: bytes, header_length: str | None
           ) -> tuple[bytes, int | None]:
    """Decode, run and encode one infer request (in a worker thread: JSON parsing of a large body
    and the encoding are CPU work too, kept off the event loop)."""
    req = decode_request(body, header_length)
    with repo.get(name, version).use() as model:
        outputs = repo.run(model, req.inputs, req.parameters, list(req.outputs))
        return encode_response(model.name, model.version, outputs, req)


async def _uploaded_images(request: Request) -> list[bytes]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return [await request.body()]
    try:
        form = await request.form()
    except ModelserveError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed multipart body (or python-multipart missing)
        raise InvalidInputError(f"cannot read the multipart upload: {exc}") from None
    files = [v for _, v in form.multi_items() if not isinstance(v, str)]
    if not files:
        raise InvalidInputError("the multipart upload has no file part (send the image as a file field)")
    return [await f.read() for f in files]  # type: ignore[union-attr]


def _query_options(query: Any) -> dict[str, Any]:
    options: dict[str, Any] = {}
    convert: dict[str, Callable[[str], Any]] = {"conf": float, "iou": float, "max_det": int, "classes": str,
                                                 "agnostic": lambda s: s.lower() in _TRUE,
                                                 "multi_label": lambda s: s.lower() in _TRUE}
    for key, fn in convert.items():
        if key in query:
            try:
                options[key] = fn(query[key])
            except ValueError:
                raise InvalidInputError(f"query parameter {key}: cannot read {query[key]!r}") from None
    return options


def serve(repository: ModelRepository, *, host: str = "127.0.0.1", port: int = 8000,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, log_level: str = "info", **options: Any) -> None:
    """Serve ``repository`` over REST only until SIGTERM/SIGINT, then drain and close its models
    (:class:`~modelserve.serving.server.Server` with ``grpc_port=None``; ``options``: its other
    :class:`~modelserve.serving.server.ServerOptions`)."""
    from .server import Server, ServerOptions

    Server(repository, ServerOptions(host=host, http_port=port, grpc_port=None, max_body_bytes=max_body_bytes,
                                     log_level=log_level, **options)).run()
