"""Local HTTP servers on 127.0.0.1 for the URL and live-stream tests: each route is a function of
the request handler; every wait inside a route ends when the server closes, so no test thread
outlives its test."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

Route = Callable[["Handler", dict], None]


class Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.0"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        route = self.server.routes.get(parts.path)
        self.server.hits[parts.path] = self.server.hits.get(parts.path, 0) + 1
        if route is None:
            self.send_error(404, "no such route")
            return
        try:
            route(self, {k: v[-1] for k, v in parse_qs(parts.query).items()})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as the tests make it do

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False when the server is closing."""
        return not self.server.stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    hits: dict[str, int]
    stopping: threading.Event


class Server:
    """``with Server({"/path": route}) as s: s.url("/path")``."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.routes = routes
        self._server.hits = {}
        self._server.stopping = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    @property
    def hits(self) -> dict[str, int]:
        return self._server.hits

    def __enter__(self) -> "Server":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()


def send_body(handler: Handler, body: bytes, ctype: str = "image/jpeg", length: bool = True) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", ctype)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def mjpeg(jpegs: list[bytes], gap: float = 0.01) -> Route:
    """A multipart MJPEG stream: ``?n=`` frames cycling through ``jpegs`` (default: forever, until
    the client leaves or the server closes), then ``?then=close`` (default) or ``?then=stall``."""

    def route(handler: Handler, query: dict) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.end_headers()
        n = int(query.get("n", 10**9))
        for i in range(n):
            jpeg = jpegs[i % len(jpegs)]
            handler.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                                + jpeg + b"\r\n")
            handler.wfile.flush()
            if not handler.wait(gap):
                return
        if query.get("then") == "stall":
            handler.wait(60)

    return route


class StallingTcp:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (an RTSP camera that hangs)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._held.append(conn)

    def __enter__(self) -> "StallingTcp":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._held:
            conn.close()
        self._sock.close()


def free_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

