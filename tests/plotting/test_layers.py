"""Masks, keypoint skeletons, rotated boxes and classification lines, on real task models and on
hand-made results whose every pixel is known."""

from __future__ import annotations

import numpy as np
import pytest

import modelserve as ms
from modelserve._mask_crops import MaskCrops
from modelserve.plotting import colors, fonts, plot, save
from modelserve.plotting.draw import default_font_size

from .pixels import changed, decode


@pytest.fixture(scope="module")
def bus(bgr):
    return bgr("bus.jpg")


class _NoFullMasks:
    """A result that refuses to build full-picture masks: drawing must use the per-box crops."""

    def __init__(self, r):
        self._r = r

    def __getattr__(self, name):
        if name == "masks":
            raise AssertionError("plot() built the full (n, H, W) masks")
        return getattr(self._r, name)

    def __len__(self):
        return len(self._r)


# ------------------------------------------------------------------ masks


@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.3])
def test_masks_coloured_only_inside_their_mask(predictor_of, bus, tmp_path, alpha):
    r = predictor_of("seg").predict(bus)[:6]
    assert len(r) == 6
    save(_NoFullMasks(r), bus, tmp_path / "m.png", boxes=False, alpha=alpha)
    got = decode(tmp_path / "m.png").astype(np.int64)
    before = bus[..., ::-1].astype(np.int64)
    masks = r.masks  # (6, H, W), best first
    anywhere = masks.any(axis=0)
    assert anywhere.mean() > 0.01
    assert not changed(got, before)[~anywhere].any(), "pixels outside every mask changed"
    top = np.argmax(masks, axis=0)  # the best detection covering each pixel
    palette = np.array([colors.class_color(int(c)) for c in r.class_id])
    want = (1 - alpha) * before + alpha * palette[top]
    assert np.abs(got - want)[anywhere].max() <= 1
    assert changed(got, before)[anywhere].mean() > 0.9


def test_masks_off_or_transparent_change_nothing(predictor_of, bus):
    r = predictor_of("seg").predict(bus)[:4]
    for kwargs in ({"masks": False}, {"alpha": 0.0}):
        assert np.array_equal(plot(r, bus, boxes=False, **kwargs), bus)


def test_mask_crops_of_another_picture_size_refused(bus):
    crops = MaskCrops([np.ones((2, 2), bool)], [(0, 0)], (10, 10))
    r = ms.Detections([[0, 0, 2, 2]], [0.9], [0], {}, (0, 0), mask_crops=crops)
    with pytest.raises(ms.InvalidInputError, match="masks"):
        plot(r, bus)


# ------------------------------------------------------------------ keypoints


def _pose(kpts, hw=(60, 80)):
    kpts = np.asarray(kpts, np.float32)[None]
    return ms.Detections([[0, 0, 1, 1]], [0.9], [0], {0: "person"}, hw, keypoints=kpts)


def test_lone_keypoint_is_a_disc_in_its_colour():
    kpts = np.zeros((17, 3), np.float32)
    kpts[0] = (30, 20, 0.9)  # the nose, alone: no limb can be drawn
    kpts[5] = (50, 40, 0.1)  # below the 0.25 threshold: not drawn
    img = np.full((60, 80, 3), 100, np.uint8)
    out = plot(_pose(kpts), img, boxes=False, kpt_radius=4, bgr=False)
    diff = changed(out, img)
    yy, xx = np.nonzero(diff)
    assert (out[diff] == colors.keypoint_color(0, 17)).all()
    assert abs(xx.mean() - 30) < 1 and abs(yy.mean() - 20) < 1
    assert 4 <= xx.max() - 30 <= 5 and 4 <= yy.max() - 20 <= 5


def test_limb_joins_two_visible_keypoints_in_ultralytics_colour():
    kpts = np.zeros((17, 3), np.float32)
    kpts[15] = (10, 30, 0.9)  # left ankle (16, 1-based) and left knee (14): limb 0
    kpts[13] = (70, 30, 0.9)
    img = np.full((60, 80, 3), 100, np.uint8)
    out = plot(_pose(kpts), img, boxes=False, kpt_radius=2, bgr=False, line_width=4)
    assert (out[30, 40] == colors.limb_color(0)).all()
    assert (out[10, 40] == 100).all() and (out[50, 40] == 100).all()
    assert colors.SKELETON[0] == (16, 14)


