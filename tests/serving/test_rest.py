"""The REST front end through the real Triton client (tritonclient.http) and plain HTTP requests:
results equal the embedded Predictor's exactly; a client's mistake is never a 500."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from .conftest import MAX_BODY
from .test_core_and_errors import assert_same, without_speed

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

PHOTOS = ("bus.jpg", "zidane.jpg")


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(server.url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def photos(photo):
    return [photo(n).read_bytes() for n in PHOTOS]


def request(server, method, path, body=None, headers=None):
    """``(status, headers, body)`` of one plain HTTP request."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def image_input(images, binary=True):
    data = np.empty(len(images), dtype=object)
    data[:] = images if binary else [base64.b64encode(x) for x in images]
    tensor = httpclient.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(data, binary_data=binary)
    return tensor


def test_health_and_metadata(client, server, embedded):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("det") and client.is_model_ready("det", "1")
    assert client.get_server_metadata()["name"] == "modelserve"
    meta = client.get_model_metadata("det")
    assert meta["name"] == "det" and meta["versions"] == ["1"]
    assert [i["datatype"] for i in meta["inputs"]] == ["BYTES", "FP32"]
    assert meta["inputs"][1]["name"] == embedded.engine.inputs[0].name
    assert {o["name"] for o in meta["outputs"]} >= {"boxes", "scores", "class_ids", "counts", "json"}
    assert meta["parameters"]["task"] == "detect"
    assert meta["parameters"]["class_names"] == {str(k): v for k, v in embedded.names.items()}
    assert meta["parameters"]["layout"] == embedded.layout == "ultralytics"
    assert client.get_model_metadata("det", "1") == meta
    status, _, body = request(server, "GET", "/v2/models/det/versions/2")
    assert status == 404 and "no version '2'" in json.loads(body)["error"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_encoded_photos_equal_the_embedded_predictor(client, embedded, photos, binary):
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary)
               for n in ("boxes", "scores", "class_ids", "counts", "json")]
    result = client.infer("det", [image_input(photos, binary)], outputs=outputs,
                          parameters={"conf": 0.1, "max_det": 50})
    assert_same(result, embedded.predict(photos, conf=0.1, max_det=50), len(photos))


def test_per_request_classes_and_iou(client, embedded, photos):
    result = client.infer("det", [image_input(photos[:1])], parameters={"classes": "0,2", "iou": 0.5, "conf": 0.05})
    want = embedded.predict(photos[:1], classes=[0, 2], iou=0.5, conf=0.05)
    assert set(result.as_numpy("class_ids")[0].tolist()) <= {0, 2, -1}
    assert_same(result, want, 1)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_raw_tensors_go_to_the_engine_as_they_are(client, embedded, binary):
    spec = embedded.engine.inputs[0]
    x = np.random.default_rng(0).random((2, 3, 96, 64), dtype=np.float32)  # the JSON form is ~20 bytes a value
    tensor = httpclient.InferInput(spec.name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    name = embedded.engine.outputs[0].name
    result = client.infer("det", [tensor], outputs=[httpclient.InferRequestedOutput(name, binary_data=binary)])
    np.testing.assert_array_equal(result.as_numpy(name), embedded.engine.run({spec.name: x})[0])


def test_the_aio_client_gets_the_same_results(server, embedded, photos):
    aio = pytest.importorskip("tritonclient.http.aio")

    async def main():
        c = aio.InferenceServerClient(server.url)
        try:
            assert await c.is_server_ready()
            return await asyncio.gather(*(c.infer("det", [image_input([p])]) for p in photos))
        finally:
            await c.close()

    for result, p in zip(asyncio.run(main()), photos):
        assert_same(result, embedded.predict([p]), 1)


def test_a_bad_image_is_400_with_the_reason(client, server):
    with pytest.raises(InferenceServerException, match="(?i)image"):
        client.infer("det", [image_input([b"not an image at all"])])
    body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "data": [base64.b64encode(b"GIF89a truncated").decode()]}]})
    status, _, answer = request(server, "POST", "/v2/models/det/infer", body)
    assert status == 400 and json.loads(answer)["error"]


def test_an_unknown_model_is_404(client, server):
    for method, path in (("GET", "/v2/models/nope"), ("GET", "/v2/models/nope/ready"),
                         ("POST", "/v2/models/nope/infer"), ("POST", "/v1/models/nope/predict")):
        status, _, body = request(server, method, path, b"{}" if method == "POST" else None)
        assert status == 404, path
        assert "nope" in json.loads(body)["error"]
    with pytest.raises(InferenceServerException, match="nope"):
        client.get_model_metadata("nope")


