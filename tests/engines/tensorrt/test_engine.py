"""The TensorRT engine: argument checks without TensorRT, the whole engine on fake TensorRT and
pycuda (no GPU), and GPU tests that run only where TensorRT, pycuda and an NVIDIA GPU are present."""

from __future__ import annotations

import json
import logging
import os
import threading
import types

import numpy as np
import pytest

import modelserve as ms
from modelserve.engines import TensorRTEngine
from modelserve.engines.tensorrt import cuda as trt_cuda
from modelserve.engines.tensorrt import engine as trt_engine

from .trt_fakes import FAKE_TRT, PROF, FakeConfig, FakeContext, FakeEngine


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


class _FakeRunEngine(FakeEngine):
    def __init__(self, plan, log):
        self.plan, self.log = plan, log
        profiles = plan["profiles"] or [{}]
        super().__init__([("images", "IN", [-1, 3, -1, -1], "FLOAT"), ("output0", "OUT", [-1, 22, -1], "FLOAT")]
                         + ([("nms", "OUT", [-1, 6], "FLOAT")] if plan.get("nms") else []),
                         {"images": [p["images"] for p in profiles]})

    def create_execution_context(self):
        ctx = FakeContext(unknown={"nms"})
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
            self.config = FakeConfig()
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
    monkeypatch.setattr(trt_engine, "import_runtime", lambda: (trt, cuda))
    monkeypatch.setattr(trt_cuda, "_logger", None)
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
    from modelserve._engine_catalog import open_engine

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


def test_prebuilt_plan_sidecar_must_be_a_json_object(fake_runtime, tmp_path):
    plan = tmp_path / "one.plan"
    plan.write_bytes(json.dumps({"profiles": [{"images": list(PROF)}]}).encode())
    (tmp_path / "one.json").write_text("[1]")
    with pytest.raises(ms.ModelLoadError, match=r"one\.json must hold a JSON object, got list"):
        TensorRTEngine(str(plan), device="cuda")
    assert fake_runtime.log.names()[-2:] == ["push", "detach"]


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
