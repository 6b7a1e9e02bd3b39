"""TensorRT adapter: the logic that needs no GPU (profiles, cache keys, plan cache, bindings),
plus GPU tests that run only where TensorRT, pycuda and an NVIDIA GPU are present."""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import types

import numpy as np
import pytest

import modelserve as ms
from modelserve.engines import TensorRTEngine
from modelserve.engines import _tensorrt
from modelserve.engines._onnxinfo import OnnxTensor, read_onnx_info
from modelserve.engines._pool import SlotPool
from modelserve.engines._tensorrt import (
    _attach_timing_cache,
    _check_feed,
    _check_profile,
    _save_timing_cache,
    Binding,
    binding_layout,
    builder_precision,
    cache_key,
    find_plan,
    identical_profiles,
    key_digest,
    max_batch_of,
    parse_device,
    profile_shapes,
    split_ultralytics_engine,
    unresolved_outputs,
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
        # the default covers the micro-batcher's default max_batch_size (32), optimum 8
        (DYN, {"imgsz": 640}, ((1, 3, 32, 32), (8, 3, 640, 640), (32, 3, 640, 640))),
        (DYN, {"imgsz": (300, 500), "stride": 32}, ((1, 3, 32, 32), (8, 3, 320, 512), (32, 3, 320, 512))),
        (DYN, {"imgsz": 640, "min_imgsz": 320}, ((1, 3, 320, 320), (8, 3, 640, 640), (32, 3, 640, 640))),
        (DYN, {"imgsz": 320, "max_batch": 4}, ((1, 3, 32, 32), (4, 3, 320, 320), (4, 3, 320, 320))),  # opt <= max
        (DYN, {"imgsz": 320, "max_batch": 64, "opt_batch": 1}, ((1, 3, 32, 32), (1, 3, 320, 320), (64, 3, 320, 320))),
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
        (DYN, {"opt_batch": 33}, r"opt_batch \(33\) must be <= max_batch \(32\)"),
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
                compute_capability=(9, 0), precision="fp32", builder_flags=(),
                profile={"images": ((1, 3, 32, 32), (8, 3, 640, 640), (32, 3, 640, 640))}, num_profiles=2)
    args.update(over)
    return cache_key(**args)


def test_cache_key_covers_everything_that_makes_a_plan_valid():
    base = _key()
    assert base["compute_capability"] == "9.0" and base["profile"]["images"][2] == [32, 3, 640, 640]
    assert base["builder_flags"] == [] and base["num_profiles"] == 2
    assert json.loads(json.dumps(base)) == base  # plain JSON
    variants = [_key(onnx_sha256="cd" * 32), _key(tensorrt_version="10.4.0"), _key(gpu_name="NVIDIA L4"),
                _key(compute_capability=(8, 9)), _key(precision="fp16"), _key(builder_flags=("TF32",)),
                _key(profile={"images": ((1, 3, 32, 32), (8, 3, 640, 640), (16, 3, 640, 640))}),
                _key(num_profiles=1)]
    digests = {key_digest(k) for k in [base, *variants]}
    assert len(digests) == 1 + len(variants)
    assert key_digest(_key()) == key_digest(base) and len(key_digest(base)) == 64  # deterministic
    assert _key(builder_flags=("TF32", "FP16")) == _key(builder_flags=("FP16", "TF32"))  # order-free
    with pytest.raises(ms.InvalidInputError, match="num_profiles"):
        _key(num_profiles=0)


def test_precision_is_precise():
    # FP32 means TF32 off (TensorRT enables it by default); FP16 keeps TF32 for the FP32 layers
    assert builder_precision(False) == ("fp32", ())
    assert builder_precision(True) == ("fp16", ("FP16", "TF32"))
    p32, f32 = builder_precision(False)
    p16, f16 = builder_precision(True)
    assert key_digest(_key(precision=p32, builder_flags=f32)) != key_digest(_key(precision=p16, builder_flags=f16))


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
    """A deserialised engine as TensorRT 10's named-tensor API shows it. ``profiles`` maps an
    input name to one (min, opt, max) per optimisation profile."""

    def __init__(self, tensors, profiles=None):
        self._t = tensors
        self._profiles = profiles or {}

    num_io_tensors = property(lambda self: len(self._t))
    num_optimization_profiles = property(lambda self: max([len(v) for v in self._profiles.values()] or [1]))

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
        assert self._get(name)[1] == "IN" and -1 in self._get(name)[2], "only dynamic inputs have profiles"
        return self._profiles[name][profile]


