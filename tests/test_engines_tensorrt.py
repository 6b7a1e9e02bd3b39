"""TensorRT adapter: the logic that needs no GPU (profiles, cache keys, plan cache, bindings),
plus GPU tests that run only where TensorRT, pycuda and an NVIDIA GPU are present."""

from __future__ import annotations

import json
import struct
import types

import numpy as np
import pytest

import modelserve as ms
from modelserve.engines import TensorRTEngine
from modelserve.engines._onnxinfo import OnnxTensor, read_onnx_info
from modelserve.engines._tensorrt import (
    _check_feed,
    _check_profile,
    Binding,
    binding_layout,
    cache_key,
    find_plan,
    key_digest,
    parse_device,
    profile_shapes,
    split_ultralytics_engine,
    write_plan,
)

F32 = np.dtype(np.float32)
DYN = OnnxTensor("images", F32, ("batch", 3, "height", "width"))


def test_profile_for_the_real_detector(detector_path, fixed_detector_path):
    info = read_onnx_info(detector_path)
    assert profile_shapes(info.inputs, imgsz=320, max_batch=32, opt_batch=8) == {
        "images": ((1, 3, 32, 32), (8, 3, 320, 320), (32, 3, 320, 320))
    }
    fixed = read_onnx_info(fixed_detector_path)
    assert profile_shapes(fixed.inputs) == {"images": ((1, 3, 640, 640),) * 3}


@pytest.mark.parametrize(
    "tensor, kwargs, expected",
    [
        (DYN, {"imgsz": 640}, ((1, 3, 32, 32), (1, 3, 640, 640), (8, 3, 640, 640))),
        (DYN, {"imgsz": (300, 500), "stride": 32}, ((1, 3, 32, 32), (1, 3, 320, 512), (8, 3, 320, 512))),
        (DYN, {"imgsz": 640, "min_imgsz": 320}, ((1, 3, 320, 320), (1, 3, 640, 640), (8, 3, 640, 640))),
        (OnnxTensor("images", F32, (4, 3, "h", "w")), {"imgsz": 64}, ((4, 3, 32, 32), (4, 3, 64, 64), (4, 3, 64, 64))),
        (OnnxTensor("images", F32, ("b", 3, 640, 640)), {"max_batch": 16, "opt_batch": 16},
         ((1, 3, 640, 640), (16, 3, 640, 640), (16, 3, 640, 640))),
    ],
)
def test_profile_shapes(tensor, kwargs, expected):
    assert profile_shapes([tensor], **kwargs)["images"] == expected


@pytest.mark.parametrize(
    "tensor, kwargs, match",
    [
        (OnnxTensor("tokens", F32, ("b", "seq")), {}, "cannot infer an optimisation profile"),
        (OnnxTensor("x", F32, ("b", "c", "h", "w")), {}, "cannot infer"),
        (DYN, {"max_batch": 0}, "max_batch"),
        (DYN, {"opt_batch": 9, "max_batch": 8}, "opt_batch"),
        (DYN, {"imgsz": (0, 320)}, "imgsz"),
        (DYN, {"imgsz": 64, "min_imgsz": 128}, "must not exceed"),
    ],
)
def test_profile_errors(tensor, kwargs, match):
    with pytest.raises(ms.InvalidInputError, match=match):
        profile_shapes([tensor], **kwargs)


def test_explicit_profile_is_checked():
    good = {"images": ((1, 3, 64, 64), (2, 3, 320, 320), (4, 3, 320, 320))}
    assert _check_profile(good, [DYN]) == good
    with pytest.raises(ms.InvalidInputError, match="exactly the inputs"):
        _check_profile({"x": good["images"]}, [DYN])
    with pytest.raises(ms.InvalidInputError, match="min <= opt <= max"):
        _check_profile({"images": ((1, 3, 64, 64), (8, 3, 64, 64), (4, 3, 64, 64))}, [DYN])


def _key(**over):
    args = dict(onnx_sha256="ab" * 32, tensorrt_version="10.3.0", gpu_name="NVIDIA H100 80GB HBM3",
                compute_capability=(9, 0), precision="fp32",
                profile={"images": ((1, 3, 32, 32), (1, 3, 640, 640), (8, 3, 640, 640))})
    args.update(over)
    return cache_key(**args)