def test_a_body_over_the_limit_is_413(server):
    status, _, body = request(server, "POST", "/v2/models/det/infer", b"x" * (MAX_BODY + 1))
    assert status == 413 and "limit" in json.loads(body)["error"]
    # without a Content-Length: counted while it streams in
    chunks = iter([b"y" * 65536] * (MAX_BODY // 65536 + 2))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/v2/models/det/infer", body=chunks, encode_chunked=True)
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_an_image_over_the_pixel_limit_is_413(client):
    buf = io.BytesIO()
    Image.new("RGB", (1200, 1000)).save(buf, format="PNG")  # 1.2 million pixels, a few KB
    with pytest.raises(InferenceServerException, match="pixels"):
        client.infer("det", [image_input([buf.getvalue()])])


BAD_REQUESTS = [
    b"not json",
    b"[1, 2]",
    json.dumps({"inputs": []}),
    json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": [0.5]}]}),
    json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": ["a"] * 3072}]}),
    json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, 4], "data": [0.5] * 12}]}),
    json.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 3, 32, 32], "data": [0.5] * 3072}]}),
    json.dumps({"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}]}),
    json.dumps({"inputs": [{"name": "x", "datatype": "NOPE", "shape": [1], "data": [1]}]}),
    json.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [-1], "data": []}]}),
    json.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]}),
    json.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 9}}]}),
    json.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}] * 2}),
    json.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [0], "data": []}]}),
    b"[" * 100_000,  # too deep for the JSON parser
    '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ' + "[" * 900 + "1" + "]" * 900 + "}]}",
]


@pytest.mark.parametrize("body", BAD_REQUESTS, ids=range(len(BAD_REQUESTS)))
def test_malformed_requests_are_400_never_500(server, body):
    status, _, answer = request(server, "POST", "/v2/models/det/infer", body)
    assert status == 400, answer
    assert json.loads(answer)["error"]


@pytest.mark.parametrize("parameters", [{"conf": "high"}, {"conf": 2.0}, {"max_det": -1}, {"classes": "a,b"}], ids=str)
def test_bad_parameters_are_400(server, photos, parameters):
    body = json.dumps({"parameters": parameters, "inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(photos[1]).decode()]}]})
    status, _, answer = request(server, "POST", "/v2/models/det/infer", body)
    assert status == 400, answer


def test_an_unknown_output_and_a_bad_header_length_are_400(server, photos):
    body = json.dumps({"outputs": [{"name": "masks"}], "inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(photos[1]).decode()]}]})
    status, _, answer = request(server, "POST", "/v2/models/det/infer", body)
    assert status == 400 and "masks" in json.loads(answer)["error"]
    status, _, _ = request(server, "POST", "/v2/models/det/infer", body, {"Inference-Header-Content-Length": "99999"})
    assert status == 400


def _multipart(files):
    boundary = "----modelserve-test"
    parts = []
    for n, data in enumerate(files):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image{n}"; filename="p{n}.jpg"\r\n'
                     f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_v1_predict_takes_uploads_and_raw_bodies(server, embedded, photos):
    body, headers = _multipart(photos[:1])  # curl -F image=@bus.jpg
    status, _, answer = request(server, "POST", "/v1/models/det/predict?conf=0.3&classes=0", body, headers)
    assert status == 200
    assert without_speed(answer) == without_speed(embedded.predict([photos[0]], conf=0.3, classes=[0])[0].to_json())
    body, headers = _multipart(photos)  # two files: a list
    status, _, answer = request(server, "POST", "/v1/models/det/predict", body, headers)
    got = json.loads(answer)
    assert status == 200 and [len(g["detections"]) for g in got] == [len(w) for w in embedded.predict(photos)]
    status, _, answer = request(server, "POST", "/v1/models/det/predict?max_det=3", photos[1],  # --data-binary @
                                {"Content-Type": "application/octet-stream"})
    assert status == 200
    assert without_speed(answer) == without_speed(embedded.predict([photos[1]], max_det=3)[0].to_json())
    status, _, answer = request(server, "POST", "/v1/models/det/predict?conf=abc", photos[1])
    assert status == 400 and "conf" in json.loads(answer)["error"]
    status, _, answer = request(server, "POST", "/v1/models/det/predict", b"junk")
    assert status == 400


def test_a_full_queue_is_503_with_retry_after(detector_path, photos):
    import time

    import modelserve as ms
    from modelserve.serving import ModelRepository
    from modelserve.serving.rest import create_app

    from .conftest import Running

    class Slow(ms.Engine):
        name = "slow-test"

        def __init__(self, inner):
            self.inner, self.inputs, self.outputs = inner, inner.inputs, inner.outputs
            self.metadata, self.device = inner.metadata, inner.device

        def run(self, feeds):
            time.sleep(0.8)  # long enough for all six requests to arrive while the first runs
            return self.inner.run(feeds)

    inner = ms.load(detector_path)
    repo = ModelRepository()
    repo.add("slow", ms.load(Slow(inner.engine), batching=ms.Batching(max_batch_size=1, max_queue_size=1)))
    running = Running(create_app(repo))
    try:
        body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                       "data": [base64.b64encode(photos[1]).decode()]}]})
        answers = []
        barrier = threading.Barrier(6)

        def send():
            barrier.wait(timeout=10)
            answers.append(request(running, "POST", "/v2/models/slow/infer", body))

        threads = [threading.Thread(target=send) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        statuses = sorted(a[0] for a in answers)
        assert len(statuses) == 6 and set(statuses) == {200, 503}, statuses
        for status, headers, answer in answers:
            if status == 503:
                assert headers.get("retry-after") == "1" and "full" in json.loads(answer)["error"].lower()
    finally:
        running.stop()
        inner.close()
