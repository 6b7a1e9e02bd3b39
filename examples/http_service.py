"""A threaded web service on the standard library: POST an image, get detections as JSON.

    python examples/http_service.py MODEL.onnx [--port 8000]
    curl --data-binary @bus.jpg http://127.0.0.1:8000/detect?conf=0.3

Every request runs on its own thread; they all share one Predictor with batching on, so concurrent
requests are served by shared engine batches. Bad images answer 400 with the error message; a full
queue answers 503 so a load balancer can retry elsewhere.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import modelserve as ms

MAX_BODY = 32 * 1024 * 1024


def make_server(predictor: ms.Predictor, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlparse(self.path)
            if url.path != "/detect":
                return self._reply(404, {"error": "POST images to /detect"})
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                return self._reply(400, {"error": f"body must be 1..{MAX_BODY} bytes of an image"})
            data = self.rfile.read(length)
            query = parse_qs(url.query)
            try:
                conf = float(query["conf"][0]) if "conf" in query else None
                result = predictor.predict(data, conf=conf)
            except ValueError as exc:  # InvalidInputError is a ValueError, and so is a bad conf
                return self._reply(400, {"error": str(exc)})
            except ms.QueueFullError as exc:
                return self._reply(503, {"error": str(exc)})
            self._reply(200, result.to_dict())

        def log_message(self, *args: object) -> None:  # keep the example's output quiet
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    ap = argparse.ArgumentParser(description="modelserve example web service")
    ap.add_argument("model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    predictor = ms.load(args.model, batching=ms.Batching(max_batch_size=16, max_delay_ms=2))
    server = make_server(predictor, args.host, args.port)
    print(f"serving {args.model} on http://{args.host}:{server.server_port}/detect")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        predictor.close()


if __name__ == "__main__":
    main()
