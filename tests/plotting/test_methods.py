"""``r.plot()``, ``r.save()``, ``r.save_txt()`` on results a Predictor made: the image they were
predicted on is kept, pictures come back in BGR (Ultralytics' order), and filtering keeps the image
and the origin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import modelserve as ms
from modelserve import plotting
from tests import assets


def test_plot_uses_the_image_it_was_predicted_on(detector_path, bgr):
    img = bgr("bus.jpg")
    with ms.load(detector_path) as p:
        from_array = p.predict(img)
        from_path = p.predict(str(assets.photo("bus.jpg")))
    want = plotting.plot(from_array, img, bgr=True)
    np.testing.assert_array_equal(from_array.plot(), want)
    np.testing.assert_array_equal(from_path.plot(), want)  # decoded from the file as RGB, drawn, returned BGR
    np.testing.assert_array_equal(from_path.plot(rgb=True), want[..., ::-1])
    assert not np.array_equal(want, img) and from_array.origin.kind == "memory"
    assert from_path.origin.kind == "file" and from_path.origin.path.endswith("bus.jpg")


def test_filtering_keeps_image_and_origin(detector_path, bgr, tmp_path):
    img = bgr("bus.jpg")
    with ms.load(detector_path) as p:
        r = p.predict(str(assets.photo("bus.jpg")))
    assert len(r) >= 2
    top = r[r.confidence >= r.confidence[1]]
    assert top.origin == r.origin and top.to_dict()["origin"]["path"] == r.origin.path
    np.testing.assert_array_equal(top.plot(), plotting.plot(top, img, bgr=True))
    out = top.save(tmp_path / "top.png")
    np.testing.assert_array_equal(np.asarray(Image.open(out))[..., ::-1], top.plot())
    labels = top.save_txt(tmp_path / "top.txt")
    assert len(open(labels).read().splitlines()) == len(top)


def test_a_hand_made_result_needs_the_image():
    r = ms.Detections(np.array([[1, 1, 5, 5]], np.float32), np.array([0.9], np.float32), np.array([0]), {0: "a"},
                      (8, 8))
    with pytest.raises(ms.InvalidInputError, match="pass the image"):
        r.plot()
    pic = r.plot(np.zeros((8, 8, 3), np.uint8))
    assert pic.shape == (8, 8, 3) and pic.any()


def test_classification_pictures(bgr, tmp_path):
    path = Path(__file__).resolve().parents[1] / "goldens" / "tasks" / "models" / "cls.onnx"
    with ms.load(path) as p:
        c = p.predict(bgr("zidane.jpg"))
    pic = c.plot()
    assert pic.shape == bgr("zidane.jpg").shape and not np.array_equal(pic, bgr("zidane.jpg"))
    lines = open(c.save_txt(tmp_path / "c.txt")).read().splitlines()
    assert len(lines) == 5 and lines[0].split(" ", 1)[1] == c.top1_name
