"""DriftMonitor on the real detector and real photos, plus PSI unit checks."""

from __future__ import annotations

import json
import threading
from collections import Counter

import numpy as np
import pytest

import modelserve as ms
from modelserve.monitoring.drift import FEATURES, DriftMonitor, categorical_psi, psi

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "rocket.jpg", "bus.jpg", "zidane.jpg")
PER_PHOTO = 24
#: Quintiles: PSI's noise floor is about (bins - 1) * (1/n + 1/m), so with ~170 images a side deciles read ~0.1
#: on a steady stream (see the module docstring); quintiles leave room below the 0.1 threshold.
BINS = 5
IMAGE_FEATURES = ("brightness", "contrast", "width", "height", "aspect")


def _augment(images: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """PER_PHOTO random crops (70-100% of each side, stratified so that two seeds give the same
    size distribution up to jitter, as a steady stream would), half of them mirrored, of each photo."""
    rng = np.random.default_rng(seed)
    out = []
    for img in images:
        h, w = img.shape[:2]
        fh = 0.7 + 0.3 * (np.arange(PER_PHOTO) + rng.uniform(size=PER_PHOTO)) / PER_PHOTO
        fw = rng.permutation(0.7 + 0.3 * (np.arange(PER_PHOTO) + rng.uniform(size=PER_PHOTO)) / PER_PHOTO)
        for i in range(PER_PHOTO):
            ch, cw = int(h * fh[i]), int(w * fw[i])
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = img[y:y + ch, x:x + cw]
            out.append(np.ascontiguousarray(crop[:, ::-1] if i % 2 else crop))
    return out


@pytest.fixture(scope="module")
def streams(detector_path, bgr):
    photos = [bgr(name) for name in PHOTOS]
    with ms.load(detector_path, conf=0.05) as predictor:
        reference = predictor.predict(_augment(photos, 0))
        top = Counter(int(c) for r in reference for c in r.class_id).most_common(1)[0][0]
        same_images = _augment(photos, 1)
        same = predictor.predict(same_images)
        dark = predictor.predict([(img * 0.3).astype(np.uint8) for img in same_images])
        others = [c for c in predictor.names if c != top]
        vanished = predictor.predict(same_images, classes=others)
    return {"reference": reference, "same": same, "dark": dark, "vanished": vanished, "top": top}


def _scored(streams, name: str) -> dict:
    n = len(streams["reference"])
    monitor = DriftMonitor(reference_size=n, window=n, bins=BINS).fit(streams["reference"])
    monitor.observe_many(streams[name])
    assert monitor.ready
    return monitor.scores()


def test_unshifted_stream_stays_below_moderate(streams):
    scores = _scored(streams, "same")
    assert all(v is not None and v < 0.1 for v in scores.values()), scores


def test_darkened_stream_is_a_major_shift(streams):
    scores = _scored(streams, "dark")
    assert scores["brightness"] > 0.25 and scores["contrast"] > 0.25, scores
    assert scores["width"] < 0.1 and scores["height"] < 0.1 and scores["aspect"] < 0.1, scores


def test_vanished_class_moves_class_mix_only(streams):
    assert streams["top"] not in {int(c) for r in streams["vanished"] for c in r.class_id}
    scores = _scored(streams, "vanished")
    assert scores["class_mix"] > 0.25, scores
    assert all(scores[f] < 0.1 for f in IMAGE_FEATURES), scores


def test_reference_from_first_observed_results_and_warming_up(streams):
    ref = streams["reference"]
    monitor = DriftMonitor(reference_size=len(ref), window=100, min_window=50)
    monitor.observe_many(ref)
    assert not monitor.ready and monitor.window_size == 0
    monitor.observe_many(streams["same"][:49])
    assert not monitor.ready
    assert set(monitor.scores()) == set(FEATURES) and all(v is None for v in monitor.scores().values())
    assert {f["status"] for f in monitor.report()["features"].values()} == {"warming_up"}
    monitor.observe(streams["same"][49])
    assert monitor.ready and all(v is not None for v in monitor.scores().values())
    monitor.observe_many(streams["same"][50:])
    assert monitor.window_size == 100  # a sliding window


def test_observe_from_threads_counts_every_result(streams):
    ref = streams["reference"]
    monitor = DriftMonitor(reference_size=8, window=10_000, min_window=1).fit(ref)
    items = streams["same"]
    threads = [threading.Thread(target=monitor.observe_many, args=(items,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = monitor.report()
    assert report["window_size"] == 8 * len(items)
    assert report["features"]["detections"]["window"]["count"] == 8 * len(items)
    assert report["features"]["class_mix"]["window"]["count"] == 8 * sum(len(r) for r in items)
    one = DriftMonitor(window=10_000, min_window=1).fit(ref)
    one.observe_many(items)
    assert monitor.scores() == pytest.approx(one.scores())  # the same proportions, 8 times over


def test_report_is_json_and_collector_matches(streams):
    prometheus_client = pytest.importorskip("prometheus_client")
    n = len(streams["reference"])
    monitor = DriftMonitor(reference_size=n, window=n, bins=BINS).fit(streams["reference"])
    monitor.as_observer()(streams["dark"])
    report = json.loads(json.dumps(monitor.report()))
    assert report["method"] == "psi" and report["ready"] and report["window_size"] == n
    assert report["thresholds"] == {"moderate": 0.1, "major": 0.25}
    assert report["features"]["brightness"]["status"] == "major"
    registry = prometheus_client.CollectorRegistry()
    registry.register(monitor.collector("detector", "1"))
    for name, value in monitor.scores().items():
        got = registry.get_sample_value("modelserve_drift_score",
                                        {"model": "detector", "version": "1", "feature": name})
        assert got == pytest.approx(value)
    assert registry.get_sample_value("modelserve_drift_window_images", {"model": "detector", "version": "1"}) == n


def test_psi_on_synthetic_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=5000), rng.normal(size=5000)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert psi(a, b) < 0.02
    assert psi(a, b + 1.0) > 0.25
    assert 0.1 > psi(a, b + 0.1) > psi(a, b)
    assert psi([0, 0, 1, 1, 2], [0, 1, 2, 2, 2]) > 0  # discrete: deduplicated edges
    assert categorical_psi("aabbcc", "aabbcc") == pytest.approx(0.0)
    assert categorical_psi("aaaabbbb", "aabbbbbb") > 0.25
    assert categorical_psi("aabb", "aabbc") > 0  # a new category counts


def test_bad_arguments():
    with pytest.raises(ms.InvalidInputError):
        DriftMonitor(window=10, min_window=20)
    with pytest.raises(ms.InvalidInputError):
        DriftMonitor().observe("not a result")
    with pytest.raises(ms.InvalidInputError):
        DriftMonitor().fit([])
