"""The ``yolox`` layout against YOLOX's own post-processing, exactly.

- ddddocr 1.6.1's real detector (``common_det.onnx``, a trained YOLOX, from the ddddocr wheel):
  modelserve's boxes equal the float rows of ddddocr's own detector code on the real photos
  (``tests/goldens/families/ddddocr.json``, made by ``make_ddddocr.py``), and, truncated as ddddocr
  does, its integer boxes; live against ddddocr itself where it imports.
- Many classes, both NMS variants, batches: the head's decode on the same raw outputs equals a
  from-scratch reproduction of YOLOX's published ``demo_utils.py`` (``yolox_reference.py``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import modelserve as ms
from modelserve.tasks.yolox import yolox_detections
from tests.assets import photo
from tests.tasks import yolox_reference as ref

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "goldens" / "families" / "ddddocr.json").read_text())


def _ddddocr_model() -> Path:
    spec = importlib.util.find_spec("ddddocr")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ddddocr==1.6.1 is not installed (pip install -e '.[dev]')")
    path = Path(list(spec.submodule_search_locations)[0]) / "common_det.onnx"
    if not path.is_file():
        pytest.skip("this ddddocr has no common_det.onnx")
    return path


@pytest.fixture(scope="module")
def ddddocr_det():
    with ms.load(_ddddocr_model(), layout="yolox") as p:
        yield p


def _clipped(rows: np.ndarray, hw) -> np.ndarray:
    out = rows[:, :4].astype(np.float32)
    np.clip(out, 0, np.array([hw[1], hw[0], hw[1], hw[0]], np.float32), out=out)
    return out


def _ddddocr_ints(xyxy: np.ndarray, hw) -> list[list[int]]:
    """ddddocr's own rule on boxes already clipped to the image: truncate toward zero."""
    return [[int(v) for v in box] for box in xyxy.tolist()]


@pytest.mark.parametrize("name", sorted(GOLDEN["photos"]))
def test_ddddocr_real_model_gives_ddddocrs_boxes(ddddocr_det, name):
    g = GOLDEN["photos"][name]
    r = ddddocr_det.predict(photo(name).read_bytes())
    rows = np.array(g["rows"], np.float64).reshape(-1, 6)
    assert len(r) == g["count"]
    np.testing.assert_array_equal(r.xyxy, _clipped(rows, g["image_hw"]))
    np.testing.assert_array_equal(r.confidence, rows[:, 4].astype(np.float32))
    assert r.class_id.tolist() == [0] * g["count"]
    assert _ddddocr_ints(r.xyxy, g["image_hw"]) == g["ints"]


def test_ddddocr_photos_in_one_call_and_from_paths(ddddocr_det):
    names = sorted(n for n, g in GOLDEN["photos"].items() if g["count"])
    results = ddddocr_det.predict([str(photo(n)) for n in names])
    for name, r in zip(names, results):
        assert _ddddocr_ints(r.xyxy, GOLDEN["photos"][name]["image_hw"]) == GOLDEN["photos"][name]["ints"], name


def test_ddddocr_itself_agrees_live(ddddocr_det):
    ddddocr = pytest.importorskip("ddddocr")
    pytest.importorskip("cv2")
    det = ddddocr.DdddOcr(det=True, ocr=False, show_ad=False)
    for name in ("bus.jpg", "rocket.jpg", "page.png"):
        data = photo(name).read_bytes()
        ours = ddddocr_det.predict(data)
        assert _ddddocr_ints(ours.xyxy, ours.orig_shape) == det.detection(data), name


# -- many classes: the decode against the reference on the same raw outputs ----------------------

