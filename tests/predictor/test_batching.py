"""Batching through the Predictor: concurrent calls share engine batches, results do not change."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import modelserve as ms
from modelserve._engine import Engine

PHOTOS = ["bus.jpg", "zidane.jpg", "astronaut.png", "camera.png", "chelsea.png"]


def same(a: ms.Detections, b: ms.Detections) -> None:
    assert a.class_id.tolist() == b.class_id.tolist()
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.confidence, b.confidence)


class _Recording(Engine):
    """Wraps a real engine; records batch sizes; fails any batch holding a black image."""

    name = "recording-test"

    def __init__(self, inner, poison=True):
        self.inner, self.inputs, self.outputs, self.poison = inner, inner.inputs, inner.outputs, poison
        self.metadata, self.device = inner.metadata, inner.device
        self.sizes: list[int] = []
        self.lock = threading.Lock()

    def run(self, feeds):
        (x,) = feeds.values()
        with self.lock:
            self.sizes.append(len(x))
        if self.poison and (x.reshape(len(x), -1).max(axis=1) <= 114 / 255).any():  # a letterboxed black image
            raise RuntimeError("poisoned batch")
        return self.inner.run(feeds)


@pytest.fixture(scope="module")
def images(bgr):
    return [bgr(n) for n in PHOTOS]


def test_threads_share_batches_and_get_unbatched_results(predictor, images):
    expected = [predictor.predict(im, conf=0.05) for im in images]
    eng = _Recording(predictor.engine)
    p = ms.load(eng, batching=ms.Batching(max_batch_size=8, max_delay_ms=20))
    barrier = threading.Barrier(16)

    def work(k):
        barrier.wait(timeout=30)
        i = k % len(images)
        return i, p.predict(images[i], conf=0.05)

    with ThreadPoolExecutor(16) as pool:
        for i, r in pool.map(work, range(64)):
            same(r, expected[i])
    assert max(eng.sizes) > 1, eng.sizes  # calls really were batched
    stats = p.batcher.stats()
    assert stats.items == 64 and stats.failed == 0
    p.close()


def test_list_input_and_overrides_with_batching(predictor, images):
    p = ms.load(predictor.engine, batching=True)
    for kwargs in ({}, {"conf": 0.05, "agnostic": True}, {"classes": [1], "max_det": 1}):
        got = p.predict(images, **kwargs)
        for a, b in zip(got, predictor.predict(images, **kwargs)):
            same(a, b)


def test_a_list_longer_than_the_queue_is_admitted_whole(predictor, images):
    """One call's images wait for room once the call is admitted: predict(list) never fails on
    its own length, and gives what the unbatched predictor gives."""
    p = ms.load(_Recording(predictor.engine), batching=ms.Batching(max_batch_size=2, max_queue_size=3))
    many = [images[k % len(images)] for k in range(20)]
    expected = predictor.predict(many)
    for a, b in zip(p.predict(many), expected):
        same(a, b)
    for a, b in zip(asyncio.run(p.apredict(many)), expected):
        same(a, b)
    p.close()


class _Slow(_Recording):
    """A real engine that takes 100 ms a run, so that queued requests stay queued a while."""

    def run(self, feeds):
        time.sleep(0.1)
        return super().run(feeds)


def test_apredict_admits_its_first_image_first_whatever_order_they_are_prepared_in(predictor, images):
    """The first image is the call's admission; the others must not fill the queue before it is
    queued, even when they finish preparing first (CI once saw QueueFullError from this race)."""
    p = ms.load(_Slow(predictor.engine), batching=ms.Batching(max_batch_size=2, max_queue_size=3))
    prepare, first = p._prepare, images[0]
    later = [images[1 + k % (len(images) - 1)] for k in range(10)]

    def slow_first(source):
        if source is first:  # prepared last: give the others every chance to fill the queue first
            deadline = time.monotonic() + 1.0
            while p.batcher.stats().queue_depth < 3 and time.monotonic() < deadline:
                time.sleep(0.005)
        return prepare(source)

    p._prepare = slow_first
    expected = predictor.predict([first, *later])
    for a, b in zip(asyncio.run(p.apredict([first, *later])), expected):
        same(a, b)
    assert p.batcher.stats().rejected == 0
    p.close()


def test_apredict_fails_whole_and_leaves_nothing_queued_when_an_image_is_bad(predictor, images):
    p = ms.load(_Recording(predictor.engine, poison=False),
                batching=ms.Batching(max_batch_size=2, max_queue_size=3))
    for bad_at in (0, 5):
        sources = [images[k % len(images)] for k in range(8)]
        sources[bad_at] = b"not an image"
        with pytest.raises(ms.InvalidInputError):
            asyncio.run(p.apredict(sources))
    for a, b in zip(p.predict(images), predictor.predict(images)):  # still serves
        same(a, b)
    p.close()


def test_a_full_queue_still_rejects_a_new_call(predictor, images):
    p = ms.load(_Recording(predictor.engine), batching=ms.Batching(max_batch_size=1, max_queue_size=1))
    p.batcher._testing.pause()
    try:
        first = p.batcher.submit(p._prepare(images[0])[-1])  # fills the queue (bound 1)
        with pytest.raises(ms.QueueFullError):
            p.predict([images[0], images[1]])
    finally:
        p.batcher._testing.resume()
    first.result(timeout=30)
    p.close()


def test_asyncio_hundreds_of_callers(predictor, images):
    expected = [predictor.predict(im) for im in images]
    eng = _Recording(predictor.engine)
    p = ms.load(eng, batching=ms.Batching(max_batch_size=16, max_delay_ms=5, on_full="block"))

    async def main():
        return await asyncio.gather(*(p.apredict(images[k % len(images)]) for k in range(200)))

    results = asyncio.run(main())
    for k, r in enumerate(results):
        same(r, expected[k % len(images)])
    assert max(eng.sizes) > 1
    p.close()


def test_fixed_batch_engine_gets_split_batches(fixed_predictor, images):
    expected = [fixed_predictor.predict(im) for im in images]
    eng = _Recording(fixed_predictor.engine)
    p = ms.load(eng, batching=ms.Batching(max_batch_size=4, max_delay_ms=20))
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda k: p.predict(images[k % len(images)]), range(20)))
    for k, r in enumerate(got):
        same(r, expected[k % len(images)])
    assert set(eng.sizes) == {1}  # the engine only ever saw its fixed batch size
    p.close()


class _Limited(_Recording):
    """A real engine that, like a TensorRT profile, accepts at most two images per run."""

    max_batch_size = 2

    def run(self, feeds):
        (x,) = feeds.values()
        if len(x) > self.max_batch_size:
            raise RuntimeError(f"batch of {len(x)} is over the profile's maximum")
        return super().run(feeds)


def test_batches_are_split_at_the_engines_max_batch_size(predictor, images):
    same_size = [images[0]] * 5
    expected = predictor.predict(same_size[0])
    eng = _Limited(predictor.engine)
    for p in (ms.load(eng), ms.load(eng, batching=ms.Batching(max_batch_size=8, max_delay_ms=50))):
        for got in p.predict(same_size):
            same(got, expected)
    assert eng.sizes and max(eng.sizes) == 2, eng.sizes


def test_fixed_batch_of_four_is_padded_and_split(tmp_path, fixed_detector_path, fixed_predictor, images):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(fixed_detector_path))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = 4
    path = tmp_path / "batch4.onnx"
    onnx.save(model, str(path))
    eng = _Recording(ms.load(path).engine, poison=False)  # the padding slots are blank
    p = ms.load(eng)
    five = images[:5]
    for got, want in zip(p.predict(five), [fixed_predictor.predict(im) for im in five]):
        same(got, want)
    assert eng.sizes == [4, 4]  # 4 images, then 1 image padded with 3 blank slots
    eng.inner.close()


def test_poisoned_image_fails_only_its_caller(predictor, images):
    eng = _Recording(predictor.engine)
    p = ms.load(eng, batching=ms.Batching(max_batch_size=8, max_delay_ms=50))
    black = np.zeros_like(images[2])
    ok_expected = predictor.predict(images[2])
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(p.predict, black if k == 3 else images[2]) for k in range(8)]
        outcomes = [f.exception(timeout=60) or f.result() for f in futures]
    assert isinstance(outcomes[3], RuntimeError) and "poisoned" in str(outcomes[3])
    for k, r in enumerate(outcomes):
        if k != 3:
            same(r, ok_expected)
    p.close()


def test_close_then_predict_raises(predictor, images):
    p = ms.load(predictor.engine, batching=True)
    p.predict(images[0])
    p.batcher.close()
    with pytest.raises(ms.BatcherClosedError):
        p.predict(images[0])


def test_bad_batching_argument(detector_path):
    with pytest.raises(ms.InvalidInputError, match="batching"):
        ms.load(detector_path, batching="yes")
    with pytest.raises(ms.InvalidInputError, match="max_batch_size"):
        ms.load(detector_path, batching=ms.Batching(max_batch_size=0))


def test_batching_true_runs_one_engine_batch_per_core_and_a_batching_is_taken_as_given(detector_path):
    """issue 16: the number of concurrent engine runs is chosen for the machine by default (one per
    CPU core, at most 4: benchmarks/RESULTS.md "Cores"), and a Batching overrides it."""
    from modelserve.batching.options import default_concurrent_batches

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    assert default_concurrent_batches("cpu") == max(1, min(4, cores))
    assert default_concurrent_batches("cuda:0") == 1
    with ms.load(detector_path, batching=True) as p:
        assert p.batcher.config.max_concurrent_batches == default_concurrent_batches("cpu")
    with ms.load(detector_path, batching=ms.Batching(max_batch_size=4)) as p:
        assert p.batcher.config.max_concurrent_batches == 1
