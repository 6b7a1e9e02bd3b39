"""Edge cases and hostile arguments: empty results, tiny and grayscale pictures, huge line widths,
the bitmap-font fallback, and every bad argument answered with InvalidInputError."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from PIL import ImageFont

import modelserve as ms
from modelserve.plotting import colors, fonts, plot, save
from modelserve.plotting.draw import default_line_width

from .pixels import changed, decode

NAMES = {0: "cat", 1: "dog"}


def _one(box, hw, cls=0, conf=0.9):
    return ms.Detections([box], [conf], [cls], NAMES, hw)


def test_empty_results_return_the_picture(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    for r in (ms.Detections.empty(NAMES, (30, 40)), ms.Detections.empty()):
        out = plot(r, img)
        assert np.array_equal(out, img) and out is not img
    save(ms.Detections.empty(NAMES, (30, 40)), img, tmp_path / "e.png")
    assert np.array_equal(decode(tmp_path / "e.png"), img[..., ::-1])


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (3, 2), (1, 50)])
def test_tiny_grayscale_pictures(hw):
    gray = np.full(hw, 77, np.uint8)  # HxW: read as three equal channels
    r = _one([0, 0, hw[1], hw[0]], hw, cls=1)
    out = plot(r, gray)
    assert out.shape == (*hw, 3) and out.dtype == np.uint8
    assert (out == colors.class_color(1, bgr=True)).all(axis=2).all(), "a line width of 2 covers a tiny box"
    assert plot(r, gray[..., None], labels=False).shape == (*hw, 3)
    assert default_line_width(hw) == 2


def test_huge_line_width_fills_the_box_only():
    img = np.full((48, 64, 3), 10, np.uint8)
    r = _one([10, 12, 30, 40], (48, 64))
    out = plot(r, img, line_width=10**9, labels=False, conf=False)
    inside = np.zeros((48, 64), bool)
    inside[12:40, 10:30] = True
    assert (out[inside] == colors.class_color(0, bgr=True)).all()
    assert not changed(out, img)[~inside].any()
    obb = ms.Detections([[0, 0, 1, 1]], [0.9], [0], NAMES, (48, 64), xywhr=[[32, 24, 20, 10, 0.3]])
    assert changed(plot(obb, img, line_width=10**9), img).all()  # a line that wide covers everything
    kp = ms.Detections([[0, 0, 1, 1]], [0.9], [0], NAMES, (48, 64), keypoints=[[[5, 5, 1.0]]])
    assert changed(plot(kp, img, kpt_radius=10**9, boxes=False), img).all()


def test_huge_font_and_long_names_stay_in_the_picture():
    img = np.zeros((40, 60, 3), np.uint8)
    r = ms.Detections([[5, 5, 20, 20]], [0.5], [0], {0: "x" * 10_000 + "\n\t"}, (40, 60))
    out = plot(r, img, font_size=fonts.MAX_FONT_SIZE)
    assert out.shape == img.shape and changed(out, img).any()
    assert fonts.clean("a\nb\tc" + "y" * 500) == "a b c" + "y" * (fonts.MAX_LABEL_CHARS - 5)
    assert fonts.clean("x" * 100, 1024, 60) == "x"  # never rendered much wider than the picture
    assert fonts.clean("x" * 100, 16, 60) == "x" * 16


def test_bitmap_font_fallback(monkeypatch):
    """Pillow < 10.1 (no ``size``) or a Pillow without FreeType: the bitmap default font is used."""
    bitmap = ImageFont.load_default_imagefont  # what load_default() gives on Pillow < 10.1

    def old_pillow(size=None):
        if size is not None:
            raise TypeError("load_default() got an unexpected keyword argument 'size'")
        return bitmap()

    monkeypatch.setattr(fonts.ImageFont, "load_default", old_pillow)
    monkeypatch.setattr(fonts, "_LOCAL", threading.local())
    fonts._cached_label.cache_clear()  # rendered labels are cached by text and size, not by font
    try:
        assert not fonts.scalable()
        img = np.zeros((60, 80, 3), np.uint8)
        out = plot(_one([10, 30, 50, 50], (60, 80)), img)
        assert changed(out, img)[:30].any(), "the label above the box is drawn"
    finally:
        fonts._cached_label.cache_clear()


@pytest.mark.parametrize("kwargs, match", [
    ({"conf": "yes"}, "conf must be True or False"),
    ({"labels": 1}, "labels must be True or False"),
    ({"boxes": None}, "boxes must be True or False"),
    ({"masks": "no"}, "masks must be True or False"),
    ({"keypoints": 0}, "keypoints must be True or False"),
    ({"bgr": "rgb"}, "bgr must be True or False"),
    ({"line_width": 0}, "line_width must be an int >= 1"),
    ({"line_width": -3}, "line_width must be an int >= 1"),
    ({"line_width": 2.5}, "line_width must be an int >= 1"),
    ({"line_width": True}, "line_width must be an int >= 1"),
    ({"line_width": "3"}, "line_width must be an int >= 1"),
    ({"font_size": 0}, "font_size must be an int >= 1"),
    ({"font_size": 1025}, "font_size must be at most 1024"),
    ({"font_size": 12.0}, "font_size must be an int >= 1"),
    ({"kpt_radius": -1}, "kpt_radius must be an int >= 0"),
    ({"kpt_radius": 1.5}, "kpt_radius must be an int >= 0"),
    ({"alpha": -0.1}, r"alpha must be in \[0, 1\]"),
    ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    ({"alpha": float("nan")}, "alpha must be finite"),
    ({"alpha": "0.5"}, "alpha must be a number"),
    ({"alpha": True}, "alpha must be a number"),
])
def test_bad_plot_arguments(kwargs, match):
    img = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ms.InvalidInputError, match=match):
        plot(_one([1, 1, 5, 5], (20, 20)), img, **kwargs)
    cls = ms.Classification(np.full(3, 1 / 3, np.float32), {0: "a", 1: "b", 2: "c"}, (20, 20))
    if "bgr" not in kwargs:
        with pytest.raises(ms.InvalidInputError, match=match):
            plot(cls, img, **kwargs)


@pytest.mark.parametrize("result, image, match", [
    (object(), np.zeros((4, 4, 3), np.uint8), "expected a modelserve result"),
    (None, np.zeros((4, 4, 3), np.uint8), "expected a modelserve result"),
    (_one([0, 0, 1, 1], (4, 4)), np.zeros((4, 5, 3), np.uint8), "the picture is 4x5"),
    (_one([0, 0, 1, 1], (4, 4)), np.zeros((4, 4, 3), np.float32), "uint8"),
    (_one([0, 0, 1, 1], (4, 4)), [[1, 2], [3, 4]], "image"),
    (_one([0, 0, 1, 1], (4, 4)), b"not an image", "cannot decode"),
])
def test_bad_results_and_pictures(result, image, match):
    with pytest.raises(ms.InvalidInputError, match=match):
        plot(result, image)


def test_bad_save_paths_and_arguments(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    r = _one([1, 1, 5, 5], (8, 8))
    with pytest.raises(ms.InvalidInputError, match="cannot tell the picture format"):
        save(r, img, tmp_path / "out.gif")
    with pytest.raises(ms.InvalidInputError, match="cannot tell the picture format"):
        save(r, img, tmp_path / "noext")
    with pytest.raises(ms.InvalidInputError, match="path must be a str"):
        save(r, img, 42)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ms.InvalidInputError, match="must be a regular file"):
        save(r, img, tmp_path / "dir.png")
    with pytest.raises(ms.InvalidInputError, match="unexpected keyword arguments: colour"):
        save(r, img, tmp_path / "a.png", colour="red")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.png")
        with pytest.raises(ms.InvalidInputError, match="must be a regular file"):
            save(r, img, tmp_path / "fifo.png")


@pytest.mark.parametrize("ext", [".jpg", ".JPEG", ".png", ".bmp", ".tif", ".webp"])
def test_save_formats_and_folders(tmp_path, ext):
    from PIL import Image

    img = np.zeros((16, 16, 3), np.uint8)
    path = tmp_path / "new" / "folder" / f"out{ext}"
    save(_one([2, 2, 14, 14], (16, 16)), img, path)
    with Image.open(path) as im:
        assert im.size == (16, 16)
        assert im.format == {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF",
                             ".webp": "WEBP"}[ext.lower()]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]
