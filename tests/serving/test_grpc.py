"""The gRPC front end through the real Triton client (tritonclient.grpc: sync, aio, stream) and
Triton's own generated stubs: results equal the embedded Predictor's exactly; a client's mistake is
never INTERNAL."""

from __future__ import annotations

import asyncio
import io
import queue
import time

import numpy as np
import pytest
from PIL import Image

import modelserve as ms

from .test_core_and_errors import assert_same

grpc = pytest.importorskip("grpc")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from modelserve.serving import ModelRepository  # noqa: E402
from modelserve.serving.grpc import create_server  # noqa: E402

PHOTOS = ("bus.jpg", "zidane.jpg")
MAX_MESSAGE = 2 * 1024 * 1024
TOKEN = "s3cret-token"
OUTPUTS = ("boxes", "scores", "class_ids", "counts", "json")


@pytest.fixture(scope="module")
def served(detector_path):
    """``det`` on a server with the defaults (no auth, no repository API)."""
    repo = ModelRepository(max_pixels=1_000_000)
    repo.load("det", detector_path, batching=ms.Batching(max_batch_size=8, max_delay_ms=2))
    server, port = create_server(repo, port=0, max_message_bytes=MAX_MESSAGE)
    yield f"127.0.0.1:{port}", repo
    server.stop(None)
    repo.close()


@pytest.fixture(scope="module")
def url(served):
    return served[0]


@pytest.fixture(scope="module")
def client(url):
    c = grpcclient.InferenceServerClient(url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def guarded(detector_path, tmp_path_factory):
    """``tiny`` (one request queued at most) on a server with a token and the repository API,
    over a registry holding ``det`` versions 1 (``prod``) and 2."""
    reg = ms.Registry(tmp_path_factory.mktemp("grpc") / "registry")
    reg.register("det", detector_path, alias="prod", metadata={"note": "first"})
    reg.register("det", detector_path, metadata={"note": "second"})  # differs in its metadata only
    repo = ModelRepository(registry=reg)
    repo.load("tiny", detector_path, batching=ms.Batching(max_batch_size=1, max_queue_size=1))
    server, port = create_server(repo, port=0, auth_token=TOKEN, repository_api=True)
    yield f"127.0.0.1:{port}", repo
    server.stop(None)
    repo.close()


@pytest.fixture(scope="module")
def photos(photo):
    return [photo(n).read_bytes() for n in PHOTOS]


def image_input(images):
    data = np.empty(len(images), dtype=object)
    data[:] = images
    tensor = grpcclient.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def code_of(excinfo):
    return excinfo.value.status()  # e.g. "StatusCode.NOT_FOUND"


def test_health_and_metadata(client, embedded):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("det") and client.is_model_ready("det", "1")
    meta = client.get_server_metadata()
    assert meta.name == "modelserve" and meta.version == ms.__version__ and "binary_tensor_data" in meta.extensions
    meta = client.get_model_metadata("det")
    assert meta.name == "det" and list(meta.versions) == ["1"] and meta.platform.startswith("modelserve_")
    assert [(i.name, i.datatype) for i in meta.inputs] == [("image", "BYTES"), (embedded.engine.inputs[0].name, "FP32")]
    assert list(meta.inputs[0].shape) == [-1]
    assert [o.name for o in meta.outputs][:5] == list(OUTPUTS)
    assert client.get_model_metadata("det", "1") == meta
    as_json = client.get_model_metadata("det", as_json=True)
    assert as_json["name"] == "det"


@pytest.mark.parametrize("which", [[0], [1], [0, 1]], ids=["bus", "zidane", "both"])
def test_encoded_photos_equal_the_embedded_predictor(client, embedded, photos, which):
    images = [photos[i] for i in which]
    outputs = [grpcclient.InferRequestedOutput(n) for n in OUTPUTS]
    result = client.infer("det", [image_input(images)], outputs=outputs, request_id="req-7",
                          parameters={"conf": 0.1, "max_det": 50})
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("req-7", "det", "1")
    assert [o.name for o in response.outputs] == list(OUTPUTS)
    assert_same(result, embedded.predict(images, conf=0.1, max_det=50), len(images))


def test_per_request_parameters_change_the_answer_as_embedded(client, embedded, photos):
    for params, options in (({"classes": "0,2", "iou": 0.5, "conf": 0.05}, {"classes": [0, 2], "iou": 0.5,
                                                                          "conf": 0.05}),
                            ({"classes": 0, "agnostic": True}, {"classes": [0], "agnostic": True}),
                            ({"conf": 0.6}, {"conf": 0.6})):
        result = client.infer("det", [image_input(photos)], parameters=params)
        want = embedded.predict(photos, **options)
        assert_same(result, want, len(photos))
    loose = client.infer("det", [image_input(photos[:1])], parameters={"conf": 0.05}).as_numpy("counts")[0]
    strict = client.infer("det", [image_input(photos[:1])], parameters={"conf": 0.6}).as_numpy("counts")[0]
    assert loose > strict


def test_requested_outputs_come_in_the_requested_order(client, photos):
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("counts", "json")]
    response = client.infer("det", [image_input(photos[:1])], outputs=outputs).get_response()
    assert [o.name for o in response.outputs] == ["counts", "json"] and len(response.raw_output_contents) == 2


