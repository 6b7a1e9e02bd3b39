"""``save_txt`` writes Ultralytics' label format: line for line what Ultralytics' ``Results.save_txt``
writes for the same model and image (goldens in ``tests/goldens/plotting``, from
``make_goldens.py``; live against Ultralytics where it is installed), and exactly Ultralytics'
text for the very same arrays."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import modelserve as ms
from modelserve._mask_crops import MaskCrops
from modelserve.plotting import label_lines, save_txt

GOLDENS = Path(__file__).resolve().parents[1] / "goldens" / "plotting"
TASK_MODELS = Path(__file__).resolve().parents[1] / "goldens" / "tasks" / "models"
CASES = json.loads((GOLDENS / "cases.json").read_text())["cases"]
MODELS = {"detector": ("detect", 320), "seg": ("segment", 320), "pose": ("pose", 320), "obb": ("obb", 320),
          "cls": ("classify", 224)}


def assert_lines_match(got: list[str], want: list[str], *, save_conf: bool, ulps: bool = False) -> None:
    """Same lines, same class ids and number of values; numbers equal within 2e-5 (coordinates, 0.02 px
    on a 1000-px side) and 1e-4 (confidences, as the task parity tests); with ``ulps``, within one unit
    of the 6th significant digit (float32 rounding of the same arrays)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        gt, wt = g.split(" "), w.split(" ")
        assert len(gt) == len(wt) and gt[0] == wt[0], (g[:80], w[:80])
        gv, wv = np.array(gt[1:], float), np.array(wt[1:], float)
        if ulps:
            tol = np.array([1.01 * 10 ** (math.floor(math.log10(abs(v))) - 5) if v else 1e-12 for v in wv])
        else:
            tol = np.full(len(wv), 2e-5)
            if save_conf:
                tol[-1] = 1e-4
        assert (np.abs(gv - wv) <= tol).all(), (g[:80], w[:80])


def _predict(predictor_of, bgr, case):
    return predictor_of(case["model"]).predict(bgr(case["photo"]), **case["options"])


def _golden(case) -> list[str]:
    path = GOLDENS / f"{case['name']}.txt"
    return path.read_text().splitlines() if path.is_file() else []


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_lines_equal_ultralytics_goldens(predictor_of, bgr, case):
    r = _predict(predictor_of, bgr, case)
    want = _golden(case)
    assert len(want) == case["lines"]
    if case["model"] == "cls":
        assert label_lines(r, save_conf=True) == label_lines(r) == want
        return
    assert_lines_match(label_lines(r, save_conf=True), want, save_conf=True)
    assert_lines_match(label_lines(r), [w.rsplit(" ", 1)[0] for w in want], save_conf=False)


def _mirror(r, bgr_img):
    """An Ultralytics Results holding modelserve's own arrays."""
    torch = pytest.importorskip("torch")
    from ultralytics.engine.results import Results

    if isinstance(r, ms.Classification):
        return Results(bgr_img, "x.jpg", r.names, probs=torch.from_numpy(r.probs))
    tail = [r.confidence[:, None], r.class_id[:, None].astype(np.float32)]
    kw = {}
    if r.xywhr is not None:
        kw["obb"] = torch.from_numpy(np.concatenate([r.xywhr, *tail], 1))
    else:
        kw["boxes"] = torch.from_numpy(np.concatenate([r.xyxy, *tail], 1))
    if r.keypoints is not None:
        kw["keypoints"] = torch.from_numpy(r.keypoints)
    if r.mask_crops is not None:
        kw["masks"] = torch.from_numpy(r.masks)
    return Results(bgr_img, "x.jpg", r.names, **kw)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
@pytest.mark.parametrize("save_conf", [False, True])
def test_lines_equal_ultralytics_live(predictor_of, detector_path, bgr, case, save_conf, tmp_path):
    pytest.importorskip("ultralytics")
    from ultralytics import YOLO

    img = bgr(case["photo"])
    r = _predict(predictor_of, bgr, case)
    ours = label_lines(r, save_conf=save_conf)
    # the same arrays: Ultralytics' text exactly (rotated boxes: its corners round in float32 on their own)
    _mirror(r, img).save_txt(tmp_path / "same.txt", save_conf=save_conf)
    same = (tmp_path / "same.txt").read_text().splitlines() if (tmp_path / "same.txt").is_file() else []
    if case["model"] == "obb":
        assert_lines_match(ours, same, save_conf=save_conf, ulps=True)
    else:
        assert ours == same
    # Ultralytics' own predictions on the same model and image
    task, imgsz = MODELS[case["model"]]
    model = detector_path if case["model"] == "detector" else TASK_MODELS / f"{case['model']}.onnx"
    u = YOLO(str(model), task=task).predict(
        img, imgsz=imgsz, verbose=False, device="cpu", retina_masks=True, max_det=case["options"].get("max_det", 300))[0]
    u.save_txt(tmp_path / "own.txt", save_conf=save_conf)
    own = (tmp_path / "own.txt").read_text().splitlines() if (tmp_path / "own.txt").is_file() else []
    if case["model"] == "cls":
        assert ours == own
    else:
        assert_lines_match(ours, own, save_conf=save_conf)


