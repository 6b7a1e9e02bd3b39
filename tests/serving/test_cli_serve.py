"""``modelserve serve`` as users run it: a subprocess on a free port, then Ctrl-C."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from modelserve import cli

pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_serve_parses_its_defaults():
    args = cli.build_parser().parse_args(["serve", "a.onnx", "b=c.onnx"])
    assert (args.host, args.http_port, args.models) == ("127.0.0.1", 8000, ["a.onnx", "b=c.onnx"])


def test_two_models_of_one_name_are_refused(tmp_path, capsys):
    assert cli.main(["serve", "x=a.onnx", "x=b.onnx"]) == 1
    assert "name them" in capsys.readouterr().err


def test_serve_runs_until_interrupted(detector_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "modelserve", "serve", f"cars={detector_path}", str(detector_path),
                             "--http-port", str(port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = _get(port, "/v2/health/ready")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the server did not start: {proc.communicate()}") from None
                time.sleep(0.1)
        assert (status, body) == (200, {"ready": True})
        assert _get(port, "/v2/models/cars")[1]["name"] == "cars"
        assert _get(port, f"/v2/models/{detector_path.stem}/ready") == (200, {"name": detector_path.stem, "ready": True})
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