def test_cache_key_covers_everything_that_makes_a_plan_valid():
    base = _key()
    assert base["compute_capability"] == "9.0" and base["profile"]["images"][2] == [8, 3, 640, 640]
    assert json.loads(json.dumps(base)) == base  # plain JSON
    variants = [_key(onnx_sha256="cd" * 32), _key(tensorrt_version="10.4.0"), _key(gpu_name="NVIDIA L4"),
                _key(compute_capability=(8, 9)), _key(precision="fp16"),
                _key(profile={"images": ((1, 3, 32, 32), (1, 3, 640, 640), (16, 3, 640, 640))})]
    digests = {key_digest(k) for k in [base, *variants]}
    assert len(digests) == 1 + len(variants)
    assert key_digest(_key()) == key_digest(base) and len(key_digest(base)) == 64  # deterministic


def test_plan_cache_round_trip_and_atomicity(tmp_path):
    key = _key()
    assert find_plan(str(tmp_path), key) is None
    path = write_plan(str(tmp_path), key, b"PLANBYTES", {"metadata": {"stride": "32"}})
    assert path.endswith(key_digest(key) + ".plan") and open(path, "rb").read() == b"PLANBYTES"  # no header
    hit = find_plan(str(tmp_path), key)
    assert hit is not None and hit[0] == path
    sidecar = hit[1]
    assert sidecar["format"] == "modelserve-tensorrt-plan/1" and sidecar["key"] == key
    assert sidecar["key_digest"] == key_digest(key) and sidecar["metadata"] == {"stride": "32"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([key_digest(key) + ".plan", key_digest(key) + ".json"])
    assert find_plan(str(tmp_path), _key(precision="fp16")) is None
    # a plan without its sidecar (a crash between the two writes) is never used
    (tmp_path / (key_digest(key) + ".json")).unlink()
    assert find_plan(str(tmp_path), key) is None
    # a sidecar whose key differs (a digest collision or a hand-edited file) is not trusted
    write_plan(str(tmp_path), key, b"P", {})
    side = tmp_path / (key_digest(key) + ".json")
    side.write_text(json.dumps({**json.loads(side.read_text()), "key": _key(gpu_name="other")}))
    assert find_plan(str(tmp_path), key) is None


def test_split_ultralytics_engine():
    meta = {"stride": 32, "names": {"0": "person", "1": "bus"}, "imgsz": [640, 640], "batch": 1}
    blob = json.dumps(meta).encode()
    got_meta, plan = split_ultralytics_engine(struct.pack("<i", len(blob)) + blob + b"\x00PLAN")
    assert got_meta == meta and plan == b"\x00PLAN"
    raw = b"ftrt\x00\x00\x00\x00" + b"x" * 100  # a plain plan
    assert split_ultralytics_engine(raw) == (None, raw)
    from modelserve._metadata import parse_metadata
    from modelserve.engines._tensorrt import _as_metadata

    info = parse_metadata(_as_metadata(meta))
    assert info.names == {0: "person", 1: "bus"} and info.imgsz == (640, 640) and info.stride == 32


class _FakeEngine:
    """A deserialised engine as TensorRT 10's named-tensor API shows it."""

    def __init__(self, tensors):
        self._t = tensors

    num_io_tensors = property(lambda self: len(self._t))

    def get_tensor_name(self, i):
        return self._t[i][0]

    def _get(self, name):
        return next(t for t in self._t if t[0] == name)

    def get_tensor_mode(self, name):
        return self._get(name)[1]

    def get_tensor_shape(self, name):
        return self._get(name)[2]

    def get_tensor_dtype(self, name):
        return self._get(name)[3]

    def get_tensor_profile_shape(self, name, profile):
        assert profile == 0 and self._get(name)[1] == "IN"
        return self._get(name)[4]


FAKE_TRT = types.SimpleNamespace(
    TensorIOMode=types.SimpleNamespace(INPUT="IN", OUTPUT="OUT"),
    nptype=lambda dt: {"FLOAT": np.float32, "HALF": np.float16}[dt],
)


def test_binding_layout_from_named_tensors():
    prof = ([1, 3, 32, 32], [1, 3, 320, 320], [8, 3, 320, 320])
    fake = _FakeEngine([
        ("images", "IN", [-1, 3, -1, -1], "FLOAT", prof),
        ("output0", "OUT", [-1, 22, -1], "FLOAT", None),
        ("aux", "OUT", [1, 4], "HALF", None),
    ])
    ins, outs = binding_layout(fake, FAKE_TRT)
    assert ins == [Binding("images", True, F32, (None, 3, None, None), ((1, 3, 32, 32), (1, 3, 320, 320), (8, 3, 320, 320)))]
    assert outs == [Binding("output0", False, F32, (None, 22, None), None),
                    Binding("aux", False, np.dtype(np.float16), (1, 4), None)]


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.zeros((9, 3, 64, 64), np.float32), "outside the engine's profile"),
        (np.zeros((1, 3, 352, 64), np.float32), "outside the engine's profile"),
        (np.zeros((1, 3, 64, 64), np.float64), "expected float32"),
        (np.zeros((3, 64, 64), np.float32), "expected float32 with shape"),
    ],
)
def test_feeds_are_checked_against_the_profile(arr, match):
    b = Binding("images", True, F32, (None, 3, None, None), ((1, 3, 32, 32), (1, 3, 320, 320), (8, 3, 320, 320)))
    _check_feed(b, np.zeros((8, 3, 320, 32), np.float32))  # the corners of the profile are fine
    with pytest.raises(ms.InvalidInputError, match=match):
        _check_feed(b, arr)