def _raw(n_rows: int, nc: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = np.empty((1, n_rows, 5 + nc), np.float32)
    raw[..., :2] = rng.normal(0.5, 0.6, (1, n_rows, 2))
    raw[..., 2:4] = rng.normal(1.0, 0.8, (1, n_rows, 2))
    raw[..., 4:] = rng.random((1, n_rows, 1 + nc)) ** 3  # many low, some high: NMS has work
    return raw


@pytest.mark.parametrize("agnostic", [True, False])
@pytest.mark.parametrize(("input_hw", "p6", "ratio"), [((320, 320), False, 0.5), ((416, 416), False, 0.3851851851851852),
                                                       ((256, 384), False, 1.25), ((512, 512), True, 0.8)])
def test_decode_equals_yolox_reference(input_hw, p6, ratio, agnostic):
    rows = sum((input_hw[0] // s) * (input_hw[1] // s) for s in ((8, 16, 32, 64) if p6 else (8, 16, 32)))
    for seed in range(3):
        raw = _raw(rows, 4, seed)
        want = ref.postprocess(raw.copy(), input_hw, ratio, 0.45, 0.1, class_agnostic=agnostic, p6=p6)
        got = yolox_detections(raw[0], input_hw, float(np.float32(ratio)), 0.1, 0.45, None, agnostic)
        assert len(want) > 5
        np.testing.assert_array_equal(got, want.astype(np.float32))


def test_classes_and_max_det_keep_the_references_rows():
    raw = _raw(2100, 3, 7)  # 320x320
    full = yolox_detections(raw[0], (320, 320), 0.5, 0.1, 0.45, None, False)
    only = yolox_detections(raw[0], (320, 320), 0.5, 0.1, 0.45, np.array([1]), False)
    np.testing.assert_array_equal(only, full[full[:, 5] == 1])  # class-aware: one NMS per class
    capped = yolox_detections(raw[0], (320, 320), 0.5, 0.1, 0.45, None, False, max_det=10)
    top = np.sort(np.argsort(-full[:, 4], kind="stable")[:10])
    np.testing.assert_array_equal(capped, full[top])


def test_ddddocr_on_openvino_within_its_arithmetic():
    pytest.importorskip("openvino")
    with ms.load(_ddddocr_model(), layout="yolox", engine="openvino") as p:
        for name in ("bus.jpg", "rocket.jpg", "page.png"):
            g = GOLDEN["photos"][name]
            rows = np.array(g["rows"], np.float64).reshape(-1, 6)
            r = p.predict(str(photo(name)))
            assert len(r) == g["count"], name
            order = np.lexsort((r.xyxy[:, 1], r.xyxy[:, 0]))
            want = _clipped(rows, g["image_hw"])
            np.testing.assert_allclose(r.xyxy[order], want[np.lexsort((want[:, 1], want[:, 0]))], atol=0.5)


def test_ddddocr_rgb_arrays_and_scaled_decodes(ddddocr_det):
    """YOLOX reads BGR: an RGB array given with channels='rgb' gives the same boxes as the file; a
    fast_decode (DCT-scaled) JPEG still answers in the photo's own pixels."""
    from modelserve._images import load_image

    name = "bus.jpg"
    g = GOLDEN["photos"][name]
    bgr = np.ascontiguousarray(load_image(str(photo(name))).pixels)
    with ms.load(_ddddocr_model(), layout="yolox", channels="rgb") as p:
        r = p.predict(np.ascontiguousarray(bgr[..., ::-1]))
    assert _ddddocr_ints(r.xyxy, g["image_hw"]) == g["ints"]
    assert _ddddocr_ints(ddddocr_det.predict(bgr).xyxy, g["image_hw"]) == g["ints"]
    with ms.load(_ddddocr_model(), layout="yolox", fast_decode=True) as p:
        r = p.predict(str(photo(name)))
    assert r.orig_shape == tuple(g["image_hw"]) and len(r) >= 1
    assert (r.xyxy[:, 2] <= g["image_hw"][1]).all() and (r.xyxy[:, 3] <= g["image_hw"][0]).all()


@pytest.mark.parametrize("seed", range(30))
def test_the_plus_one_nms_kernel_is_the_numpy_loop(seed):
    """YOLOX's +1-pixel NMS: the kernel keeps what the reference's NumPy steps keep, in the same order,
    on overlapping, degenerate (x2 < x1), tied and non-finite boxes (those go to NumPy)."""
    from modelserve import _nms
    from modelserve.tasks.yolox import _nms_plus_one

    if _nms._k_nms is None:
        pytest.skip("Cython kernels not built")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    xy = rng.random((n, 2)).astype(np.float32) * 100
    wh = (rng.random((n, 2)) * 40 - (5 if seed % 3 == 0 else 0)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.choice(np.array([0.2, 0.5, 0.5, 0.9], np.float32), n) if seed % 2 else rng.random(n).astype(np.float32)
    if seed % 5 == 4:
        boxes[rng.integers(0, n)] = np.nan
    thr = float(rng.choice([0.0, 0.3, 0.45, 0.7, 1.0]))
    got = _nms_plus_one(boxes, scores, thr, kernels=True)
    want = _nms_plus_one(boxes, scores, thr, kernels=False)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(got, ref.nms(boxes, scores, thr))