def test_raw_tensors_go_to_the_engine_as_they_are(client, embedded):
    spec = embedded.engine.inputs[0]
    x = np.random.default_rng(0).random((2, 3, 96, 64), dtype=np.float32)
    tensor = grpcclient.InferInput(spec.name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    want = embedded.engine.run({spec.name: x})
    result = client.infer("det", [tensor])
    for o, w in zip(embedded.engine.outputs, want):
        np.testing.assert_array_equal(result.as_numpy(o.name), w)


def test_typed_contents_are_read_as_raw_ones(url, embedded, photos):
    """Triton's other tensor form (``contents``, not raw bytes), through Triton's own stubs."""
    spec = embedded.engine.inputs[0]
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    request = service_pb2.ModelInferRequest(model_name="det")
    request.inputs.add(name=spec.name, datatype="FP32", shape=list(x.shape)).contents.fp32_contents.extend(x.ravel())
    with grpc.insecure_channel(url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, timeout=30)
        out = response.outputs[0]
        got = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(list(out.shape))
        np.testing.assert_array_equal(got, embedded.engine.run({spec.name: x})[0])
        request = service_pb2.ModelInferRequest(model_name="det")
        request.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.append(photos[1])
        response = stub.ModelInfer(request, timeout=30)
    counts = response.raw_output_contents[[o.name for o in response.outputs].index("counts")]
    assert np.frombuffer(counts, np.int64).tolist() == [len(embedded.predict(photos[1]))]


def test_the_aio_client_gets_the_same_results(url, embedded, photos):
    aio = pytest.importorskip("tritonclient.grpc.aio")

    async def main():
        c = aio.InferenceServerClient(url)
        try:
            assert await c.is_server_ready() and await c.is_model_ready("det")
            return await asyncio.gather(*(c.infer("det", [image_input([p])], parameters={"conf": 0.2})
                                          for p in photos))
        finally:
            await c.close()

    for result, p in zip(asyncio.run(main()), photos):
        assert_same(result, embedded.predict([p], conf=0.2), 1)


def test_the_stream_answers_each_request_and_goes_on_after_a_failure(client, embedded, photos):
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("det", [image_input(photos[:1])], request_id="a")
        client.async_stream_infer("det", [image_input([b"not an image"])], request_id="b")
        client.async_stream_infer("nope", [image_input(photos[:1])], request_id="c")
        client.async_stream_infer("det", [image_input(photos)], request_id="d", parameters={"conf": 0.3})
        got = [answers.get(timeout=30) for _ in range(4)]
    finally:
        client.stop_stream()
    (first, e1), (_, e2), (_, e3), (last, e4) = got
    assert e1 is None and first.get_response().id == "a"
    assert_same(first, embedded.predict(photos[:1]), 1)
    assert e2 is not None and "INVALID_ARGUMENT" in str(e2)
    assert e3 is not None and "NOT_FOUND" in str(e3) and "nope" in str(e3)
    assert e4 is None and last.get_response().id == "d"
    assert_same(last, embedded.predict(photos, conf=0.3), 2)


def test_an_unknown_model_or_version_is_not_found(client, photos):
    for call in (lambda: client.infer("nope", [image_input(photos[:1])]),
                 lambda: client.infer("det", [image_input(photos[:1])], model_version="2"),
                 lambda: client.get_model_metadata("nope"), lambda: client.is_model_ready("nope"),
                 lambda: client.get_model_metadata("det", "2")):
        with pytest.raises(InferenceServerException) as excinfo:
            call()
        assert code_of(excinfo) == "StatusCode.NOT_FOUND"


def test_a_bad_image_is_invalid_argument_with_the_reason(client):
    with pytest.raises(InferenceServerException, match="(?i)image") as excinfo:
        client.infer("det", [image_input([b"not an image at all"])])
    assert code_of(excinfo) == "StatusCode.INVALID_ARGUMENT"


def _raw_request(name, datatype, shape, raw):
    request = service_pb2.ModelInferRequest(model_name="det")
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


def _two_inputs():
    request = _raw_request("x", "FP32", [1, 3, 32, 32], bytes(4 * 3072))
    request.inputs.add(name="y", datatype="FP32", shape=[1])
    request.raw_input_contents.append(bytes(4))
    return request


def _both_forms():
    request = _raw_request("image", "BYTES", [1], b"\x02\x00\x00\x00hi")
    request.inputs[0].contents.bytes_contents.append(b"hi")
    return request


BAD_REQUESTS = {
    "fp32 byte count": _raw_request("x", "FP32", [1, 3, 32, 32], bytes(10)),
    "wrong shape": _raw_request("x", "FP32", [1, 3, 4], bytes(4 * 12)),
    "wrong dtype FP64": _raw_request("x", "FP64", [1, 3, 32, 32], bytes(8 * 3072)),
    "INT32": _raw_request("x", "INT32", [1], bytes(4)),
    "unknown datatype": _raw_request("x", "NOPE", [1], bytes(4)),
    "negative shape": _raw_request("x", "BYTES", [-1], b""),
    "truncated bytes length": _raw_request("x", "BYTES", [1], b"\x01\x00"),
    "bytes overrun": _raw_request("x", "BYTES", [1], b"\x09\x00\x00\x00abc"),
    "bytes count": _raw_request("x", "BYTES", [2], b"\x01\x00\x00\x00a"),
    "no images": _raw_request("x", "BYTES", [0], b""),
    "two inputs": _two_inputs(),
    "raw and contents": _both_forms(),
    "no inputs": service_pb2.ModelInferRequest(model_name="det"),
    "unknown output": _raw_request("image", "BYTES", [1], b"\x02\x00\x00\x00hi"),
}
BAD_REQUESTS["unknown output"].outputs.add(name="masks")
BAD_REQUESTS["raw count"] = _raw_request("x", "FP32", [1], bytes(4))
BAD_REQUESTS["raw count"].raw_input_contents.append(b"extra")


@pytest.fixture(scope="module")
def stub(url):
    with grpc.insecure_channel(url, options=[("grpc.max_send_message_length", 8 * MAX_MESSAGE)]) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_malformed_requests_are_invalid_argument_never_internal(stub, name):
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.ModelInfer(BAD_REQUESTS[name], timeout=30)
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT, excinfo.value.details()
    assert excinfo.value.details()


@pytest.mark.parametrize("parameters", [{"conf": "high"}, {"conf": 2.0}, {"max_det": -1}, {"classes": "a,b"}], ids=str)
def test_bad_parameters_are_invalid_argument(client, photos, parameters):
    with pytest.raises(InferenceServerException) as excinfo:
        client.infer("det", [image_input(photos[1:])], parameters=parameters)
    assert code_of(excinfo) == "StatusCode.INVALID_ARGUMENT"


def test_a_message_over_the_limit_is_resource_exhausted(stub, client):
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.ModelInfer(_raw_request("image", "BYTES", [1], b"x" * (MAX_MESSAGE + 1)), timeout=30)
    assert excinfo.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    buf = io.BytesIO()
    Image.new("RGB", (1200, 1000)).save(buf, format="PNG")  # over max_pixels, a few KB
    with pytest.raises(InferenceServerException, match="pixels") as info:
        client.infer("det", [image_input([buf.getvalue()])])
    assert code_of(info) == "StatusCode.RESOURCE_EXHAUSTED"


AUTH = [("authorization", f"Bearer {TOKEN}")]


def _tiny_request(photos, **params):
    request = _raw_request("image", "BYTES", [1], len(photos[1]).to_bytes(4, "little") + photos[1])
    request.model_name = "tiny"
    for key, value in params.items():
        request.parameters[key].int64_param = value
    return request


def test_a_full_queue_is_unavailable_with_retry_after_and_deadlines_expire_in_the_queue(guarded, photos, embedded):
    url, repo = guarded
    hooks = repo.get("tiny").predictor.batcher._testing
    client = grpcclient.InferenceServerClient(url)
    with grpc.insecure_channel(url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        hooks.pause()
        try:
            queued = stub.ModelInfer.future(_tiny_request(photos), timeout=30, metadata=AUTH)
            assert hooks.wait_queued(1)
            with pytest.raises(grpc.RpcError) as excinfo:
                stub.ModelInfer(_tiny_request(photos), timeout=30, metadata=AUTH)
            error = excinfo.value
            assert error.code() == grpc.StatusCode.UNAVAILABLE and "full" in error.details().lower()
            assert ("retry-after", "1") in tuple(error.trailing_metadata())
        finally:
            hooks.resume()
        response = queued.result(timeout=30)
        counts = response.raw_output_contents[[o.name for o in response.outputs].index("counts")]
        assert np.frombuffer(counts, np.int64).tolist() == [len(embedded.predict(photos[1]))]

        hooks.pause()
        try:
            # Triton's ``timeout`` parameter (µs), expired by the server, then the client's deadline (gRPC's own)
            with pytest.raises(grpc.RpcError) as excinfo:
                stub.ModelInfer(_tiny_request(photos, timeout=200_000), timeout=30, metadata=AUTH)
            assert excinfo.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "never run" in excinfo.value.details()  # the server expired it in its queue
            with pytest.raises(InferenceServerException) as info:
                client.infer("tiny", [image_input(photos[1:])], client_timeout=0.3, headers=dict(AUTH))
            assert code_of(info) == "StatusCode.DEADLINE_EXCEEDED"
        finally:
            hooks.resume()
        deadline = time.monotonic() + 10
        while True:  # the server may still hold the expired request a moment: retry after a full queue
            try:
                assert stub.ModelInfer(_tiny_request(photos), timeout=30, metadata=AUTH).model_name == "tiny"
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    client.close()


def test_auth_guards_every_rpc_but_health(guarded, photos):
    url, _ = guarded
    client = grpcclient.InferenceServerClient(url)
    try:
        assert client.is_server_live() and client.is_server_ready()  # open without a token
        for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
            for call in (lambda h=headers: client.is_model_ready("tiny", headers=h),
                         lambda h=headers: client.get_model_metadata("tiny", headers=h),
                         lambda h=headers: client.infer("tiny", [image_input(photos[1:])], headers=h)):
                with pytest.raises(InferenceServerException) as excinfo:
                    call()
                assert code_of(excinfo) == "StatusCode.UNAUTHENTICATED"
        answers: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            client.async_stream_infer("tiny", [image_input(photos[1:])])
        except InferenceServerException:
            pass  # the stream may already be refused: the reason comes through the callback
        _, error = answers.get(timeout=30)
        client.stop_stream()
        assert error is not None and "UNAUTHENTICATED" in str(error.status())
        headers = dict(AUTH)
        client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=headers)
        client.async_stream_infer("tiny", [image_input(photos[1:])])
        result, error = answers.get(timeout=30)
        client.stop_stream()
        assert error is None and result.as_numpy("counts").shape == (1,)
        assert client.is_model_ready("tiny", headers=headers)
        assert client.infer("tiny", [image_input(photos[1:])], headers=headers).as_numpy("counts").shape == (1,)
    finally:
        client.close()


def test_the_repository_api_is_off_by_default(client):
    for call in (client.get_model_repository_index, lambda: client.load_model("det"),
                 lambda: client.unload_model("det")):
        with pytest.raises(InferenceServerException, match="repository API is off") as excinfo:
            call()
        assert code_of(excinfo) == "StatusCode.UNIMPLEMENTED"


def test_the_repository_api_loads_and_unloads_registry_models(guarded, photos):
    url, repo = guarded
    headers = dict(AUTH)
    client = grpcclient.InferenceServerClient(url)
    try:
        index = client.get_model_repository_index(headers=headers, as_json=True)
        assert [(m["name"], m["state"]) for m in index["models"]] == [("tiny", "READY")]
        client.load_model("det", headers=headers)  # the latest version
        assert client.get_model_metadata("det", headers=headers).versions == ["2"]
        request = service_pb2.RepositoryModelLoadRequest(model_name="det")
        request.parameters["ref"].string_param = "det@prod"
        with grpc.insecure_channel(url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            stub.RepositoryModelLoad(request, timeout=60, metadata=AUTH)
            assert client.get_model_metadata("det", headers=headers).versions == ["1"]
            assert client.infer("det", [image_input(photos[1:])], headers=headers).get_response().model_version == "1"
            request.parameters["ref"].string_param = "../some/path.onnx"
            with pytest.raises(grpc.RpcError) as excinfo:
                stub.RepositoryModelLoad(request, timeout=60, metadata=AUTH)
            assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            request.parameters["ref"].string_param = "ghost"
            with pytest.raises(grpc.RpcError) as excinfo:
                stub.RepositoryModelLoad(request, timeout=60, metadata=AUTH)
            assert excinfo.value.code() == grpc.StatusCode.NOT_FOUND
        client.unload_model("det", headers=headers)
        with pytest.raises(InferenceServerException) as info:
            client.get_model_metadata("det", headers=headers)
        assert code_of(info) == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException) as info:
            client.unload_model("det", headers=headers)
        assert code_of(info) == "StatusCode.NOT_FOUND"
    finally:
        client.close()


def test_the_message_classes_never_clash_with_tritonclients():
    """modelserve's private pool and tritonclient's default pool hold ``inference`` side by side,
    and a message of one parses as the other, field for field."""
    from modelserve.serving.grpc_messages import message

    ours = message("ModelInferRequest")(model_name="m", id="i")
    ours.parameters["conf"].double_param = 0.25
    ours.inputs.add(name="x", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend([1.0, 2.0])
    theirs = service_pb2.ModelInferRequest.FromString(ours.SerializeToString())
    assert theirs.parameters["conf"].double_param == 0.25 and list(theirs.inputs[0].shape) == [1, 2]
    assert list(theirs.inputs[0].contents.fp32_contents) == [1.0, 2.0]
    assert type(ours) is not service_pb2.ModelInferRequest