def test_other_keypoint_counts_draw_points_only():
    kpts = np.zeros((5, 2), np.float32)
    kpts[1] = (20, 20)
    kpts[3] = (60, 40)  # 2-D keypoints: (0, 0) means missing, the others are drawn
    img = np.full((60, 80, 3), 100, np.uint8)
    out = plot(_pose(kpts), img, boxes=False, kpt_radius=3, bgr=False)
    assert (out[20, 20] == colors.keypoint_color(1, 5)).all()
    assert (out[40, 60] == colors.keypoint_color(3, 5)).all()
    assert (out[30, 40] == 100).all() and (out[0, 0] == 100).all()


def test_pose_model_draws_skeletons(predictor_of, bus):
    r = predictor_of("pose").predict(bus)[:3]
    assert r.keypoints.shape[1:] == (17, 3)
    without = plot(r, bus, keypoints=False)
    with_kpts = plot(r, bus)
    diff = changed(with_kpts, without)
    assert diff.sum() > 100
    k = r.keypoints[0]  # the best detection's points are drawn last: each visible disc centre is coloured
    limb_colours = {colors.limb_color(i, bgr=True) for i in range(len(colors.SKELETON))}
    for j, (x, y, c) in enumerate(k):
        if c >= 0.25 and 0 <= x < bus.shape[1] and 0 <= y < bus.shape[0]:
            px = tuple(int(v) for v in with_kpts[int(y), int(x)])
            assert px == colors.keypoint_color(j, 17, bgr=True) or px in limb_colours


# ------------------------------------------------------------------ rotated boxes


def test_rotated_box_edges_in_class_colour_centre_untouched():
    img = np.full((100, 120, 3), 50, np.uint8)
    xywhr = np.array([[60, 50, 60, 30, np.pi / 6]], np.float32)
    r = ms.Detections([[0, 0, 1, 1]], [0.9], [3], {3: "ship"}, (100, 120), xywhr=xywhr)
    out = plot(r, img, labels=False, conf=False, line_width=3, bgr=False)
    corners = r.corners[0]
    for a, b in zip(corners, np.roll(corners, -1, axis=0)):
        x, y = (a + b) / 2
        assert (out[int(round(y)), int(round(x))] == colors.class_color(3)).all()
    assert (out[50, 60] == 50).all() and (out[0, 0] == 50).all() and (out[99, 119] == 50).all()
    labelled = plot(r, img, line_width=3, bgr=False)
    top = corners[np.argmin(corners[:, 1])]  # the label sits on the topmost corner
    x, y = int(np.floor(top[0])), int(np.floor(top[1]))
    assert (changed(labelled, out)[max(y - 30, 0):y + 1, x:x + 10]).any()


def test_obb_model(predictor_of, bus, tmp_path):
    r = predictor_of("obb").predict(bus)[:5]
    assert r.xywhr is not None and len(r) == 5
    save(r, bus, tmp_path / "o.png", labels=False, conf=False)
    got = decode(tmp_path / "o.png")
    for i in range(5):
        a, b = r.corners[i][0], r.corners[i][1]
        x, y = (a + b) / 2
        if 0 <= x < bus.shape[1] and 0 <= y < bus.shape[0]:
            assert changed(got[int(y):int(y) + 1, int(x):int(x) + 1], bus[int(y):int(y) + 1, int(x):int(x) + 1, ::-1]).all()


# ------------------------------------------------------------------ classification


def test_classification_lines_top_left_only(predictor_of, bus):
    r = predictor_of("cls").predict(bus)
    rgb = np.ascontiguousarray(bus[..., ::-1])
    out = plot(r, rgb, bgr=False)
    x0 = round(bus.shape[0] * 0.03)
    font = fonts.font(default_font_size(bus.shape[:2], 2, classify=True))
    lines = [f"{r.names[j]} {r.probs[j]:.2f}" for j in r.top5]
    boxes = [fonts.measure(font, t) for t in lines]
    area = np.zeros(bus.shape[:2], bool)
    area[x0:x0 + sum(b.height for b in boxes), x0:x0 + max(b.width for b in boxes)] = True
    diff = changed(out, rgb)
    assert not diff[~area].any()
    assert diff[area].mean() > 0.9  # the translucent background
    assert (out[area] == 255).all(axis=1).sum() > 50  # white text
    assert np.array_equal(plot(r, bus, labels=False, conf=False), bus)


def test_classification_names_or_scores_alone(predictor_of, bus):
    r = predictor_of("cls").predict(bus)
    both, names, scores = (changed(plot(r, bus, **kw), bus).sum()
                           for kw in ({}, {"conf": False}, {"labels": False}))
    assert both > names > 0 and both > scores > 0