FAKE_TRT = types.SimpleNamespace(
    TensorIOMode=types.SimpleNamespace(INPUT="IN", OUTPUT="OUT"),
    nptype=lambda dt: {"FLOAT": np.float32, "HALF": np.float16}[dt],
)
PROF = ([1, 3, 32, 32], [8, 3, 320, 320], [32, 3, 320, 320])


def test_binding_layout_from_named_tensors():
    fake = _FakeEngine([
        ("images", "IN", [-1, 3, -1, -1], "FLOAT"),
        ("scale", "IN", [1, 2], "FLOAT"),
        ("output0", "OUT", [-1, 22, -1], "FLOAT"),
        ("aux", "OUT", [1, 4], "HALF"),
    ], {"images": [PROF, ([1, 3, 32, 32], [1, 3, 64, 64], [2, 3, 64, 64])]})
    ins, outs = binding_layout(fake, FAKE_TRT)
    assert ins == [Binding("images", True, F32, (None, 3, None, None), ((1, 3, 32, 32), (8, 3, 320, 320), (32, 3, 320, 320))),
                   Binding("scale", True, F32, (1, 2), ((1, 2),) * 3)]  # a static input: its shape, no profile query
    assert outs == [Binding("output0", False, F32, (None, 22, None), None),
                    Binding("aux", False, np.dtype(np.float16), (1, 4), None)]
    ins1, _ = binding_layout(fake, FAKE_TRT, profile_index=1)
    assert ins1[0].profile == ((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 64, 64))


@pytest.mark.parametrize(
    "profiles, expected",
    [
        ([PROF], [0]),
        ([PROF, PROF, PROF], [0, 1, 2]),
        ([PROF, ([1, 3, 32, 32], [1, 3, 64, 64], [2, 3, 64, 64]), PROF], [0, 2]),  # a different profile is not used
    ],
)
def test_identical_profiles_give_one_per_context(profiles, expected):
    fake = _FakeEngine([("images", "IN", [-1, 3, -1, -1], "FLOAT"), ("out", "OUT", [-1, 5], "FLOAT")],
                       {"images": profiles})
    ins, _ = binding_layout(fake, FAKE_TRT)
    assert identical_profiles(fake, ins) == expected


def test_static_engines_share_profile_zero():
    fake = _FakeEngine([("images", "IN", [1, 3, 640, 640], "FLOAT"), ("out", "OUT", [1, 5], "FLOAT")])
    ins, _ = binding_layout(fake, FAKE_TRT)
    assert identical_profiles(fake, ins) is None


@pytest.mark.parametrize(
    "bindings, expected",
    [
        ([Binding("images", True, F32, (None, 3, None, None), tuple(tuple(p) for p in PROF))], 32),
        ([Binding("images", True, F32, (1, 3, 640, 640), ((1, 3, 640, 640),) * 3)], 1),  # a static batch of 1
        ([Binding("a", True, F32, (None, 3), ((1, 3), (4, 3), (16, 3))),
          Binding("b", True, F32, (None, 2), ((1, 2), (2, 2), (8, 2)))], 8),  # what every input accepts
        ([], None),
        ([Binding("s", True, F32, (), ((), (), ()))], None),  # a scalar has no batch axis
    ],
)
def test_max_batch_of(bindings, expected):
    assert max_batch_of(bindings) == expected


class _FakeContext:
    """An execution context: output shapes follow the input's batch; ``unknown`` outputs stay -1
    (data-dependent)."""

    def __init__(self, unknown=()):
        self.shapes, self.unknown, self.profile = {}, set(unknown), 0

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        if name in self.shapes:
            return list(self.shapes[name])
        if name in self.unknown:
            return [-1, 6]
        return [self.shapes["images"][0], 22, 2100]


