"""The Predictor on the real detector: inputs, batches, threads, asyncio, metadata handling."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import modelserve as ms
from modelserve._engine import Engine

PHOTOS = ["bus.jpg", "zidane.jpg", "astronaut.png", "camera.png", "chelsea.png"]


def same(a: ms.Detections, b: ms.Detections) -> None:
    assert a.class_id.tolist() == b.class_id.tolist()
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.confidence, b.confidence)


def test_predict_returns_detections_in_original_pixels(predictor, bgr):
    img = bgr("bus.jpg")
    r = predictor.predict(img, conf=0.05)
    assert isinstance(r, ms.Detections) and len(r) >= 3
    h, w = img.shape[:2]
    assert r.orig_shape == (h, w)
    assert (r.xyxy[:, [0, 2]] >= 0).all() and (r.xyxy[:, [0, 2]] <= w).all()
    assert (r.xyxy[:, [1, 3]] >= 0).all() and (r.xyxy[:, [1, 3]] <= h).all()
    assert (r.xyxy[:, 2] > r.xyxy[:, 0]).all() and (r.xyxy[:, 3] > r.xyxy[:, 1]).all()
    assert (np.diff(r.confidence) <= 0).all()  # highest first
    assert set(r.speed) == {"preprocess", "inference", "postprocess"} and min(r.speed.values()) > 0
    assert r.class_names == [predictor.names[c] for c in r.class_id]


@pytest.mark.parametrize("form", ["path", "str", "bytes", "pil", "rgb_array"])
def test_all_input_forms_agree_with_bgr_array(form, detector_path, photo, bgr):
    path = photo("astronaut.png")
    ref = ms.load(detector_path).predict(bgr("astronaut.png"))
    assert len(ref) >= 1
    if form == "rgb_array":
        p = ms.load(detector_path, channels="rgb")
        got = p.predict(np.ascontiguousarray(bgr("astronaut.png")[..., ::-1]))
    else:
        source = {
            "path": path,
            "str": str(path),
            "bytes": path.read_bytes(),
            "pil": Image.open(path),
        }[form]
        got = ms.load(detector_path).predict(source)
    same(got, ref)


def test_grayscale_forms_agree(predictor, photo):
    gray = np.asarray(Image.open(photo("camera.png")).convert("L"))
    assert gray.ndim == 2
    a = predictor.predict(gray)
    assert len(a) >= 1
    same(predictor.predict(gray[..., None]), a)
    same(predictor.predict(np.repeat(gray[..., None], 3, axis=2)), a)
    same(predictor.predict(Image.fromarray(gray)), a)


def test_alpha_channel_is_dropped(predictor, bgr):
    img = bgr("astronaut.png")
    bgra = np.concatenate([img, np.full(img.shape[:2] + (1,), 7, np.uint8)], axis=2)
    same(predictor.predict(bgra), predictor.predict(img))


def test_exif_orientation_is_applied(predictor, photo, bgr):
    # A JPEG stored rotated with an EXIF "rotate 90 CW" tag must give the upright image's geometry.
    upright = Image.open(photo("astronaut.png")).convert("RGB").resize((480, 320))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera would write
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    r = predictor.predict(buf.getvalue(), conf=0.05)
    assert r.orig_shape == (320, 480)


def test_non_contiguous_and_readonly_arrays(predictor, bgr):
    img = bgr("bus.jpg")
    ref = predictor.predict(img)
    view = np.asfortranarray(img)
    ro = img.copy()
    ro.setflags(write=False)
    same(predictor.predict(view), ref)
    same(predictor.predict(ro), ref)
    assert ro.flags.writeable is False


def test_batch_equals_single_with_mixed_sizes(predictor, bgr):
    images = [bgr(n) for n in PHOTOS] + [bgr("bus.jpg")]
    singles = [predictor.predict(im, conf=0.1) for im in images]
    batch = predictor.predict(images, conf=0.1)
    assert isinstance(batch, list) and len(batch) == len(images)
    assert sum(len(r) for r in batch) >= 8
    for a, b in zip(batch, singles):
        same(a, b)
    assert predictor.predict([]) == []
    assert isinstance(predictor.predict((images[0],)), list)


def test_fixed_batch_model_splits_batches(fixed_predictor, bgr):
    images = [bgr(n) for n in PHOTOS]
    singles = [fixed_predictor.predict(im) for im in images]
    for a, b in zip(fixed_predictor.predict(images), singles):
        same(a, b)
    assert fixed_predictor.imgsz == (640, 640) and not fixed_predictor.dynamic


def test_fixed_model_rejects_other_imgsz(fixed_detector_path):
    with pytest.raises(ms.InvalidInputError, match="fixed input size"):
        ms.load(fixed_detector_path, imgsz=320)


def test_imgsz_from_metadata_and_rounding(detector_path):
    assert ms.load(detector_path).imgsz == (320, 320)
    assert ms.load(detector_path, imgsz=300).imgsz == (320, 320)  # up to a stride multiple
    assert ms.load(detector_path, imgsz=(480, 640)).imgsz == (480, 640)


def test_thread_safety_eight_threads(predictor, bgr):
    images = [bgr(n) for n in PHOTOS]
    expected = [predictor.predict(im, conf=0.05) for im in images]
    barrier = threading.Barrier(8)

    def work(k: int):
        barrier.wait(timeout=30)
        return [(i, predictor.predict(images[i], conf=0.05)) for i in [(k + j) % len(images) for j in range(10)]]

    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(work, range(8)))
    for out in outs:
        for i, r in out:
            same(r, expected[i])


def test_apredict_concurrent(predictor, bgr):
    images = [bgr(n) for n in PHOTOS]
    expected = [predictor.predict(im) for im in images]

    async def main():
        return await asyncio.gather(*(predictor.apredict(im) for im in images * 3))

    for r, e in zip(asyncio.run(main()), expected * 3):
        same(r, e)


def test_model_without_metadata_uses_given_names(tmp_path, detector_path, bgr):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(detector_path))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    img = bgr("astronaut.png")
    p = ms.load(bare)
    assert p.imgsz == (640, 640)  # no metadata: Ultralytics' default size
    assert p.names == {i: str(i) for i in range(18)}
    names = [f"class{i}" for i in range(18)]
    p2 = ms.load(bare, names=names, imgsz=320)
    r = p2.predict(img)
    ref = ms.load(detector_path).predict(img)
    same(r, ref)
    assert r.class_names == [f"class{c}" for c in ref.class_id]


class _EndToEnd(Engine):
    """Wraps the real detector and emits NMS-free [B, 300, 6] outputs, like an end2end export."""

    name = "end2end-test"

    def __init__(self, inner):
        self.inner = inner
        self.inputs = inner.inputs
        self.outputs = inner.outputs
        self.metadata = {**inner.metadata, "end2end": "True"}
        self.device = "cpu"

    def run(self, feeds):
        raw = self.inner.run(feeds)[0]
        dets = ms.ops.yolo_postprocess(raw, conf=0.001, iou=0.7, max_det=300)
        out = np.zeros((len(dets), 300, 6), np.float32)
        for i, d in enumerate(dets):
            out[i, : len(d)] = d
        return [out]


def test_end2end_outputs_are_filtered_not_nms(predictor, bgr):
    p = ms.load(_EndToEnd(predictor.engine))
    for name in ("bus.jpg", "astronaut.png"):
        img = bgr(name)
        for kwargs in ({}, {"conf": 0.1, "classes": [9]}, {"max_det": 1}):
            same(p.predict(img, **kwargs), predictor.predict(img, **kwargs))


def test_detections_api(predictor, bgr):
    r = predictor.predict(bgr("bus.jpg"), conf=0.05)
    n = len(r)
    assert n >= 3
    items = list(r)
    assert len(items) == n and items[0].class_name == predictor.names[items[0].class_id]
    assert items[0].confidence == pytest.approx(float(r.confidence[0]))
    high = r[r.confidence > 0.2]
    assert 0 < len(high) < n and (high.confidence > 0.2).all()
    assert len(r[:2]) == 2 and len(r[0:1]) == 1 and len(r[[0, 2]]) == 2
    assert isinstance(r[0], ms.Detection) and r[0].confidence == items[0].confidence  # an int gives one row
    d = json.loads(r.to_json())
    assert len(d["detections"]) == n and d["orig_shape"] == list(r.orig_shape)
    assert d["detections"][0]["class_name"] == r.class_names[0]
    assert r.to_dict()["detections"][1]["xyxy"] == pytest.approx(r.xyxy[1].tolist())
    with pytest.raises(ms.InvalidInputError, match="boolean mask"):
        r[np.ones(n + 1, bool)]
    assert "Detections(n=" in repr(r)


def test_numpy_backend_predictor_gives_the_same_detections(detector_path, predictor, bgr, monkeypatch):
    """A Predictor loaded with MODELSERVE_KERNELS=numpy (the fallback when the extension is not
    built) uses the NumPy reference for letterbox and post-processing, and finds exactly what the
    kernels find, on real photos, alone and in a mixed-size batch."""
    from modelserve import _backend, _nms, ops

    if _nms._k_nms is None:
        pytest.skip("Cython kernels not built: both Predictors would use the reference")
    monkeypatch.setenv(ops.KERNELS_ENV, "numpy")
    monkeypatch.setattr(_backend, "_warned_fallback", True)
    with ms.load(detector_path) as slow:
        assert slow._kernels is False and predictor._kernels is True
        images = [bgr(n) for n in ("bus.jpg", "zidane.jpg")]
        for img in images:
            same(slow.predict(img, conf=0.1), predictor.predict(img, conf=0.1))
        for a, b in zip(slow.predict(images, conf=0.1), predictor.predict(images, conf=0.1)):
            same(a, b)
        assert len(predictor.predict(images[0], conf=0.1)) >= 3


def test_geometry_cache_is_bounded(predictor, bgr):
    """The Predictor keeps the letterbox plan of each image size it has seen, up to a bound, and
    results stay right after the cache is cleared."""
    from modelserve import _predictor
    from modelserve._images import Image as _Image

    expected = predictor.predict(bgr("bus.jpg"))
    for k in range(_predictor._MAX_GEOMETRIES + 10):
        predictor._geometry(_Image(np.zeros((10 + k, 17, 3), np.uint8), True))
    assert len(predictor._geometries) <= _predictor._MAX_GEOMETRIES
    same(predictor.predict(bgr("bus.jpg")), expected)
