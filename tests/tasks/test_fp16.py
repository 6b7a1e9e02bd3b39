"""FP16 exports of every task model.

Ultralytics 8.4 exports FP16 ONNX two ways: on the CPU with
``onnxruntime.transformers.float16.convert_float_to_float16(model, keep_io_types=True)`` (float16
inside, float32 inputs and outputs), and on a GPU from a ``model.half()`` trace (float16 inputs and
outputs). The committed task models are converted both ways here, with the same converter.

* In CI (ONNX Runtime, no torch): each converted model loads as its task, takes float16 input when
  its input is float16, and answers like its float32 original within FP16's precision.
* Where Ultralytics is installed: the same answers as ``YOLO(fp16_onnx).predict`` on the same file,
  within the float32 parity tolerances.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import modelserve as ms

from .test_parity import HERE, MODELS, _compare, _iou, _manifest

float16 = pytest.importorskip("onnxruntime.transformers.float16", reason="onnxruntime's float16 converter")
onnx = pytest.importorskip("onnx")

CASES = [(m, keep) for m in MODELS for keep in (True, False)]


@pytest.fixture(scope="module")
def fp16_path(tmp_path_factory):
    cache: dict[tuple[str, bool], Path] = {}
    root = tmp_path_factory.mktemp("fp16")

    def convert(model: str | Path, keep_io: bool) -> Path:
        src = Path(model) if isinstance(model, Path) else HERE / "models" / f"{model}.onnx"
        if (str(model), keep_io) not in cache:
            dst = root / f"{src.stem}-fp16{'-f32io' if keep_io else ''}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the converter warns about values it clamps to float16
                m16 = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=keep_io)
            onnx.save(m16, str(dst))
            cache[(str(model), keep_io)] = dst
        return cache[(str(model), keep_io)]

    return convert


def _matched_fraction(a, b) -> float:
    """The share of ``b``'s confident detections (conf >= 0.35, clear of the 0.25 threshold) that
    ``a`` has a twin of: same class, box IoU > 0.9."""
    sure = b.confidence >= 0.35
    if not sure.any():
        return 1.0
    iou = _iou(b.xyxy[sure], a.xyxy) * (b.class_id[sure][:, None] == a.class_id[None])
    return float((iou.max(axis=1, initial=0.0) > 0.9).mean())


@pytest.mark.parametrize("model,keep_io", CASES)
def test_fp16_export_answers_like_its_fp32_original(model, keep_io, fp16_path, bgr):
    task = _manifest()["models"][model]["task"]
    img = bgr("bus.jpg")
    with ms.load(HERE / "models" / f"{model}.onnx") as p32, ms.load(fp16_path(model, keep_io)) as p16:
        assert p16.task == task and p16.names == p32.names
        assert p16.engine.inputs[0].dtype == (np.float32 if keep_io else np.float16)
        a, b = p16.predict(img), p32.predict(img)
    if task == "classify":
        assert a.probs.dtype == np.float32 and abs(float(a.probs.sum()) - 1.0) < 1e-2
        np.testing.assert_allclose(a.probs, b.probs, atol=5e-3)
        assert a.top1 in b.top5[:2]
        return
    assert a.xyxy.dtype == np.float32 and len(a) > 0 and len(b) > 0
    assert ((a.confidence > 0.25) & (a.confidence <= 1.0)).all() and (a.class_id < len(p16.names)).all()
    assert _matched_fraction(a, b) >= 0.85, model  # near-tied scores (~1.0) cut at max_det move with FP16
    if task == "pose":
        assert a.keypoints.shape[1:] == b.keypoints.shape[1:] and a.keypoints.dtype == np.float32
    if task == "obb":
        assert a.xywhr.shape == (len(a), 5)
    if task == "segment":
        assert a.masks.shape == (len(a), *img.shape[:2])


@pytest.mark.parametrize("model,keep_io", CASES)
def test_fp16_export_matches_ultralytics(model, keep_io, fp16_path, bgr):
    """Live parity on the converted file (needs torch and ultralytics; CI covers FP16 above)."""
    pytest.importorskip("torch")
    ultralytics = pytest.importorskip("ultralytics")
    sys.path.insert(0, str(HERE))
    from make_goldens import DEFAULT, store
    from make_goldens import MODELS as SPEC

    task, imgsz = SPEC[model]
    path = fp16_path(model, keep_io)
    yolo = ultralytics.YOLO(str(path), task=task)
    extra = {"retina_masks": True} if task == "segment" else {}
    with ms.load(path) as p:
        for photo in ("bus.jpg", "zidane.jpg"):
            img = bgr(photo)
            want: dict = {}
            store(want, photo, task, yolo.predict(img, imgsz=imgsz, verbose=False, device="cpu", **DEFAULT, **extra)[0])
            _compare(task if task != "detect" else "detect", p.predict(img), want, photo)


@pytest.mark.parametrize("keep_io", [True, False])
def test_fp16_detector_matches_its_fp32_original_and_ultralytics(keep_io, fp16_path, detector_path, bgr):
    """The trained detector (real weights: scores far from ties) converted to FP16: the same
    detections as float32 within FP16's precision; where Ultralytics is installed, its answers on
    the converted file within the float32 parity tolerances."""
    path = fp16_path(detector_path, keep_io)
    img = bgr("bus.jpg")
    with ms.load(detector_path) as p32, ms.load(path) as p16:
        a, b = p16.predict(img), p32.predict(img)
        imgsz = list(p16.imgsz)
    assert len(b) and a.class_id.tolist() == b.class_id.tolist()
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=2.0)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-2)
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("ultralytics") is None:
        return
    import ultralytics
    r = ultralytics.YOLO(str(path), task="detect").predict(img, imgsz=imgsz, verbose=False, device="cpu")[0]
    assert a.class_id.tolist() == r.boxes.cls.numpy().astype(int).tolist()
    np.testing.assert_allclose(a.xyxy, r.boxes.xyxy.numpy(), atol=0.01)
    np.testing.assert_allclose(a.confidence, r.boxes.conf.numpy(), atol=1e-4)


@pytest.mark.parametrize("model", ["seg", "pose"])
def test_fp16_outputs_numpy_backend_gives_the_kernels_answers(model, fp16_path, bgr, monkeypatch):
    """Float16 outputs take the corners-first path (xywh2xyxy in float16) on both backends alike."""
    from modelserve import _backend, _nms, ops

    if _nms._k_nms is None:
        pytest.skip("Cython kernels not built: both Predictors would use the reference")
    path, img = fp16_path(model, False), bgr("bus.jpg")
    fast = ms.load(path).predict(img)
    monkeypatch.setenv(ops.KERNELS_ENV, "numpy")
    monkeypatch.setattr(_backend, "_warned_fallback", True)
    slow = ms.load(path).predict(img)
    assert len(fast) > 3 and slow.class_id.tolist() == fast.class_id.tolist()
    np.testing.assert_array_equal(slow.xyxy, fast.xyxy)
    np.testing.assert_array_equal(slow.confidence, fast.confidence)