def test_unresolved_outputs_finds_data_dependent_shapes():
    ins = [Binding("images", True, F32, (None, 3, None, None), tuple(tuple(p) for p in PROF))]
    outs = [Binding("output0", False, F32, (None, 22, None), None), Binding("nms", False, F32, (None, 6), None)]
    ctx = _FakeContext(unknown={"nms"})
    assert unresolved_outputs(ctx, ins, outs) == ["nms"]
    assert ctx.shapes["images"] == (8, 3, 320, 320)  # probed at the profile's optimum
    assert unresolved_outputs(_FakeContext(), ins, outs[:1]) == []


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.zeros((33, 3, 64, 64), np.float32), "outside the engine's profile"),
        (np.zeros((1, 3, 352, 64), np.float32), "outside the engine's profile"),
        (np.zeros((1, 3, 64, 64), np.float64), "expected float32"),
        (np.zeros((3, 64, 64), np.float32), "expected float32 with shape"),
    ],
)
def test_feeds_are_checked_against_the_profile(arr, match):
    b = Binding("images", True, F32, (None, 3, None, None), ((1, 3, 32, 32), (8, 3, 320, 320), (32, 3, 320, 320)))
    _check_feed(b, np.zeros((32, 3, 320, 32), np.float32))  # the corners of the profile are fine
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


# -- the slot pool the contexts live in (no GPU) ------------------------------------------------


class _Obj:
    def __init__(self, n):
        self.n = n


def _counter_pool(size=2, **kw):
    made = []

    def factory():
        made.append(_Obj(len(made)))
        return made[-1]

    return SlotPool(factory, size, "tensorrt", **kw), made


def _hold(pool, release: threading.Event, got: threading.Event, box: list):
    def body():
        try:
            with pool.slot() as obj:
                box.append(obj)
                got.set()
                release.wait(10)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            box.append(exc)
            got.set()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def test_pool_close_waits_for_busy_objects_and_then_hands_all_back():
    pool, made = _counter_pool()
    with pool.slot():
        pass
    release, got, box = threading.Event(), threading.Event(), []
    t = _hold(pool, release, got, box)
    assert got.wait(5)
    threading.Timer(0.1, release.set).start()
    t0 = time.monotonic()
    objs = pool.close(timeout=5, on_late=lambda o: pytest.fail("nothing is late"))
    assert 0.05 < time.monotonic() - t0 < 5  # it waited for the run, not for the timeout
    assert {id(o) for o in objs} == {id(o) for o in made} and pool.pending == 0
    t.join(5)
    assert pool.close() == []  # idempotent


def test_pool_close_never_hands_out_an_object_still_in_use():
    pool, made = _counter_pool()
    with pool.slot():  # makes an idle object
        pass
    release, got, box = threading.Event(), threading.Event(), []
    t = _hold(pool, release, got, box)
    assert got.wait(5)
    late, drained = [], []
    objs = pool.close(timeout=0.05, on_late=late.append, on_drained=lambda: drained.append(list(late)))
    busy = box[0]
    assert busy is made[0] and objs == []  # the only object is in use: nothing to release yet
    assert pool.pending == 1 and late == [] and drained == []
    release.set()
    t.join(5)
    assert late == [busy] and drained == [[busy]]  # on_drained after the last on_late
    assert pool.pending == 0


def test_pool_refuses_new_and_waiting_callers_once_closed():
    pool, _ = _counter_pool(size=1)
    release, got, box = threading.Event(), threading.Event(), []
    t = _hold(pool, release, got, box)
    assert got.wait(5)
    waiter_got, waiter_box = threading.Event(), []
    w = _hold(pool, threading.Event(), waiter_got, waiter_box)  # blocks: the one object is busy
    time.sleep(0.05)
    assert not waiter_got.is_set()
    closer = threading.Thread(target=pool.close, kwargs={"timeout": 5}, daemon=True)
    closer.start()
    assert waiter_got.wait(5)
    assert isinstance(waiter_box[0], ms.ModelserveError) and "tensorrt engine is closed" in str(waiter_box[0])
    with pytest.raises(ms.ModelserveError, match="this tensorrt engine is closed"):
        with pool.slot():
            pass
    release.set()
    for th in (t, w, closer):
        th.join(5)


def test_pool_object_made_while_closing_goes_to_close_not_the_caller():
    started, finish = threading.Event(), threading.Event()

    def slow_factory():
        started.set()
        finish.wait(5)
        return _Obj(0)

    pool = SlotPool(slow_factory, 1, "tensorrt")
    box, got = [], threading.Event()
    t = _hold(pool, threading.Event(), got, box)
    assert started.wait(5)
    threading.Timer(0.05, finish.set).start()
    objs = pool.close(timeout=5)
    t.join(5)
    assert len(objs) == 1 and isinstance(box[0], ms.ModelserveError)
    assert pool.pending == 0


