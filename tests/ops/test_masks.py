"""modelserve._masks.process_masks vs Ultralytics' retina-mask path (ops.process_mask_native).

With torch (refenv): random coefficients/prototypes on realistic letterbox geometries, compared
with Ultralytics' own functions. Without torch: committed goldens made by Ultralytics 8.4.190
(regenerate with ``YOLO_OFFLINE=1 /work/refenv/bin/python tests/ops/test_masks.py --regen``).
"""

from __future__ import annotations

import os
import sys
import threading
import warnings

import numpy as np
import pytest

import modelserve as ms
from modelserve import _masks
from modelserve._masks import MaskCrops, process_masks

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "goldens", "ops", "masks.npz")

#: (proto_hw, orig_hw): 640/320/odd letterboxes, 4K, portrait, tiny, protos equal to the image
GEOMETRIES = [
    ((160, 160), (1080, 810)),
    ((160, 160), (810, 1080)),
    ((96, 160), (2160, 3840)),
    ((160, 160), (2160, 3840)),
    ((80, 80), (480, 640)),
    ((80, 80), (300, 200)),
    ((48, 64), (500, 333)),
    ((40, 60), (160, 240)),
    ((12, 20), (47, 80)),
    ((8, 8), (37, 51)),
    ((17, 23), (1, 1)),
    ((17, 23), (68, 92)),
    ((5, 7), (3, 1000)),
]

GOLDEN_GEOMETRIES = [
    ((16, 16), (96, 128)),
    ((16, 16), (128, 72)),
    ((12, 20), (47, 80)),
    ((8, 8), (37, 51)),
    ((17, 23), (1, 1)),
    ((10, 10), (40, 40)),
    ((9, 13), (50, 61)),
]


