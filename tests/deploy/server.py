"""``modelserve serve`` as a container runs it: the venv's console script in a subprocess, on
free loopback ports; small HTTP helpers to talk to it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

#: the ``modelserve`` console script of the environment running the tests (the image's entry point)
MODELSERVE = Path(sys.executable).with_name("modelserve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 60) -> tuple[int, Any]:
    """``(status, parsed JSON body)`` of one request to ``127.0.0.1:port``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


def env_with(**values: str) -> dict[str, str]:
    """This process's environment plus ``values``, with the venv's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{MODELSERVE.parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(values)
    return env


class Served:
    """A ``modelserve serve`` subprocess, started by :func:`start`; a context manager that sends
    SIGTERM on exit (and kills it if it has not stopped 60 s later)."""

    def __init__(self, proc: subprocess.Popen, port: int) -> None:
        self.proc = proc
        self.port = port

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then ``(exit status, stderr)``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err

    def __enter__(self) -> "Served":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def start(argv: Sequence[str], port: int, *, env: Mapping[str, str], cwd: str | Path | None = None) -> Served:
    """Run ``argv`` and wait until ``/v2/health/ready`` on ``port`` answers 200 (AssertionError with
    the server's output if it exits or takes more than 90 s)."""
    proc = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            if request(port, "GET", "/v2/health/ready", timeout=5)[0] == 200:
                return Served(proc, port)
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the server did not become ready: {proc.communicate()}")
        time.sleep(0.1)


def multipart(image: bytes, name: str = "image.jpg") -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with one image file part, and its headers."""
    boundary = "modelserve-deploy-test"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
