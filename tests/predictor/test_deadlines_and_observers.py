"""A call's ``timeout_ms`` (batched and direct, sync and async), the observers a Predictor calls
after each run, and ``orig_img``, on the real detector."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import modelserve as ms


@pytest.fixture
def batched(detector_path):
    with ms.load(detector_path, batching=ms.Batching(max_batch_size=4)) as p:
        yield p


def test_a_call_still_queued_at_its_deadline_fails_and_is_never_run(batched, bgr):
    image = bgr("bus.jpg")
    batched.batcher._testing.pause()
    try:
        with pytest.raises(ms.DeadlineExceededError):
            batched.predict([image, image], timeout_ms=80)
    finally:
        batched.batcher._testing.resume()
    stats = batched.batcher.stats()
    assert stats.expired >= 1 and stats.succeeded == 0
    assert len(batched.predict(image, timeout_ms=10_000)) == len(batched.predict(image))


def test_apredict_honours_the_deadline(batched, bgr):
    image = bgr("bus.jpg")
    batched.batcher._testing.pause()

    async def call():
        return await batched.apredict(image, timeout_ms=80)

    try:
        with pytest.raises(ms.DeadlineExceededError):
            asyncio.run(call())
    finally:
        batched.batcher._testing.resume()


def test_without_batching_a_passed_deadline_fails_before_inference(predictor, bgr):
    big = np.zeros((4000, 4000, 3), np.uint8)  # letterboxing it takes longer than 0.01 ms
    with pytest.raises(ms.DeadlineExceededError):
        predictor.predict(big, timeout_ms=0.01)
    assert predictor.predict(bgr("bus.jpg"), timeout_ms=float("inf"))


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "5", True])
def test_a_bad_timeout_is_refused(predictor, bgr, bad):
    with pytest.raises(ms.InvalidInputError, match="timeout_ms"):
        predictor.predict(bgr("bus.jpg"), timeout_ms=bad)


def test_observers_see_every_run_with_its_speed(batched, bgr, photo):
    seen: list[list] = []
    lock = threading.Lock()

    def observe(results):
        with lock:
            seen.append(list(results))

    batched.add_observer(observe)
    batched.add_observer(lambda results: 1 / 0)  # a failing observer is logged and ignored
    image = bgr("bus.jpg")
    one = batched.predict(image)
    two = batched.predict([image, bgr("zidane.jpg")])
    asyncio.run(batched.apredict(image))
    streamed = list(batched.predict(source=[photo("bus.jpg"), photo("zidane.jpg")], stream=True, batch=2))
    assert [len(s) for s in seen] == [1, 2, 1, 2]
    assert seen[0][0] is one and seen[1] == two and seen[3] == streamed
    assert all(set(r.speed) == {"preprocess", "inference", "postprocess"} for s in seen for r in s)
    batched.remove_observer(observe)
    batched.predict(image)
    assert len(seen) == 4
    with pytest.raises(ms.InvalidInputError):
        batched.add_observer("not callable")


def test_orig_img_is_the_image_in_bgr(predictor, bgr, photo):
    image = bgr("bus.jpg")
    r = predictor.predict(image)
    np.testing.assert_array_equal(r.orig_img, image)
    from_file = predictor.predict(photo("bus.jpg"))
    assert from_file.orig_img.shape == image.shape and from_file.orig_img.dtype == np.uint8
    assert ms.Detections.empty().orig_img is None