def test_pool_failed_creation_after_close_still_drains():
    started, finish = threading.Event(), threading.Event()

    def failing_factory():
        started.set()
        finish.wait(5)
        raise RuntimeError("out of memory")

    pool = SlotPool(failing_factory, 1, "tensorrt")
    box, got = [], threading.Event()
    t = _hold(pool, threading.Event(), got, box)
    assert started.wait(5)
    drained = []
    assert pool.close(timeout=0.01, on_late=lambda o: pytest.fail("no object"), on_drained=lambda: drained.append(1)) == []
    assert pool.pending == 1
    finish.set()
    t.join(5)
    assert isinstance(box[0], RuntimeError) and drained == [1] and pool.pending == 0


def test_pool_initial_objects_count_towards_size():
    first = _Obj("first")
    pool, made = _counter_pool(size=2, initial=[first])
    with pool.slot() as a:
        assert a is first and pool.created == 1
        with pool.slot() as b:
            assert b is made[0] and pool.created == 2
    with pytest.raises(ValueError, match="exceed the pool size"):
        SlotPool(lambda: None, 1, initial=[1, 2])


# -- timing cache fallback (no GPU) -------------------------------------------------------------


class _FakeTimingCache:
    def __init__(self, data):
        self.data = data

    def serialize(self):
        return self.data


class _FakeConfig:
    """The parts of IBuilderConfig the timing cache and flags use. ``bad``: how create/set treat a
    stored blob: "raise", "none" (create returns None) or "mismatch" (set returns False)."""

    def __init__(self, bad=None, empty_fails=False, serialized=b"TCACHE"):
        self.bad, self.empty_fails, self.serialized = bad, empty_fails, serialized
        self.attached = None
        self.flags = {"TF32"}  # TensorRT's default
        self.profiles = []
        self.pool_limits = {}

    def create_timing_cache(self, blob):
        blob = bytes(blob)
        if blob and self.bad == "raise":
            raise RuntimeError("corrupt timing cache")
        if blob and self.bad == "none" or not blob and self.empty_fails:
            return None
        return _FakeTimingCache(blob)

    def set_timing_cache(self, cache, ignore_mismatch):
        assert ignore_mismatch is False
        if cache.data and self.bad == "mismatch":
            return False
        self.attached = cache
        return True

    def get_timing_cache(self):
        return _FakeTimingCache(self.serialized) if self.attached is not None else None

    # flags, profiles and memory pools, for the builder fakes below
    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile.shapes)
        return len(self.profiles) - 1

    def set_memory_pool_limit(self, pool, size):
        self.pool_limits[pool] = size


@pytest.mark.parametrize("bad", ["raise", "none", "mismatch"])
def test_unusable_timing_cache_falls_back_to_an_empty_one(bad, caplog):
    config = _FakeConfig(bad=bad)
    with caplog.at_level(logging.WARNING, logger="modelserve.tensorrt"):
        assert _attach_timing_cache(config, b"garbage", "/c/timing.cache") is True
    assert config.attached is not None and config.attached.data == b""  # a fresh cache is attached
    assert "timing cache /c/timing.cache is unusable" in caplog.text


def test_good_timing_cache_is_used_and_saved(tmp_path):
    config = _FakeConfig()
    assert _attach_timing_cache(config, b"STORED", "x") is True and config.attached.data == b"STORED"
    path = tmp_path / "timing.cache"
    assert _save_timing_cache(config, str(path)) is True and path.read_bytes() == b"TCACHE"


def test_no_timing_cache_at_all_means_nothing_is_saved(tmp_path, caplog):
    config = _FakeConfig(bad="raise", empty_fails=True)
    with caplog.at_level(logging.WARNING, logger="modelserve.tensorrt"):
        assert _attach_timing_cache(config, b"garbage", "x") is False
    assert "building without one" in caplog.text
    empty = _FakeConfig(serialized=b"")
    _attach_timing_cache(empty, b"", "x")
    assert _save_timing_cache(empty, str(tmp_path / "t.cache")) is False and not list(tmp_path.iterdir())


