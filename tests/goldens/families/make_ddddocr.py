"""Regenerate tests/goldens/families/ddddocr.json with ddddocr's own YOLOX detector.

``ddddocr==1.6.1`` ships ``ddddocr/common_det.onnx``, a trained YOLOX export without decode in the
graph (input ``images`` [1, 3, 416, 416] BGR 0..255, output ``output`` [1, 3549, 6]: raw cx, cy,
w, h, then sigmoided objectness and one class score). Run from the repo root in a dev environment:

    pip install ddddocr==1.6.1          # check it keeps numpy / onnxruntime / opencv as they are
    YOLO_OFFLINE=1 python tests/goldens/families/make_ddddocr.py

For every photo this records, from the photo file's bytes:

* ``ints``: ddddocr's public answer, ``DdddOcr(det=True, ocr=False, show_ad=False).detection(bytes)``
  (which is ``DetectionEngine.get_bbox``: cv2.imdecode IMREAD_COLOR, so BGR with any alpha
  dropped; YOLOX preproc to 416x416; demo_postprocess; class-agnostic NMS nms_thr 0.45,
  score_thr 0.1; int boxes clipped to the image);
* ``rows``: the float detections before that int conversion, ``[x1, y1, x2, y2, score, class]``,
  obtained by calling the engine's own ``preproc`` / ``session.run`` / ``demo_postprocess`` /
  ``multiclass_nms`` step by step (image pixels, unclipped, float32-exact values);
* ``raw_sha256``: sha256 of the raw model output's bytes (float32, C order) - CPU/ORT build
  dependent, informative only.

It checks that the step-by-step path reproduces ``get_bbox``'s ints exactly and that the test-side
reference ``tests/tasks/yolox_reference.py`` reproduces the tensor, the decode and the float rows
bit for bit; it refuses to write the golden otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import ddddocr  # noqa: E402
import onnxruntime  # noqa: E402

from tests import assets  # noqa: E402
from tests.tasks import yolox_reference as ref  # noqa: E402

OUT = Path(__file__).resolve().parent / "ddddocr.json"
PHOTOS = ["bus.jpg", "zidane.jpg", "astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
          "rocket.jpg"]
# Beyond the brief's photos: ddddocr's detector is a character detector (captchas), so natural photos
# give few boxes; skimage's text scans give many (page.png: dozens, exercising NMS), and they cover
# the grayscale-file path (IMREAD_COLOR -> 3 equal channels) and an RGBA file (alpha dropped).
EXTRA_PHOTOS = ["page.png", "text.png", "camera.png", "horse.png"]
INPUT_HW = (416, 416)
NMS_THR = 0.45
SCORE_THR = 0.1


def f32_list(values) -> list[float]:
    out = []
    for v in np.asarray(values).ravel().tolist():
        f = float(np.float32(v))
        if f != v:
            raise AssertionError(f"{v!r} is not float32-exact")
        out.append(f)
    return out


def postprocess(engine, raw: np.ndarray, input_hw, ratio: float, nms_thr: float = NMS_THR,
                score_thr: float = SCORE_THR):
    """``get_bbox``'s steps after ``session.run``, with the engine's own methods (``raw`` is decoded
    in place): ``(predictions, xyxy, scores, dets)``, ``dets`` None when nothing passes."""
    predictions = engine.demo_postprocess(raw, input_hw)[0]
    boxes = predictions[:, :4]
    scores = predictions[:, 4:5] * predictions[:, 5:]
    xyxy = np.ones_like(boxes)
    xyxy[:, 0] = boxes[:, 0] - boxes[:, 2] / 2.0
    xyxy[:, 1] = boxes[:, 1] - boxes[:, 3] / 2.0
    xyxy[:, 2] = boxes[:, 0] + boxes[:, 2] / 2.0
    xyxy[:, 3] = boxes[:, 1] + boxes[:, 3] / 2.0
    xyxy /= ratio
    dets = engine.multiclass_nms(xyxy, scores, nms_thr=nms_thr, score_thr=score_thr)
    return predictions, xyxy, scores, dets


def step_by_step(engine, data: bytes):
    """ddddocr's get_bbox, unrolled with the engine's own methods; returns the intermediates."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    tensor, ratio = engine.preproc(img, INPUT_HW)
    name = engine.session.get_inputs()[0].name
    raw = engine.session.run(None, {name: tensor[None, :, :, :]})[0]
    raw_copy = raw.copy()
    predictions, xyxy, scores, dets = postprocess(engine, raw, INPUT_HW, ratio)  # in place on raw
    return img, tensor, ratio, raw_copy, predictions.copy(), xyxy, scores, dets


