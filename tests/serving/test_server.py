"""``serving.server.Server``: both front ends over one repository, run in a thread, stopped gracefully."""

from __future__ import annotations

import http.client
import socket
import threading

import pytest

import modelserve as ms
from modelserve.serving import ModelRepository
from modelserve.serving.server import Server, ServerOptions


def _serve(repo, **options):
    server = Server(repo, ServerOptions(http_port=0, log_level="warning", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.wait_started(30)
    return server, thread


def _server_side_nodelay(client: socket.socket) -> int:
    """TCP_NODELAY of the server's end of ``client``'s connection (found among this process's fds)."""
    import os

    want = (client.getpeername(), client.getsockname())
    for fd in os.listdir("/proc/self/fd"):
        try:
            s = socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue
        try:
            if s.type == socket.SOCK_STREAM and (s.getsockname(), s.getpeername()) == want:
                return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        except OSError:
            pass
        finally:
            s.close()
    raise AssertionError("the server's end of the connection was not found")


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_accepted_connections_have_tcp_nodelay_so_answers_are_not_delayed(detector_path):
    """Without TCP_NODELAY on the server's end every POST answer waited ~40 ms (Nagle against the
    client's delayed ACK; benchmarks/RESULTS.md). asyncio sets it only on listening sockets whose
    proto is IPPROTO_TCP (uvloop, when installed, always does): checked on the accepted socket."""
    repo = ModelRepository()
    repo.load("det", detector_path)
    server, thread = _serve(repo, grpc_port=None)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
        conn.request("GET", "/v2/health/ready")
        assert conn.getresponse().status == 200
        assert _server_side_nodelay(conn.sock) != 0
        conn.close()
    finally:
        server.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert repo.names() == []  # run() closed the repository on its way out
    with pytest.raises(ms.ModelNotFoundError):
        repo.get("det")
