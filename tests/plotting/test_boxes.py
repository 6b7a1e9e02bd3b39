"""Boxes and labels on real detections: pictures saved as PNG and JPEG are decoded back, every box's
outline is drawn in its class colour, and nothing outside the boxes and their labels changes."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import modelserve as ms
from modelserve.plotting import colors, plot, save
from modelserve.plotting.draw import default_font_size, default_line_width

from .pixels import changed, covered, decode, label_rect, rect_mask, ring_mask


@pytest.fixture(scope="module")
def bus(bgr):
    return bgr("bus.jpg")


@pytest.fixture(scope="module")
def detections(predictor_of, bus):
    r = predictor_of("detector").predict(bus, conf=0.05)
    assert len(r) >= 3, "the detector should find several objects on bus.jpg at conf 0.05"
    return r


def _rects(r, hw):
    return [covered(b, hw) for b in r.xyxy]


def test_png_outlines_in_class_colour_and_nothing_else(detections, bus, tmp_path):
    hw = bus.shape[:2]
    path = save(detections, bus, tmp_path / "boxes.png", labels=False, conf=False)
    assert path == str(tmp_path / "boxes.png")
    got, before = decode(tmp_path / "boxes.png"), bus[..., ::-1]
    diff = changed(got, before)
    rects = _rects(detections, hw)
    assert not diff[~rect_mask(rects, hw)].any(), "pixels outside every box changed"
    lw = default_line_width(hw)
    for i, rect in enumerate(rects):
        ring = ring_mask(rect, lw, hw)
        assert diff[ring].mean() > 0.95, f"box {i}: its outline is not drawn"
    best = ring_mask(rects[0], lw, hw)  # the best box is drawn last: its outline is exactly its colour
    assert (got[best] == colors.class_color(int(detections.class_id[0]))).all()
    inner = rect_mask(rects, hw) & ~np.logical_or.reduce([ring_mask(r, lw, hw) for r in rects])
    assert not diff[inner].any(), "box interiors changed (outline drawn outside its width)"


def test_labels_sit_on_each_box_and_change_nothing_else(detections, bus, tmp_path):
    hw = bus.shape[:2]
    save(detections, bus, tmp_path / "labels.png")
    got = decode(tmp_path / "labels.png")
    diff = changed(got, bus[..., ::-1])
    lw = default_line_width(hw)
    size = default_font_size(hw, lw, classify=False)
    rects = _rects(detections, hw)
    labels = [label_rect(f"{d.class_name} {d.confidence:.2f}", r[:2], size, hw) for d, r in zip(detections, rects)]
    for _, y0, _, y1 in labels:
        assert 0.8 * size <= y1 - y0 + 1 <= 1.6 * size
    assert not diff[~rect_mask(rects + labels, hw)].any(), "pixels outside the boxes and labels changed"
    x0, y0, x1, y1 = labels[0]  # the best label is drawn last: its background and its text show
    region = got[y0:y1 + 1, x0:x1 + 1].reshape(-1, 3)
    c = int(detections.class_id[0])
    assert (region == colors.class_color(c)).all(axis=1).mean() > 0.4
    assert (region == colors.text_color(c)).all(axis=1).sum() > 10


def test_jpeg_changes_inside_boxes_and_leaves_far_blocks_alone(detections, bus, tmp_path):
    """JPEG is lossy, so compare with the same picture saved without drawings at the same quality:
    16x16 blocks at least one block away from any drawing decode identically."""
    from PIL import Image

    hw = bus.shape[:2]
    save(detections, bus, tmp_path / "a.jpg")
    save(ms.Detections.empty(detections.names, hw), bus, tmp_path / "plain.jpg")
    Image.fromarray(np.ascontiguousarray(bus[..., ::-1])).save(tmp_path / "ref.jpg", quality=95)
    got, plain, ref = decode(tmp_path / "a.jpg"), decode(tmp_path / "plain.jpg"), decode(tmp_path / "ref.jpg")
    assert np.array_equal(plain, ref), "save() writes JPEG at quality 95"
    drawn = changed(plot(detections, bus)[..., ::-1], bus[..., ::-1])
    bh, bw = -(-hw[0] // 16), -(-hw[1] // 16)
    blocks = np.zeros((bh * 16, bw * 16), bool)
    blocks[:hw[0], :hw[1]] = drawn
    touched = blocks.reshape(bh, 16, bw, 16).any(axis=(1, 3))
    near = touched.copy()
    near[1:] |= touched[:-1]
    near[:-1] |= touched[1:]
    near[:, 1:] |= near[:, :-1].copy()
    near[:, :-1] |= near[:, 1:].copy()
    far = np.repeat(np.repeat(~near, 16, 0), 16, 1)[:hw[0], :hw[1]]
    assert far.mean() > 0.3
    assert np.array_equal(got[far], ref[far])
    lw = default_line_width(hw)
    for rect in _rects(detections, hw):
        ring = ring_mask(rect, lw, hw)
        assert np.abs(got[ring].astype(int) - ref[ring].astype(int)).mean() > 20


def test_channel_order_follows_bgr_and_input_is_untouched(detections, bus, photo):
    keep = bus.copy()
    out_bgr = plot(detections, bus)
    assert np.array_equal(bus, keep), "plot modified its input"
    assert out_bgr.shape == bus.shape and out_bgr.dtype == np.uint8 and out_bgr.flags.writeable
    rgb = np.ascontiguousarray(bus[..., ::-1])
    assert np.array_equal(plot(detections, rgb, bgr=False), out_bgr[..., ::-1])
    assert np.array_equal(plot(detections, str(photo("bus.jpg"))), out_bgr)  # decoded as the Predictor does
    assert np.array_equal(plot(detections, str(photo("bus.jpg")), bgr=False), out_bgr[..., ::-1])


def test_box_far_outside_or_not_finite_is_clamped_or_skipped():
    img = np.full((40, 50, 3), 90, np.uint8)
    r = ms.Detections([[np.nan, 0, 10, 10], [5, 5, 1e30, 1e30], [-1e30, -1e30, 3, 3], [np.inf, 1, 2, 3]],
                      [0.9, 0.8, 0.7, 0.6], [0, 1, 2, 3], {}, (40, 50))
    out = plot(r, img, labels=False, conf=False, line_width=2)
    assert (out[10:, 5:7] == colors.class_color(1, bgr=True)).all()  # the huge box's left edge
    small = colors.class_color(2, bgr=True)  # columns and rows -inf..2: only its right and bottom edges show
    assert (out[1:3, :3] == small).all() and (out[:3, 1:3] == small).all() and (out[0, 0] == 90).all()
    assert (out[20:, 20:] == 90).all()  # the huge box's far edges lie outside
    away = ms.Detections([[60, 5, 80, 20], [5, -30, 20, -10]], [0.9, 0.8], [0, 1], {0: "a", 1: "b"}, (40, 50))
    assert np.array_equal(plot(away, img), img), "boxes wholly outside the picture get no label either"
    far = ms.Detections([[0, 0, 1, 1]], [0.9], [0], {}, (40, 50), xywhr=[[25, 20, 1e30, 10, 0.5]])
    assert np.array_equal(plot(far, img), img), "a rotated box with absurd corners is skipped, not bent"


def test_threads_draw_the_same_picture(detections, bus):
    want = plot(detections, bus)
    outs: list = [None] * 4

    def work(k: int) -> None:
        outs[k] = plot(detections, bus)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(o, want) for o in outs)