# -- the whole engine on fake TensorRT and pycuda (no GPU) --------------------------------------


class _Log(list):
    def add(self, what):
        self.append((what, threading.get_ident()))

    def names(self):
        return [w for w, _ in self]


class _FakeCtx:
    def __init__(self, log):
        self.log = log

    def push(self):
        self.log.add("push")

    def detach(self):
        self.log.add("detach")


class _FakeDev:
    def __init__(self, nbytes, log):
        self.nbytes, self.log, self.freed = nbytes, log, False

    def free(self):
        self.log.add("free")
        self.freed = True

    def __int__(self):
        return 0xD0


def _fake_cuda(log):
    class Device:
        @staticmethod
        def count():
            return 1

        def __init__(self, index):
            pass

        def name(self):
            return "Fake GPU"

        def compute_capability(self):
            return (9, 0)

        def retain_primary_context(self):
            log.add("retain")
            return _FakeCtx(log)

    class Stream:
        handle = 1234

        def synchronize(self):
            pass

    return types.SimpleNamespace(
        init=lambda: None, Device=Device, Stream=Stream,
        Context=types.SimpleNamespace(pop=lambda: log.add("pop")),
        pagelocked_empty=lambda count, dtype: np.zeros(count, dtype),
        mem_alloc=lambda nbytes: _FakeDev(nbytes, log),
        memcpy_htod_async=lambda dev, host, stream: None,
        memcpy_dtoh_async=lambda host, dev, stream: host.fill(1.0),
    )


class _FakeRunEngine(_FakeEngine):
    def __init__(self, plan, log):
        self.plan, self.log = plan, log
        profiles = plan["profiles"] or [{}]
        super().__init__([("images", "IN", [-1, 3, -1, -1], "FLOAT"), ("output0", "OUT", [-1, 22, -1], "FLOAT")]
                         + ([("nms", "OUT", [-1, 6], "FLOAT")] if plan.get("nms") else []),
                         {"images": [p["images"] for p in profiles]})

    def create_execution_context(self):
        ctx = _FakeContext(unknown={"nms"})
        engine = self

        def set_profile(index, stream):
            engine.log.add(f"profile {index}")
            ctx.profile = index
            return True

        ctx.set_optimization_profile_async = set_profile
        ctx.set_tensor_address = lambda name, addr: None
        ctx.execute_async_v3 = lambda stream: True
        return ctx


def _fake_trt(log, built):
    class Logger:
        WARNING = 2
        made = 0

        def __init__(self, level):
            Logger.made += 1

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, mn, op, mx):
            self.shapes[name] = [list(mn), list(op), list(mx)]

    class Builder:
        def __init__(self, logger):
            self.config = None

        def create_network(self, flags):
            return object()

        def create_builder_config(self):
            self.config = _FakeConfig()
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            built.append(config)
            return json.dumps({"profiles": config.profiles, "flags": sorted(config.flags)}).encode()

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            try:
                return _FakeRunEngine(json.loads(bytes(plan)), log)
            except ValueError:
                return None  # what TensorRT does with a corrupt plan

    return types.SimpleNamespace(
        __version__="10.9.0", Logger=Logger, Builder=Builder, OnnxParser=Parser, Runtime=Runtime,
        TensorIOMode=FAKE_TRT.TensorIOMode, nptype=FAKE_TRT.nptype,
        BuilderFlag=types.SimpleNamespace(FP16="FP16", TF32="TF32"),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
    )


@pytest.fixture
def fake_runtime(monkeypatch):
    log, built = _Log(), []
    trt, cuda = _fake_trt(log, built), _fake_cuda(log)
    monkeypatch.setattr(_tensorrt, "_import_runtime", lambda: (trt, cuda))
    monkeypatch.setattr(_tensorrt, "_logger", None)
    return types.SimpleNamespace(log=log, built=built, trt=trt)


