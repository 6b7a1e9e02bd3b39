"""A bounded load test over a real loopback server: 64 concurrent clients send a few thousand mixed
good and bad requests; every request gets exactly one answer, good ones equal the embedded
Predictor's, bad ones their 4xx, never a 500 or a hang."""

from __future__ import annotations

import base64
import http.client
import io
import json
import random
import threading

import numpy as np
import pytest
from PIL import Image

import modelserve as ms
from modelserve.serving import ModelRepository
from modelserve.serving.rest import create_app

from .conftest import Running

CLIENTS = 64
REQUESTS = 2048  # in all: 32 per client


def _small_jpeg(path, width):
    img = Image.open(path).convert("RGB")
    img = img.resize((width, round(img.height * width / img.width)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def _infer_body(images):
    return json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                                   "data": [base64.b64encode(x).decode() for x in images]}],
                       "outputs": [{"name": "counts"}, {"name": "boxes"}, {"name": "class_ids"}]}).encode()


@pytest.fixture(scope="module")
def loaded(detector_path):
    repo = ModelRepository(max_pixels=1_000_000)
    repo.load("det", detector_path, batching=ms.Batching(max_batch_size=16, max_delay_ms=2, max_queue_size=1024))
    running = Running(create_app(repo, max_body_bytes=256 * 1024))
    yield running
    running.stop()
    repo.close()


def test_64_clients_mixed_requests_each_get_one_right_answer(loaded, photo, embedded):
    images = [_small_jpeg(photo(n), w) for n in ("bus.jpg", "zidane.jpg") for w in (256, 320)]
    want = [embedded.predict(x) for x in images]
    big = np.zeros((400, 400, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "PNG")
    kinds = {
        # kind: (method, path, body, expected status)
        "garbage image": ("POST", "/v2/models/det/infer", _infer_body([b"not an image"]), 400),
        "unknown model": ("POST", "/v2/models/nope/infer", _infer_body(images[:1]), 404),
        "unknown version": ("POST", "/v2/models/det/versions/7/infer", _infer_body(images[:1]), 404),
        "bad json": ("POST", "/v2/models/det/infer", b"{\"inputs\": [", 400),
        "wrong dtype": ("POST", "/v2/models/det/infer", json.dumps({"inputs": [
            {"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}]}).encode(), 400),
        "wrong shape": ("POST", "/v2/models/det/infer", json.dumps({"inputs": [
            {"name": "images", "datatype": "FP32", "shape": [1, 3, 8], "data": [0.0] * 24}]}).encode(), 400),
        "too big": ("POST", "/v1/models/det/predict", b"\xff" * (300 * 1024), 413),
        "v1 garbage": ("POST", "/v1/models/det/predict", b"GIF89a nonsense", 400),
    }
    rng = random.Random(14)
    plan = [rng.choice(list(kinds)) if rng.random() < 0.4 else rng.randrange(len(images))  # a bad kind or an image
            for _ in range(REQUESTS)]
    per_client = [plan[c::CLIENTS] for c in range(CLIENTS)]
    answers: list[list[tuple]] = [[] for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS)

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", loaded.port, timeout=60)
        barrier.wait(30)
        try:
            for item in per_client[c]:
                if isinstance(item, str):
                    method, path, body, _ = kinds[item]
                    headers = {"Content-Type": "application/octet-stream"}
                else:
                    method, path, body = "POST", "/v2/models/det/infer", _infer_body([images[item]])
                    headers = {"Content-Type": "application/json"}
                try:
                    conn.request(method, path, body=body, headers=headers)
                    resp = conn.getresponse()
                    answers[c].append((item, resp.status, resp.read()))
                except (OSError, http.client.HTTPException) as exc:
                    answers[c].append((item, None, repr(exc)))  # e.g. the 413 closes the connection
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", loaded.port, timeout=60)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert [len(a) for a in answers] == [len(p) for p in per_client]  # one answer per request
    good = bad = 0
    for item, status, body in (x for a in answers for x in a):
        if isinstance(item, str):
            assert status == kinds[item][3], (item, status, body)
            bad += 1
            continue
        assert status == 200, (status, body)
        out = {o["name"]: o for o in json.loads(body)["outputs"]}
        w = want[item]
        (n,) = out["counts"]["data"]
        assert n == len(w)
        boxes = np.array(out["boxes"]["data"], np.float32).reshape(out["boxes"]["shape"])[0, :n]
        ids = np.array(out["class_ids"]["data"]).reshape(out["class_ids"]["shape"])[0, :n]
        assert (ids == w.class_id).all()
        np.testing.assert_allclose(boxes, w.xyxy, atol=0.01)  # batch sizes vary: the last float bits may
        good += 1
    assert good + bad == REQUESTS and good > REQUESTS / 2 and bad > REQUESTS / 4
