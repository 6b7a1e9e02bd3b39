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


def test_the_listening_socket_is_tcp_so_answers_are_not_delayed(detector_path):
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP: with proto 0 every POST
    answer waited ~40 ms (Nagle against the client's delayed ACK; benchmarks/RESULTS.md)."""
    repo = ModelRepository()
    repo.load("det", detector_path)
    server, thread = _serve(repo, grpc_port=None)
    try:
        (listening,) = [s for srv in server._uvicorn.servers for s in srv.sockets]
        assert listening.proto == socket.IPPROTO_TCP
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
        conn.request("GET", "/v2/health/ready")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert repo.names() == []  # run() closed the repository on its way out
    with pytest.raises(ms.ModelNotFoundError):
        repo.get("det")