def test_fake_build_has_one_profile_per_context_strict_fp32_and_batch_32(fake_runtime, detector_path, tmp_path):
    eng = TensorRTEngine(str(detector_path), device="cuda", cache_dir=str(tmp_path), imgsz=320, num_contexts=3)
    (config,) = fake_runtime.built
    assert config.flags == set()  # TF32 cleared: FP32 is FP32
    assert config.profiles == [{"images": [[1, 3, 32, 32], [8, 3, 320, 320], [32, 3, 320, 320]]}] * 3
    assert eng.max_batch_size == 32 and eng._pool.size == 3
    side = json.loads(open(eng.plan_path[: -len(".plan")] + ".json").read())
    assert side["key"]["precision"] == "fp32" and side["key"]["builder_flags"] == [] and side["key"]["num_profiles"] == 3
    assert os.path.isfile(os.path.join(str(tmp_path), "timing-10.9.0-Fake-GPU-9.0.cache"))
    # three runs at once: three contexts, on profiles 0, 1 and 2
    barrier = threading.Barrier(3)
    orig = eng._pool._acquire

    def acquire():
        obj = orig()
        barrier.wait(5)
        return obj

    eng._pool._acquire = acquire
    x = np.zeros((2, 3, 64, 96), np.float32)
    threads = [threading.Thread(target=eng.run, args=({"images": x},)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    eng._pool._acquire = orig
    assert sorted(w.profile_index for w in eng._pool._all) == [0, 1, 2]
    assert sorted(n for n in fake_runtime.log.names() if n.startswith("profile")) == ["profile 0", "profile 1", "profile 2"]
    (out,) = eng.run({"images": x})
    assert out.shape == (2, 22, 2100)
    eng.close()
    assert fake_runtime.log.names()[-2:] == ["push", "detach"]


def test_fake_fp16_key_and_flags(fake_runtime, detector_path, tmp_path):
    eng = TensorRTEngine(str(detector_path), device="cuda", cache_dir=str(tmp_path), fp16=True, max_batch=4)
    (config,) = fake_runtime.built
    assert config.flags == {"FP16", "TF32"}
    assert config.profiles[0]["images"][1][0] == 4 and eng.max_batch_size == 4  # opt <= max_batch
    side = json.loads(open(eng.plan_path[: -len(".plan")] + ".json").read())
    assert side["key"]["precision"] == "fp16" and side["key"]["builder_flags"] == ["FP16", "TF32"]
    eng.close()


def test_max_batch_is_taken_as_a_hint(fake_runtime, detector_path):
    from modelserve._engines_registry import open_engine

    eng = open_engine(str(detector_path), engine="tensorrt", device="cuda", hints={"max_batch": 16, "imgsz": 320})
    (config,) = fake_runtime.built
    assert eng.max_batch_size == 16 and config.profiles[0]["images"][2] == [16, 3, 320, 320]
    eng.close()


def test_one_tensorrt_logger_per_process(fake_runtime, detector_path):
    a = TensorRTEngine(str(detector_path), device="cuda")
    b = TensorRTEngine(str(detector_path), device="cuda")
    assert a._logger is b._logger and fake_runtime.trt.Logger.made == 1
    a.close()
    b.close()


def test_corrupt_cached_plan_is_rebuilt_and_overwritten(fake_runtime, detector_path, tmp_path, caplog):
    eng = TensorRTEngine(str(detector_path), device="cuda", cache_dir=str(tmp_path))
    plan = eng.plan_path
    eng.close()
    with open(plan, "wb") as fh:
        fh.write(b"\x00 not a plan")  # e.g. a driver update made it unloadable
    with caplog.at_level(logging.WARNING, logger="modelserve.tensorrt"):
        again = TensorRTEngine(str(detector_path), device="cuda", cache_dir=str(tmp_path))
    assert "does not deserialise; rebuilding it" in caplog.text
    assert again.plan_path == plan and len(fake_runtime.built) == 2
    assert json.loads(open(plan, "rb").read())["profiles"]  # overwritten with the rebuilt plan
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("timing-")) == sorted(
        [os.path.basename(plan), os.path.basename(plan)[: -len(".plan")] + ".json"])  # no temporary files left
    again.close()
    third = TensorRTEngine(str(detector_path), device="cuda", cache_dir=str(tmp_path))
    assert len(fake_runtime.built) == 2  # now a cache hit
    third.close()


def test_failed_load_releases_the_cuda_context(fake_runtime, tmp_path):
    bad = tmp_path / "broken.plan"
    bad.write_bytes(b"not a plan")
    with pytest.raises(ms.ModelLoadError, match="cannot deserialise"):
        TensorRTEngine(str(bad), device="cuda")
    assert fake_runtime.log.names() == ["retain", "push", "pop", "push", "detach"]


def test_data_dependent_outputs_are_refused_at_load(fake_runtime, tmp_path):
    plan = tmp_path / "nms.plan"
    plan.write_bytes(json.dumps({"profiles": [{"images": list(PROF)}], "nms": True}).encode())
    with pytest.raises(ms.ModelLoadError, match=r"outputs \['nms'\] .* data-dependent shapes"):
        TensorRTEngine(str(plan), device="cuda")
    assert fake_runtime.log.names()[-2:] == ["push", "detach"]


def test_prebuilt_plan_limits_contexts_to_its_profiles(fake_runtime, tmp_path):
    plan = tmp_path / "one.plan"
    plan.write_bytes(json.dumps({"profiles": [{"images": list(PROF)}]}).encode())
    eng = TensorRTEngine(str(plan), device="cuda")  # default num_contexts 2, but one profile
    assert eng._pool.size == 1 and eng.max_batch_size == 32
    eng.close()
    with pytest.raises(ms.InvalidInputError, match="num_contexts must be at most 1, got 2"):
        TensorRTEngine(str(plan), device="cuda", num_contexts=2)


def test_close_during_a_run_frees_nothing_in_use(fake_runtime, detector_path, monkeypatch, caplog):
    eng = TensorRTEngine(str(detector_path), device="cuda", num_contexts=2)
    eng.close_timeout = 0.05
    x = np.zeros((1, 3, 64, 64), np.float32)
    eng.run({"images": x})  # the first worker now has device buffers
    inside, leave = threading.Event(), threading.Event()
    real_execute_worker = eng._pool._acquire

    def acquire():
        w = real_execute_worker()
        w.context.execute_async_v3 = lambda stream: (inside.set(), leave.wait(5))[1]
        return w

    eng._pool._acquire = acquire
    result = []
    t = threading.Thread(target=lambda: result.append(eng.run({"images": x})))
    t.start()
    assert inside.wait(5)
    busy = [w for w in eng._pool._all if w.buffers][0]
    with caplog.at_level(logging.WARNING, logger="modelserve.tensorrt"):
        eng.close()
    assert "still in flight" in caplog.text
    assert not any(dev.freed for _, dev in busy.buffers.values()) and busy.context is not None
    assert "detach" not in fake_runtime.log.names() and eng._engine is not None
    with pytest.raises(ms.ModelserveError, match="closed"):
        eng.run({"images": x})
    leave.set()
    t.join(5)
    assert result and result[0][0].shape == (1, 22, 2100)  # the run in flight finished normally
    assert busy.context is None and busy.buffers == {}  # freed once it was done
    names = fake_runtime.log.names()
    assert names[-2:] == ["push", "detach"] and eng._engine is None
    # the context was released from the run's thread, which is not the one that retained it
    assert fake_runtime.log[-1][1] == t.ident != threading.get_ident()
    eng.close()  # idempotent


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
        assert p.engine.max_batch_size == 4
    assert plan and plan.endswith(".plan") and os.path.isfile(plan[: -len(".plan")] + ".json")
    # the second load reuses the cached plan and a prebuilt .plan loads with its sidecar metadata
    with ms.load(detector_path, engine="tensorrt", device="cuda", engine_options=opts) as p2:
        assert p2.engine.plan_path == plan
    with ms.load(plan, device="cuda") as p3:
        assert p3.engine.name == "tensorrt" and p3.names == p2.names


@pytest.mark.gpu
def test_gpu_threads_share_one_engine(detector_path):
    _gpu_or_skip()
    from concurrent.futures import ThreadPoolExecutor

    eng = TensorRTEngine(str(detector_path), device="cuda", num_contexts=2, max_batch=2)
    assert eng.max_batch_size == 2
    x = np.random.default_rng(0).random((2, 3, 320, 256), dtype=np.float32)
    (want,) = eng.run({"images": x})
    with ThreadPoolExecutor(4) as pool:
        for out in pool.map(lambda _: eng.run({"images": x})[0], range(8)):
            np.testing.assert_array_equal(out, want)
    # every context that ran had an optimisation profile of its own
    assert sorted(w.profile_index for w in eng._pool._all) == list(range(eng._pool.created))
    eng.close()
    eng.close()