def _case(rng: np.random.Generator, proto_hw, orig_hw, n: int, c: int = 32):
    (mh, mw), (h, w) = proto_hw, orig_hw
    coeffs = rng.standard_normal((n, c)).astype(np.float32)
    protos = (rng.standard_normal((c, mh, mw)) * 0.3).astype(np.float32)
    x1 = rng.uniform(-0.1 * w, w, n)
    y1 = rng.uniform(-0.1 * h, h, n)
    bw = rng.uniform(0, 0.7 * w, n)
    bh = rng.uniform(0, 0.7 * h, n)
    boxes = np.stack([x1, y1, np.minimum(x1 + bw, w), np.minimum(y1 + bh, h)], 1).astype(np.float32)
    boxes[: n // 4] = np.round(boxes[: n // 4])  # integer edges: the crop_mask comparisons' boundary
    return coeffs, protos, boxes


def _ultralytics(coeffs, protos, boxes, orig_hw) -> np.ndarray:
    import torch
    from ultralytics.utils import ops as uops

    out = uops.process_mask_native(torch.from_numpy(protos.copy()), torch.from_numpy(coeffs.copy()),
                                   torch.from_numpy(boxes.copy()), orig_hw)
    return out.numpy().astype(bool)


def _run(coeffs, protos, boxes, orig_hw, backend: str) -> MaskCrops:
    old = os.environ.get("MODELSERVE_KERNELS")
    os.environ["MODELSERVE_KERNELS"] = backend
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return process_masks(coeffs, protos, boxes, (4 * protos.shape[1], 4 * protos.shape[2]), orig_hw)
    finally:
        if old is None:
            os.environ.pop("MODELSERVE_KERNELS", None)
        else:
            os.environ["MODELSERVE_KERNELS"] = old


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.count_nonzero(a | b)
    return 1.0 if u == 0 else np.count_nonzero(a & b) / u


BACKENDS = ["numpy"] + (["cython"] if _masks._k_masks is not None else [])


# --------------------------------------------------------------------------------------------- torch


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("proto_hw,orig_hw", GEOMETRIES)
def test_vs_ultralytics(proto_hw, orig_hw, backend):
    pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    rng = np.random.default_rng(hash((proto_hw, orig_hw)) % 2**32)
    coeffs, protos, boxes = _case(rng, proto_hw, orig_hw, 24)
    ref = _ultralytics(coeffs, protos, boxes, orig_hw)
    got = _run(coeffs, protos, boxes, orig_hw, backend)
    full = got.full()
    assert full.shape == ref.shape
    ious = [_iou(full[i], ref[i]) for i in range(len(ref))]
    same = sum(bool((full[i] == ref[i]).all()) for i in range(len(ref)))
    assert min(ious) >= 0.99
    assert same >= len(ref) - 2  # only logits within ulps of 0 (sgemm summation order) may differ
    np.testing.assert_array_equal(got.nonempty(), ref.any(axis=(1, 2)))


def test_predictor_semantics_vs_ultralytics():
    """SegmentationPredictor: boxes scaled to the image, masks, then empty masks dropped."""
    torch = pytest.importorskip("torch")
    from ultralytics.utils import ops as uops

    rng = np.random.default_rng(7)
    (mh, mw), (h, w) = (160, 160), (1080, 810)
    coeffs, protos, _ = _case(rng, (mh, mw), (h, w), 40)
    tb = rng.uniform(0, 640, (40, 4)).astype(np.float32)
    tb[:, 2:] = tb[:, :2] + rng.uniform(0, 200, (40, 2)).astype(np.float32)
    tb[:5, 2:] = tb[:5, :2]  # zero-area boxes: their mask is empty, the detection dropped
    boxes = uops.scale_boxes((640, 640), torch.from_numpy(tb.copy()), (h, w)).numpy()
    ref = _ultralytics(coeffs, protos, boxes, (h, w))
    keep_ref = ref.reshape(len(ref), -1).max(1) > 0
    crops = process_masks(coeffs, protos, boxes, (640, 640), (h, w))
    np.testing.assert_array_equal(crops.nonempty(), keep_ref)
    kept = crops.select(crops.nonempty())
    assert len(kept) == int(keep_ref.sum())
    assert np.mean([np.array_equal(a, b) for a, b in zip(kept.full(), ref[keep_ref])]) >= 0.95


# --------------------------------------------------------------------------------------------- goldens


def _regen() -> None:
    rng = np.random.default_rng(2024)
    data = {}
    for k, (proto_hw, orig_hw) in enumerate(GOLDEN_GEOMETRIES):
        coeffs, protos, boxes = _case(rng, proto_hw, orig_hw, 8, c=8)
        boxes[0] = [np.nan, 1, 5, 5]
        boxes[1] = [orig_hw[1] + 3, -5, orig_hw[1] + 9, orig_hw[0] + 2]  # outside the image
        boxes[2] = [-np.inf, -np.inf, np.inf, np.inf]
        ref = _ultralytics(coeffs, protos, boxes, orig_hw)
        data.update({f"{k}_coeffs": coeffs, f"{k}_protos": protos, f"{k}_boxes": boxes,
                     f"{k}_orig_hw": np.array(orig_hw), f"{k}_masks": np.packbits(ref, axis=-1),
                     f"{k}_width": np.array(orig_hw[1])})
    import ultralytics

    data["version"] = np.array(ultralytics.__version__)
    np.savez_compressed(GOLDEN, **data)


def _goldens():
    z = np.load(GOLDEN)
    k = 0
    while f"{k}_coeffs" in z:
        h, w = (int(v) for v in z[f"{k}_orig_hw"])
        masks = np.unpackbits(z[f"{k}_masks"], axis=-1, count=w).astype(bool)
        yield k, z[f"{k}_coeffs"], z[f"{k}_protos"], z[f"{k}_boxes"], (h, w), masks
        k += 1


def test_goldens_cover_all_geometries():
    assert str(np.load(GOLDEN)["version"]) == "8.4.190"
    assert len(list(_goldens())) == len(GOLDEN_GEOMETRIES)


@pytest.mark.parametrize("backend", BACKENDS)
def test_goldens(backend):
    for k, coeffs, protos, boxes, hw, ref in _goldens():
        got = _run(coeffs, protos, boxes, hw, backend).full()
        ious = [_iou(got[i], ref[i]) for i in range(len(ref))]
        same = sum(bool(np.array_equal(got[i], ref[i])) for i in range(len(ref)))
        assert min(ious) >= 0.99, (k, ious)
        assert same >= len(ref) - 1, k


# --------------------------------------------------------------------------------------------- backends


@pytest.mark.skipif(_masks._k_masks is None, reason="kernels not built")
@pytest.mark.parametrize("proto_hw,orig_hw", GEOMETRIES)
def test_kernel_equals_numpy(proto_hw, orig_hw):
    rng = np.random.default_rng(11)
    coeffs, protos, boxes = _case(rng, proto_hw, orig_hw, 16)
    a = _run(coeffs, protos, boxes, orig_hw, "numpy")
    b = _run(coeffs, protos, boxes, orig_hw, "cython")
    np.testing.assert_array_equal(a.offsets, b.offsets)
    for (ca, _), (cb, _) in zip(a, b):
        np.testing.assert_array_equal(ca, cb)


@pytest.mark.skipif(_masks._k_masks is None, reason="kernels not built")
def test_kernel_threads_agree():
    rng = np.random.default_rng(3)
    coeffs, protos, boxes = _case(rng, (160, 160), (1080, 810), 40)
    want = _run(coeffs, protos, boxes, (1080, 810), "cython").full()
    errors = []

    def work():
        for _ in range(3):
            got = process_masks(coeffs, protos, boxes, (640, 640), (1080, 810)).full()
            if not np.array_equal(got, want):
                errors.append("mismatch")

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


# --------------------------------------------------------------------------------------------- API


def test_crops_are_box_sized_and_api():
    rng = np.random.default_rng(5)
    coeffs, protos, _ = _case(rng, (160, 160), (2160, 3840), 3)
    boxes = np.array([[10.2, 20.0, 100.0, 50.5], [0, 0, 0, 0], [3830.5, 2150, 4000, 3000]], np.float32)
    m = process_masks(coeffs, protos, boxes, (640, 640), (2160, 3840))
    assert len(m) == 3 and m.orig_hw == (2160, 3840)
    crop, off = m[0]
    assert off == (11, 20) and crop.shape == (31, 89)  # columns 11..99, rows 20..50
    assert m[1][0].size == 0
    crop2, off2 = m[2]
    assert off2 == (3831, 2150) and crop2.shape == (10, 9)
    full = m.full()
    assert full.shape == (3, 2160, 3840) and full.dtype == bool
    np.testing.assert_array_equal(m.area(), full.reshape(3, -1).sum(1))
    np.testing.assert_array_equal(m.nonempty(), full.reshape(3, -1).any(1))
    sel = m.select([2, 0])
    np.testing.assert_array_equal(sel.full(), full[[2, 0]])
    np.testing.assert_array_equal(m[::2].full(), full[::2])
    np.testing.assert_array_equal(m.select(np.array([True, False, True])).full(), full[[0, 2]])
    np.testing.assert_array_equal(m.select([-1]).full(), full[[2]])
    np.testing.assert_array_equal(m.mask(0), full[0])
    assert len(m.select([])) == 0 and m.select([]).full().shape == (0, 2160, 3840)
    with pytest.raises(AttributeError):
        m.orig_hw = (1, 1)  # type: ignore[misc]
    with pytest.raises(ValueError):
        crop[0, 0] = True
    with pytest.raises(IndexError):
        m[3]
    with pytest.raises(IndexError):
        m.select([5])
    with pytest.raises(ms.InvalidInputError):
        m.select(np.array([True]))


def test_inputs_not_modified():
    rng = np.random.default_rng(9)
    coeffs, protos, boxes = _case(rng, (80, 80), (480, 640), 6)
    copies = [a.copy() for a in (coeffs, protos, boxes)]
    process_masks(coeffs, protos, boxes, (320, 320), (480, 640))
    for a, b in zip((coeffs, protos, boxes), copies):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------- hostile


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_boxes(backend):
    rng = np.random.default_rng(1)
    coeffs, protos, _ = _case(rng, (17, 23), (1, 1), 7)
    boxes = np.array([[np.nan] * 4, [-1e30, -1e30, 1e30, 1e30], [np.inf, np.inf, -np.inf, -np.inf],
                      [5, 5, 2, 2], [0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5], [-np.inf, -np.inf, np.inf, np.inf]],
                     np.float32)
    m = _run(coeffs, protos, boxes, (1, 1), backend)
    full = m.full()
    assert full.shape == (7, 1, 1)
    assert not full[[0, 2, 3, 5]].any()
    for hw in [(1, 1), (1, 500), (700, 1), (3, 3)]:
        mm = _run(coeffs, protos, boxes, hw, backend)
        assert mm.full().shape == (7, *hw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_and_odd(backend):
    rng = np.random.default_rng(2)
    m = _run(np.zeros((0, 32), np.float32), np.zeros((32, 7, 9), np.float32), np.zeros((0, 4), np.float32),
             (10, 10), backend)
    assert len(m) == 0 and m.full().shape == (0, 10, 10) and m.nonempty().shape == (0,)
    for mh, mw in [(1, 1), (1, 7), (3, 1), (13, 7)]:
        coeffs, protos, boxes = _case(rng, (mh, mw), (31, 17), 5, c=3)
        assert _run(coeffs, protos, boxes, (31, 17), backend).full().shape == (5, 31, 17)
    nanp = np.full((4, 6, 6), np.nan, np.float32)
    m = _run(np.ones((2, 4), np.float32), nanp, np.array([[0, 0, 24, 24]] * 2, np.float32), (24, 24), backend)
    assert not m.full().any()


@pytest.mark.parametrize(
    "coeffs,protos,boxes,tensor_hw,orig_hw",
    [
        (np.zeros((2, 32), np.float64), np.zeros((32, 8, 8), np.float32), np.zeros((2, 4), np.float32), (32, 32), (9, 9)),
        (np.zeros((2, 32), np.float32), np.zeros((32, 8, 8), np.float16), np.zeros((2, 4), np.float32), (32, 32), (9, 9)),
        (np.zeros((2, 32), np.float32), np.zeros((32, 8, 8), np.float32), np.zeros((2, 4), np.int64), (32, 32), (9, 9)),
        (np.zeros((2, 31), np.float32), np.zeros((32, 8, 8), np.float32), np.zeros((2, 4), np.float32), (32, 32), (9, 9)),
        (np.zeros((2, 32), np.float32), np.zeros((32, 8, 8), np.float32), np.zeros((3, 4), np.float32), (32, 32), (9, 9)),
        (np.zeros((2, 32), np.float32), np.zeros((32, 8, 8), np.float32), np.zeros((2, 5), np.float32), (32, 32), (9, 9)),
        (np.zeros((2, 32), np.float32), np.zeros((8, 8), np.float32), np.zeros((2, 4), np.float32), (32, 32), (9, 9)),
        (np.zeros(32, np.float32), np.zeros((32, 8, 8), np.float32), np.zeros((1, 4), np.float32), (32, 32), (9, 9)),
        (np.zeros((2, 32), np.float32), np.zeros((32, 8, 8), np.float32), np.zeros((2, 4), np.float32), (64, 64), (9, 9)),
        (np.zeros((2, 32), np.float32), np.zeros((32, 8, 8), np.float32), np.zeros((2, 4), np.float32), (32, 32), (0, 9)),
        (np.zeros((2, 32), np.float32), np.zeros((32, 8, 8), np.float32), np.zeros((2, 4), np.float32), (32, 32), (9.0, 9)),
        (np.zeros((2, 0), np.float32), np.zeros((0, 8, 8), np.float32), np.zeros((2, 4), np.float32), (32, 32), (9, 9)),
        (np.zeros((2, 32), np.float32), np.zeros((32, 0, 8), np.float32), np.zeros((2, 4), np.float32), (0, 32), (9, 9)),
        ([[0.0] * 32], np.zeros((32, 8, 8), np.float32), np.zeros((1, 4), np.float32), (32, 32), (9, 9)),
    ],
)
def test_invalid_inputs(coeffs, protos, boxes, tensor_hw, orig_hw):
    with pytest.raises(ms.InvalidInputError):
        process_masks(coeffs, protos, boxes, tensor_hw, orig_hw)


def test_non_contiguous_inputs():
    rng = np.random.default_rng(4)
    coeffs, protos, boxes = _case(rng, (40, 60), (160, 240), 6)
    a = process_masks(coeffs, protos, boxes, (160, 240), (160, 240)).full()
    b = process_masks(np.asfortranarray(coeffs), protos[:, ::-1, :][:, ::-1, :], boxes[::-1][::-1], (160, 240),
                      (160, 240)).full()
    np.testing.assert_array_equal(a, b)


if __name__ == "__main__" and "--regen" in sys.argv:
    _regen()
    print("wrote", GOLDEN)
