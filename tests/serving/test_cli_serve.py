"""``modelserve serve`` as users run it: a subprocess on a free port, then Ctrl-C."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
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


def _start(port: int, *args: str) -> subprocess.Popen:
    """``modelserve serve ARGS`` on ``port`` (and a free gRPC port), once it answers /v2/health/ready."""
    proc = subprocess.Popen([sys.executable, "-m", "modelserve", "serve", *args, "--http-port", str(port),
                             "--grpc-port", str(_free_port()), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            _get(port, "/v2/health/ready")
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"the server did not start: {proc.communicate()}") from None
            time.sleep(0.1)


def test_serve_parses_its_defaults():
    args = cli.build_parser().parse_args(["serve", "a.onnx", "b=c.onnx"])
    assert (args.host, args.http_port, args.models) == ("127.0.0.1", 8000, ["a.onnx", "b=c.onnx"])


def test_engine_batches_run_one_per_core_on_the_cpu_by_default(monkeypatch):
    """A server's callers are concurrent: on the CPU one engine batch per core (at most 4) may run at
    once (benchmarks/RESULTS.md, "Cores"); on a GPU one; --concurrent-batches and a model's
    max_concurrent_batches override it."""
    from modelserve.batching import options
    from modelserve.cli import serve

    monkeypatch.setattr(options.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False)
    assert options.default_concurrent_batches("cpu") == 4
    monkeypatch.setattr(options.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert options.default_concurrent_batches("cpu") == 2
    assert options.default_concurrent_batches("cuda:0") == 1
    args = cli.build_parser().parse_args(["serve", "a.onnx"])
    assert serve._load_options(args, {"source": "a.onnx"})["batching"].max_concurrent_batches == 2
    assert serve._load_options(args, {"source": "a.onnx", "device": "cuda"})["batching"].max_concurrent_batches == 1
    assert serve._load_options(args, {"source": "a.onnx", "max_concurrent_batches": 3})[
        "batching"].max_concurrent_batches == 3
    args = cli.build_parser().parse_args(["serve", "a.onnx", "--concurrent-batches", "1"])
    assert serve._load_options(args, {"source": "a.onnx"})["batching"].max_concurrent_batches == 1


def test_two_models_of_one_name_are_refused(tmp_path, capsys):
    assert cli.main(["serve", "x=a.onnx", "x=b.onnx"]) == 1
    assert "name them" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "error"), [
    ("{", "cannot read"),
    ('{"models": {}}', "expected"),
    ('{"models": {"a": {"engine": "openvino"}}}', "source"),
    ('{"models": {"a": {"source": "a.onnx", "cnf": 0.3}}}', "unknown option"),
])
def test_a_bad_config_file_is_refused_with_the_reason(tmp_path, capsys, text, error):
    path = tmp_path / "models.json"
    path.write_text(text)
    assert cli.main(["serve", "--config", str(path)]) == 1
    assert error in capsys.readouterr().err


def test_serve_runs_until_interrupted(detector_path, tmp_path):
    port = _free_port()
    config = tmp_path / "models.json"
    config.write_text(json.dumps({"models": {"strict": {"source": str(detector_path), "conf": 0.9,
                                                        "max_batch_size": 2}}}))
    proc = _start(port, f"cars={detector_path}", str(detector_path), "--config", str(config))
    try:
        assert _get(port, "/v2/health/ready") == (200, {"ready": True})
        assert _get(port, "/v2/models/strict/ready") == (200, {"name": "strict", "ready": True})
        assert _get(port, "/v2/models/cars")[1]["name"] == "cars"
        assert _get(port, f"/v2/models/{detector_path.stem}/ready") == (200, {"name": detector_path.stem, "ready": True})
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_sigterm_drains_requests_in_flight_and_exits_0(detector_path, photo):
    """Requests sent before SIGTERM all get their full answer; then the server exits 0 and no
    longer accepts connections."""
    port = _free_port()
    proc = _start(port, f"det={detector_path}")
    image = photo("bus.jpg").read_bytes()
    boundary = "modelserve-test"
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{n}.jpg\"\r\n"
                    f"Content-Type: image/jpeg\r\n\r\n".encode() + image + b"\r\n" for n in range(6))
    body += f"--{boundary}--\r\n".encode()
    answers: list = []

    def post() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", "/v1/models/det/predict", body=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            resp = conn.getresponse()
            answers.append((resp.status, json.loads(resp.read())))
        finally:
            conn.close()

    try:
        threads = [threading.Thread(target=post) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # all four sent; their 24 images take a while on two cores
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert [status for status, _ in answers] == [200] * 4, answers
    assert all(len(a) == 6 for _, a in answers)
    with pytest.raises(OSError):
        _get(port, "/v2/health/live")
