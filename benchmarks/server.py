"""Requests through `modelserve serve` (REST and gRPC, KServe v2, the real tritonclient, binary data)
against the embedded Predictor and against the FastAPI example, in the same run.

    OMP_NUM_THREADS=1 YOLO_OFFLINE=1 .refenv/bin/python benchmarks/server.py [--requests 400] [--clients 1 8]

Each row: C client threads send encoded JPEGs (bus.jpg, 1080x810) one per request; throughput and
p50/p99 latency. The servers run in this process (``modelserve.serving.Server``, REST and gRPC, in a
thread; the FastAPI example on uvicorn in another), so client, server and engine share the machine's
cores, as on the 2-core VM this is recorded on. The overhead per request is the server's p50 minus
the embedded Predictor's p50 with one client.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.assets, examples

import modelserve as ms  # noqa: E402
from tests import assets  # noqa: E402


class _Running:
    def __init__(self, app: object) -> None:
        import uvicorn

        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP; without
        # it every POST answer stalls ~40 ms (Nagle against the client's delayed ACK)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def _measure(call, requests: int, clients: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of ``requests`` calls from ``clients`` threads."""
    for _ in range(min(10, requests)):
        call()
    lat: list[float] = []

    def one(_: int) -> None:
        t = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    ms_ = np.array(lat) * 1000
    return requests / wall, float(np.percentile(ms_, 50)), float(np.percentile(ms_, 99))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    args = ap.parse_args()

    import urllib.request

    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from modelserve.serving import ModelRepository
    from modelserve.serving.server import Server, ServerOptions

    model = str(assets.detector_path())
    jpeg = Path(assets.photo("bus.jpg")).read_bytes()
    batching = ms.Batching(max_batch_size=16, max_delay_ms=2)
    embedded = ms.load(model, batching=batching)
    repo = ModelRepository()
    repo.load("det", model, batching=batching)
    server = Server(repo, ServerOptions(http_port=0, grpc_port=0, follow_interval_s=None, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    if not server.wait_started():
        raise SystemExit("the server did not start")
    os.environ["MODEL"] = model
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import fastapi_service

        fast = _Running(fastapi_service.app)
    except ImportError:
        fast = None

    local = threading.local()

    def triton() -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        inp = httpclient.InferInput("images", [1], "BYTES")
        inp.set_data_from_numpy(np.array([jpeg], dtype=object), binary_data=True)
        client.infer("det", [inp], outputs=[httpclient.InferRequestedOutput("boxes", binary_data=True)])

    def triton_grpc() -> None:
        client = getattr(local, "grpc", None)
        if client is None:
            client = local.grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        inp = grpcclient.InferInput("images", [1], "BYTES")
        inp.set_data_from_numpy(np.array([jpeg], dtype=object))
        client.infer("det", [inp], outputs=[grpcclient.InferRequestedOutput("boxes")])

    def v1_call() -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/v1/models/det/predict", data=jpeg,
                                     method="POST", headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(req) as resp:
            resp.read()

    def fastapi_call() -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{fast.port}/detect", data=jpeg, method="POST")
        with urllib.request.urlopen(req) as resp:
            resp.read()

    cases = [("embedded Predictor (predict(bytes))", lambda: embedded.predict(io.BytesIO(jpeg).getvalue())),
             ("modelserve serve, tritonclient.http binary", triton),
             ("modelserve serve, tritonclient.grpc (raw contents)", triton_grpc),
             ("modelserve serve, POST /v1/models/det/predict (urllib)", v1_call)]
    if fast is not None:
        cases.append(("FastAPI example (examples/fastapi_service.py)", fastapi_call))
    print(f"{args.requests} requests of bus.jpg (1080x810, {len(jpeg)} bytes), detector {Path(model).name}\n")
    print("| path | clients | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|")
    p50 = {}
    try:
        for clients in args.clients:
            for name, call in cases:
                rate, a, b = _measure(call, args.requests, clients)
                p50[(name, clients)] = a
                print(f"| {name} | {clients} | {rate:.1f} | {a:.1f} | {b:.1f} |", flush=True)
    finally:
        server.stop()
        thread.join(timeout=60)  # the server closes the repository
        if fast is not None:
            fast.stop()
        embedded.close()
    c = min(args.clients)
    base = p50[(cases[0][0], c)]
    for name, _ in cases[1:]:
        print(f"\noverhead per request ({name}, {c} client): {p50[(name, c)] - base:.1f} ms over the embedded p50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
