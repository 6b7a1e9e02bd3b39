"""A real uvicorn server in a thread on a free loopback port, serving the real detector."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import modelserve as ms

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from modelserve.serving import ModelRepository  # noqa: E402
from modelserve.serving.rest import create_app  # noqa: E402

MAX_BODY = 2 * 1024 * 1024
MAX_PIXELS = 1_000_000  # above bus.jpg (810x1080) and zidane.jpg (1280x720)


class Running:
    """``app`` served by uvicorn on ``127.0.0.1:<free port>`` until :meth:`stop`."""

    def __init__(self, app) -> None:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP; without
        # it every POST answer stalls ~40 ms (Nagle against the client's delayed ACK)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture(scope="package")
def embedded(detector_path):
    """The embedded Predictor the served results must equal."""
    with ms.load(detector_path) as p:
        yield p


@pytest.fixture(scope="package")
def server(detector_path):
    repo = ModelRepository(max_pixels=MAX_PIXELS)
    repo.load("det", detector_path, batching=ms.Batching(max_batch_size=8, max_delay_ms=2))
    running = Running(create_app(repo, max_body_bytes=MAX_BODY))
    yield running
    running.stop()
