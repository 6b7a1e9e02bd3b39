"""The kernels release the GIL: a Python thread keeps running while one long kernel call runs."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from modelserve import ops

needs_kernels = pytest.mark.skipif(ops.backend() != "cython", reason="Cython kernels not built or disabled")


def gil_released_during(call) -> bool:
    """True when a Python thread ran while ``call()`` was inside its kernel.

    With a long switch interval the calling thread never hands the GIL over on its own, and the
    spinning thread gives it back at once (``sleep(0)``), so the counter can move between the two
    reads around ``call()`` only if the kernel released the GIL. Not timing-based: no flakiness on
    a loaded machine.
    """
    count = [0]
    stop = threading.Event()
    started = threading.Event()

    def spin():
        started.set()
        while not stop.is_set():
            count[0] += 1
            if count[0] % 64 == 0:
                time.sleep(0)

    old = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    t = threading.Thread(target=spin)
    t.start()
    started.wait()
    try:
        for _ in range(3):
            time.sleep(0.005)
            before = count[0]
            call()
            if count[0] - before > 0:
                return True
        return False
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)


def test_probe_detects_a_held_gil():
    def hold():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.03:  # pure Python keeps the GIL (switch interval 5 s)
            pass

    assert not gil_released_during(hold)


@needs_kernels
def test_letterbox_releases_the_gil():
    img = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    out = np.empty((3, 4000, 4000), np.uint8)  # one call of tens of milliseconds
    assert gil_released_during(lambda: ops.letterbox(img, (4000, 4000), dtype=np.uint8, out=out))


def _disjoint_boxes(n):
    x = np.arange(n, dtype=np.float32) * 3
    return np.stack([x, np.zeros(n, np.float32), x + 1, np.ones(n, np.float32)], 1)


@needs_kernels
def test_nms_releases_the_gil():
    n = 20000  # all kept, each compared with every kept box: a long call
    boxes = _disjoint_boxes(n)
    scores = np.linspace(1, 0, n, dtype=np.float32)
    assert gil_released_during(lambda: ops.nms(boxes, scores, 0.5))


@needs_kernels
def test_batched_nms_releases_the_gil():
    n = 20000
    boxes = _disjoint_boxes(n)
    scores = np.linspace(1, 0, n, dtype=np.float32)
    classes = np.zeros(n, np.int64)
    assert gil_released_during(lambda: ops.batched_nms(boxes, scores, classes, 0.5))


@needs_kernels
def test_yolo_postprocess_releases_the_gil():
    n = 20000  # agnostic, max_det n: one long NMS
    raw = np.zeros((1, 5, n), np.float32)
    raw[0, 0] = np.arange(n, dtype=np.float32) * 3
    raw[0, 2:4] = 1
    raw[0, 4] = np.linspace(1, 0.5, n, dtype=np.float32)
    assert gil_released_during(lambda: ops.yolo_postprocess(raw, max_det=n, agnostic=True))


@needs_kernels
def test_two_threads_give_the_same_results():
    imgs = [np.random.default_rng(i).integers(0, 256, (720, 1280, 3), dtype=np.uint8) for i in range(2)]
    expected = [ops.letterbox(im)[0] for im in imgs]
    results: list = [None, None]

    def work(i):
        for _ in range(5):
            results[i] = ops.letterbox(imgs[i])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, exp in zip(results, expected):
        assert got.tobytes() == exp.tobytes()