# ------------------------------------------------------------------ the format, by hand


def test_format_by_hand(tmp_path):
    hw = (100, 200)
    det = ms.Detections([[10, 20, 30, 60], [0, 0, 200, 100]], [0.5, 0.25], [3, 0], {}, hw)
    assert label_lines(det) == ["3 0.1 0.4 0.1 0.4", "0 0.5 0.5 1 1"]
    assert label_lines(det, save_conf=True) == ["3 0.1 0.4 0.1 0.4 0.5", "0 0.5 0.5 1 1 0.25"]
    kp2 = ms.Detections([[0, 0, 100, 50]], [1.0], [0], {}, hw, keypoints=[[[50, 25], [200, 0]]])
    assert label_lines(kp2) == ["0 0.25 0.25 0.5 0.5 0.25 0.25 1 0"]
    kp3 = ms.Detections([[0, 0, 100, 50]], [1.0], [0], {}, hw, keypoints=[[[50, 25, 0.75]]])
    assert label_lines(kp3, save_conf=True) == ["0 0.25 0.25 0.5 0.5 0.25 0.25 0.75 1"]
    obb = ms.Detections([[0, 0, 1, 1]], [0.5], [1], {}, hw, xywhr=[[100, 50, 40, 20, 0.0]])
    assert label_lines(obb) == ["1 0.6 0.6 0.6 0.4 0.4 0.4 0.4 0.6"]
    cls = ms.Classification(np.array([0.1, 0.6, 0.3], np.float32), {0: "a", 1: "b", 2: "c"}, hw)
    assert label_lines(cls) == label_lines(cls, save_conf=True) == ["0.60 b", "0.30 c", "0.10 a"]


def test_segments_with_fewer_than_3_points_are_left_out():
    square = np.ones((20, 20), bool)
    dot = np.ones((1, 1), bool)  # one pixel: a one-point contour
    crops = MaskCrops([square, dot], [(10, 10), (50, 50)], (100, 100))
    r = ms.Detections([[10, 10, 30, 30], [50, 50, 51, 51]], [0.9, 0.8], [0, 1], {}, (100, 100), mask_crops=crops)
    lines = label_lines(r)
    assert len(r.masks_xy[1]) < 3 and len(lines) == 1
    values = np.array(lines[0].split()[1:], float).reshape(-1, 2)
    assert lines[0].startswith("0 ") and values.min() >= 0.1 and values.max() <= 0.3


def test_save_txt_appends_creates_folders_and_skips_empty(tmp_path):
    r = ms.Detections([[10, 20, 30, 60]], [0.5], [3], {}, (100, 200))
    path = tmp_path / "labels" / "deep" / "x.txt"
    assert save_txt(r, path) == str(path)
    save_txt(r, str(path), save_conf=True)
    assert path.read_text() == "3 0.1 0.4 0.1 0.4\n3 0.1 0.4 0.1 0.4 0.5\n"
    empty = tmp_path / "none" / "e.txt"
    save_txt(ms.Detections.empty({}, (10, 10)), empty)
    assert not empty.exists() and not empty.parent.exists()


def test_save_txt_refuses_bad_arguments(tmp_path):
    r = ms.Detections([[10, 20, 30, 60]], [0.5], [3], {}, (100, 200))
    with pytest.raises(ms.InvalidInputError, match="save_conf must be True or False"):
        save_txt(r, tmp_path / "a.txt", save_conf="yes")
    with pytest.raises(ms.InvalidInputError, match="path must be a str"):
        save_txt(r, 3)
    with pytest.raises(ms.InvalidInputError, match="expected a modelserve result"):
        label_lines({"xyxy": []})
    with pytest.raises(ms.InvalidInputError, match="orig_shape"):
        label_lines(ms.Detections([[1, 2, 3, 4]], [0.5], [0]))  # no image size: nothing to normalise by
    (tmp_path / "d.txt").mkdir()
    with pytest.raises(ms.InvalidInputError, match="must be a regular file"):
        save_txt(r, tmp_path / "d.txt")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "f.txt")
        with pytest.raises(ms.InvalidInputError, match="must be a regular file"):
            save_txt(r, tmp_path / "f.txt")  # a FIFO without a reader would block forever