def main() -> None:
    ocr = ddddocr.DdddOcr(det=True, ocr=False, show_ad=False)
    engine = ocr.detection_engine
    results = {}
    notes = []
    for photo in PHOTOS + EXTRA_PHOTOS:
        try:
            path = assets.photo(photo)
        except assets.AssetUnavailable as exc:
            print(f"skip {photo}: {exc}")
            continue
        data = path.read_bytes()
        public = ocr.detection(data)
        direct = engine.get_bbox(data)
        assert public == direct, (photo, public, direct)

        img, tensor, ratio, raw, decoded, xyxy, scores, dets = step_by_step(engine, data)
        raw2 = step_by_step(engine, data)[3]
        assert np.array_equal(raw, raw2), f"{photo}: onnxruntime output not deterministic"
        if dets is None:
            dets = np.zeros((0, 6), dtype=np.float64)
        ints = ref.ddddocr_int_boxes(dets, img.shape[:2])
        assert ints == public, (photo, ints, public)

        # The test-side reference, bit for bit.
        t2, r2 = ref.preprocess(img, INPUT_HW)
        assert r2 == ratio and t2.dtype == np.float32 and np.array_equal(t2[0], tensor), photo
        d2 = ref.decode(raw, INPUT_HW)
        assert d2.dtype == decoded.dtype and np.array_equal(d2[0], decoded), photo
        assert not np.array_equal(d2, raw), photo
        p2 = ref.postprocess(raw, INPUT_HW, ratio, NMS_THR, SCORE_THR)
        assert p2.dtype == dets.dtype, (photo, p2.dtype, dets.dtype)
        assert p2.shape == dets.shape and np.array_equal(p2, dets), photo
        aware = ref.postprocess(raw, INPUT_HW, ratio, NMS_THR, SCORE_THR, class_agnostic=False)
        assert np.array_equal(aware, dets), f"{photo}: nc=1, class-aware must equal agnostic"

        best = scores.max(1)
        cand = best > SCORE_THR
        cand_scores = best[cand]
        uniq, counts = np.unique(cand_scores, return_counts=True)
        tied = int((counts > 1).sum())
        kept_scores = dets[:, 4].astype(np.float32)
        kept_tied = int(sum(int((cand_scores == s).sum()) > 1 for s in kept_scores))
        h, w = img.shape[:2]
        outside = {
            "x1<0": int((dets[:, 0] < 0).sum()), "y1<0": int((dets[:, 1] < 0).sum()),
            "x2>w": int((dets[:, 2] > w).sum()), "y2>h": int((dets[:, 3] > h).sum()),
        }
        results[photo] = {
            "extra": photo in EXTRA_PHOTOS,
            "image_hw": [int(h), int(w)],
            "file_channels": None,
            "ratio": ratio,
            "resized_wh": [int(w * ratio), int(h * ratio)],
            "raw_sha256": hashlib.sha256(np.ascontiguousarray(raw, dtype=np.float32).tobytes()).hexdigest(),
            "raw_shape": list(raw.shape),
            "candidates": int(cand.sum()),
            "count": int(len(dets)),
            "ints": public,
            "rows": [f32_list(row) for row in dets],
            "tied_candidate_scores": tied,
            "kept_with_tied_score": kept_tied,
            "outside_image": outside,
        }
        raw_file = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        results[photo]["file_channels"] = 1 if raw_file.ndim == 2 else int(raw_file.shape[2])
        print(f"{photo}: {h}x{w} ratio={ratio:.6f} candidates={int(cand.sum())} kept={len(dets)} "
              f"ties={tied} kept_tied={kept_tied} outside={outside}")

    # No detections at all: ddddocr answers [] (multiclass_nms returns None, get_bbox catches the
    # TypeError); the reference returns an empty (0, 6) array.
    blank = cv2.imencode(".png", np.full((200, 300, 3), 114, np.uint8))[1].tobytes()
    blank_ints = ocr.detection(blank)
    b_img, _, b_ratio, b_raw, *_rest, b_dets = step_by_step(engine, blank)
    b_ref = ref.postprocess(b_raw, INPUT_HW, b_ratio, NMS_THR, SCORE_THR)
    if b_dets is None:
        assert blank_ints == [] and b_ref.shape == (0, 6), (blank_ints, b_ref.shape)
        notes.append("a uniform 114 image (200x300 PNG) gives no candidate: multiclass_nms returns None, "
                     "get_bbox returns []")
    else:
        notes.append(f"a uniform 114 image gives {len(b_dets)} detections")

    golden = {
        "source": "ddddocr.DdddOcr(det=True, ocr=False, show_ad=False).detection(file bytes); rows from the "
                  "engine's preproc/demo_postprocess/multiclass_nms step by step",
        "model": "ddddocr/common_det.onnx",
        "model_sha256": hashlib.sha256(
            (Path(ddddocr.__file__).parent / "common_det.onnx").read_bytes()).hexdigest(),
        "input_hw": list(INPUT_HW),
        "nms_thr": NMS_THR,
        "score_thr": SCORE_THR,
        "class_agnostic": True,
        "row_format": ["x1", "y1", "x2", "y2", "score", "class"],
        "versions": {
            "ddddocr": md.version("ddddocr"),
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
            "cv2": cv2.__version__,
        },
        "notes": notes,
        "photos": results,
    }
    OUT.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