@pytest.mark.parametrize("device, expected", [("cuda", 0), ("CUDA:3", 3)])
def test_parse_device(device, expected):
    assert parse_device(device) == expected


@pytest.mark.parametrize("device", ["cpu", "gpu", "cuda:", "tensorrt"])
def test_bad_device(device):
    with pytest.raises(ms.InvalidInputError, match="device must be 'cuda' or 'cuda:N' for tensorrt"):
        parse_device(device)


def test_constructor_checks_arguments_before_needing_tensorrt(detector_path):
    with pytest.raises(ms.InvalidInputError, match="unknown tensorrt options"):
        TensorRTEngine(str(detector_path), device="cuda", threads=1)
    with pytest.raises(ms.InvalidInputError, match="device must be"):
        TensorRTEngine(str(detector_path), device="cpu")


def test_unavailable_without_tensorrt(detector_path):
    ok, reason = TensorRTEngine.availability()
    if ok:
        pytest.skip(f"tensorrt {reason} is installed here")
    assert reason == "tensorrt not installed: pip install modelserve[tensorrt]"
    assert TensorRTEngine.available_devices() == ()
    with pytest.raises(ms.EngineUnavailableError, match=r"tensorrt not installed: pip install modelserve\[tensorrt\]"):
        ms.load(detector_path, engine="tensorrt", device="cuda")


# -- GPU ----------------------------------------------------------------------------------------


def _gpu_or_skip():
    ok, reason = TensorRTEngine.availability()
    if not ok:
        pytest.skip(f"needs an NVIDIA GPU with TensorRT: {reason}")
    if not TensorRTEngine.available_devices():
        pytest.skip("tensorrt is installed but no CUDA device is visible")


@pytest.mark.gpu
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_gpu_detections_match_onnxruntime(detector_path, bgr, tmp_path, fp16):
    _gpu_or_skip()
    opts = {"cache_dir": str(tmp_path), "fp16": fp16, "max_batch": 4}
    with ms.load(detector_path, engine="tensorrt", device="cuda", engine_options=opts) as p, \
            ms.load(detector_path, engine="onnxruntime") as ref:
        for photo in ("bus.jpg", "zidane.jpg"):
            a, b = p.predict(bgr(photo)), ref.predict(bgr(photo))
            atol = 2e-2 if fp16 else 1e-3
            assert a.class_id.tolist() == b.class_id.tolist()
            np.testing.assert_allclose(a.confidence, b.confidence, atol=atol)
            np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1.0 if fp16 else 0.05)
        plan = p.engine.plan_path
    assert plan and plan.endswith(".plan") and plan.replace(".plan", ".json")
    # the second load reuses the cached plan and a prebuilt .plan loads with its sidecar metadata
    with ms.load(detector_path, engine="tensorrt", device="cuda", engine_options=opts) as p2:
        assert p2.engine.plan_path == plan
    with ms.load(plan) as p3:
        assert p3.engine.name == "tensorrt" and p3.names == p2.names


@pytest.mark.gpu
def test_gpu_threads_share_one_engine(detector_path):
    _gpu_or_skip()
    from concurrent.futures import ThreadPoolExecutor

    eng = TensorRTEngine(str(detector_path), device="cuda", num_contexts=2, max_batch=2)
    x = np.random.default_rng(0).random((2, 3, 320, 256), dtype=np.float32)
    (want,) = eng.run({"images": x})
    with ThreadPoolExecutor(4) as pool:
        for out in pool.map(lambda _: eng.run({"images": x})[0], range(8)):
            np.testing.assert_array_equal(out, want)
    eng.close()
    eng.close()
