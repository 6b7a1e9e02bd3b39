"""Colours are stable per class and are Ultralytics' own: the palette, the label text colours and
the pose tables (checked against ``ultralytics.utils.plotting`` where it is installed), and the
colour a box is drawn in, read back from a saved PNG."""

from __future__ import annotations

import numpy as np
import pytest

import modelserve as ms
from modelserve.plotting import colors, plot, save

from .pixels import decode

#: ``ultralytics.utils.plotting.Colors`` of Ultralytics 8.4 (its documented palette table).
ULTRALYTICS_HEX = ["042AFF", "0BDBEB", "F3F3F3", "00DFB7", "111F68", "FF6FDD", "FF444F", "CCED00", "00F344",
                   "BD00FF", "00B4FF", "DD00BA", "00FFFF", "26C000", "01FFB3", "7D24FF", "7B0068", "FF1B6C",
                   "FC6D2F", "A2FF0B"]


def test_palette_is_ultralytics_and_wraps_every_20_classes():
    assert [colors.class_color(i) for i in range(20)] == [tuple(bytes.fromhex(h)) for h in ULTRALYTICS_HEX]
    assert len(set(colors.PALETTE)) == 20
    for i in (0, 7, 19, 123):
        assert colors.class_color(i) == colors.class_color(i + 20) == colors.class_color(i + 400)
        assert colors.class_color(i, bgr=True) == colors.class_color(i)[::-1]


def test_drawn_colour_is_the_class_colour(tmp_path):
    """25 classes side by side: each box outline, read back from the PNG, is palette[class % 20]."""
    hw = (40, 25 * 12)
    boxes = [[12 * c + 1, 5, 12 * c + 11, 35] for c in range(25)]
    r = ms.Detections(boxes, np.linspace(0.9, 0.3, 25), list(range(25)), {}, hw)
    img = np.full((*hw, 3), 128, np.uint8)
    save(r, img, tmp_path / "c.png", labels=False, conf=False, line_width=2)
    got = decode(tmp_path / "c.png")
    for c in range(25):
        assert tuple(int(v) for v in got[20, 12 * c + 1]) == tuple(bytes.fromhex(ULTRALYTICS_HEX[c % 20]))
    # the same class keeps its colour in another result, picture and channel order
    other = ms.Detections([[0, 0, 10, 10]], [0.5], [3], {}, (20, 20))
    assert tuple(plot(other, np.zeros((20, 20, 3), np.uint8), bgr=False)[5, 0]) == colors.class_color(3)
    assert tuple(plot(other, np.zeros((20, 20, 3), np.uint8))[5, 0]) == colors.class_color(3, bgr=True)


def test_tables_equal_ultralytics_live():
    plotting = pytest.importorskip("ultralytics.utils.plotting")
    u = plotting.Colors()
    for i in range(45):
        assert colors.class_color(i) == u(i) and colors.class_color(i, bgr=True) == u(i, True)
    ann = plotting.Annotator(np.zeros((32, 32, 3), np.uint8))
    assert [list(p) for p in colors.SKELETON] == ann.skeleton
    # Ultralytics draws its BGR pictures with these rows as OpenCV colours: they are BGR
    assert [colors.limb_color(i, bgr=True) for i in range(len(colors.SKELETON))] == \
        [tuple(int(v) for v in row) for row in ann.limb_color]
    assert [colors.keypoint_color(i, 17, bgr=True) for i in range(17)] == \
        [tuple(int(v) for v in row) for row in ann.kpt_color]
    assert [colors.keypoint_color(i, 5, bgr=True) for i in range(5)] == [u(i) for i in range(5)]
    for i in range(20):
        assert colors.text_color(i, bgr=True) == tuple(ann.get_txt_color(u(i, True)))
