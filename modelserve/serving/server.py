"""One server process: the REST front end (uvicorn), the gRPC front end and the alias follower over
one :class:`~modelserve.serving.core.ModelRepository`, with a graceful stop.

On SIGTERM or SIGINT (or :meth:`Server.stop`): both front ends stop accepting at once, the requests
in flight finish (up to ``drain_timeout_s``), every model's queued work is drained and its engine
closed, and :meth:`Server.run` returns, so ``modelserve serve`` exits 0. A second SIGINT forces
the exit.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any

from .core import ModelRepository
from .errors import ServingUnavailableError
from .rollouts import DEFAULT_INTERVAL_S, AliasFollower

__all__ = ["Server", "ServerOptions"]

_log = logging.getLogger("modelserve.serving")


@dataclass(frozen=True)
class ServerOptions:
    """How :class:`Server` listens. ``grpc_port=None``: no gRPC. ``follow_interval_s=None``: never
    follow registry aliases. ``workers``: threads answering gRPC requests and running REST
    requests' blocking work."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int | None = 8001
    workers: int = 64
    max_body_bytes: int = 64 * 1024 * 1024
    auth_token: str | None = None
    repository_api: bool = False
    follow_interval_s: float | None = DEFAULT_INTERVAL_S
    drain_timeout_s: float = 30.0
    log_level: str = "info"


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError as exc:
        raise ServingUnavailableError(f"the server needs uvicorn: pip install modelserve[server] ({exc})") from None
    return uvicorn


class Server:
    """REST + gRPC + alias follower over ``repository``; :meth:`run` blocks until stopped, then
    closes the repository."""

    def __init__(self, repository: ModelRepository, options: ServerOptions | None = None) -> None:
        self.repository = repository
        self.options = options or ServerOptions()
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self._grpc: Any = None
        self._grpc_stopped: threading.Event | None = None
        self._uvicorn: Any = None
        self._follower: AliasFollower | None = None
        self._stopping = threading.Event()
        self._started = threading.Event()

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT or :meth:`stop`; then drain and close everything."""
        from .rest import create_app

        opts, uvicorn = self.options, _uvicorn()
        app = create_app(self.repository, max_body_bytes=opts.max_body_bytes, auth_token=opts.auth_token,
                         repository_api=opts.repository_api)
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto
        # says TCP; without it each response's body waits ~40 ms behind its headers (Nagle
        # against the client's delayed ACK)
        family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((opts.host, opts.http_port))
            self.http_port = sock.getsockname()[1]
            if opts.grpc_port is not None:
                from .grpc import create_server

                self._grpc, self.grpc_port = create_server(
                    self.repository, host=opts.host, port=opts.grpc_port, max_workers=opts.workers,
                    max_message_bytes=opts.max_body_bytes, auth_token=opts.auth_token,
                    repository_api=opts.repository_api)
            if opts.follow_interval_s is not None and self.repository.following():
                self._follower = AliasFollower(self.repository, opts.follow_interval_s).start()
            config = uvicorn.Config(app, log_level=opts.log_level, lifespan="off",
                                    timeout_graceful_shutdown=opts.drain_timeout_s)
            self._uvicorn = _Uvicorn(config, self._begin_stop)
            if self._stopping.is_set():
                self._uvicorn.should_exit = True
            self._started.set()
            _log.info("modelserve: serving %s over REST on %s:%s%s", self.repository.names(), opts.host,
                      self.http_port, "" if self.grpc_port is None else f" and gRPC on port {self.grpc_port}")
            self._uvicorn.run(sockets=[sock])
        finally:
            sock.close()
            self._begin_stop()
            if self._grpc_stopped is not None:
                self._grpc_stopped.wait(opts.drain_timeout_s + 5)
            self.repository.close()
            self._started.set()

    def wait_started(self, timeout_s: float = 30.0) -> bool:
        """Wait until both front ends listen (for a server run in a thread)."""
        return self._started.wait(timeout_s) and (self._uvicorn is None or _wait(lambda: self._uvicorn.started,
                                                                                 timeout_s))

    def stop(self) -> None:
        """Begin the graceful stop (from any thread); :meth:`run` returns once it is done."""
        self._begin_stop()

    def _begin_stop(self) -> None:
        """Stop accepting on both front ends at once (idempotent)."""
        self._stopping.set()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._follower is not None:
            self._follower.stop(timeout_s=0)
        if self._grpc is not None and self._grpc_stopped is None:
            self._grpc_stopped = self._grpc.stop(grace=self.options.drain_timeout_s)


def _wait(ready: Any, timeout_s: float) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _server_base() -> Any:
    return _uvicorn().Server


class _Uvicorn(_server_base()):  # type: ignore[misc]
    """uvicorn's server, told to stop by our signal handling; it does not re-raise the signal after
    shutting down (uvicorn's default, which would end the process with 'killed by SIGTERM' after a
    clean drain), so the process exits 0."""

    def __init__(self, config: Any, on_exit: Any) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()
        self._on_exit()
