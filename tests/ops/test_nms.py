"""modelserve.ops.nms / batched_nms: torchvision's exact semantics.

Goldens (tests/goldens/ops/nms.npz, made by make_goldens.py with torchvision 0.29) pin what
torchvision keeps, in order, including ties, NaN/inf, negative thresholds, the float32 coordinate
trick (<= 1000 boxes) and the per-class path (> 1000 boxes). Hypothesis compares the kernel with
the NumPy reference; a live test runs where torchvision is installed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelserve import _nms, _numpy_ops, ops
from modelserve._errors import InvalidInputError

GOLDENS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "goldens", "ops")
needs_kernels = pytest.mark.skipif(_nms._k_nms is None, reason="Cython kernels not built")


def _load_cases():
    with np.load(os.path.join(GOLDENS, "nms.npz")) as z:
        data = {k: z[k] for k in z.files}
    return [
        {name: data[f"c{k}_{name}"] for name in ("boxes", "scores", "classes", "thr", "nms", "batched")}
        for k in range(int(data["count"]))
    ]


CASES = _load_cases()


@needs_kernels
@pytest.mark.parametrize("k", range(len(CASES)))
def test_kernel_matches_torchvision_goldens(k):
    c = CASES[k]
    thr = float(c["thr"])
    np.testing.assert_array_equal(ops.nms(c["boxes"], c["scores"], thr), c["nms"])
    np.testing.assert_array_equal(ops.batched_nms(c["boxes"], c["scores"], c["classes"], thr), c["batched"])


def test_reference_matches_torchvision_goldens():
    for c in CASES:
        if c["boxes"].shape[0] > 300:
            continue  # the O(n^2) reference is slow; small cases cover its logic
        thr = float(c["thr"])
        np.testing.assert_array_equal(_numpy_ops.nms(c["boxes"], c["scores"], thr), c["nms"])
        np.testing.assert_array_equal(_numpy_ops.batched_nms(c["boxes"], c["scores"], c["classes"], thr), c["batched"])


def test_reference_per_class_path_matches_torchvision_exactly():
    # Above 1000 boxes torchvision orders the kept boxes with an unstable sort; the reference
    # follows the same std::sort, so ties come out in torchvision's order too.
    big = [c for c in CASES if c["boxes"].shape[0] == 1001][:3]
    for c in big:
        got = _numpy_ops.batched_nms(c["boxes"], c["scores"], c["classes"], float(c["thr"]))
        np.testing.assert_array_equal(got, c["batched"])


floats = st.floats(-50, 150, width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0])


@st.composite
def box_sets(draw, max_n=40):
    n = draw(st.integers(0, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(-5, 60, (n, 2))  # some inverted boxes
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.choice(np.linspace(0, 1, draw(st.integers(2, 50))), n).astype(np.float32)
    specials = draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 4), floats), max_size=6))
    for i, col, v in specials:
        if n:
            if col == 4:
                scores[i % n] = v
            else:
                boxes[i % n, col] = v
    classes = rng.integers(draw(st.sampled_from([-3, 0])), draw(st.integers(1, 5)), n)
    return boxes, scores, classes


thresholds = st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0, -0.1, float("nan"), 0.45])


@needs_kernels
@settings(max_examples=150, deadline=None)
@given(data=box_sets(), thr=thresholds)
def test_kernel_equals_reference(data, thr):
    boxes, scores, classes = data
    np.testing.assert_array_equal(ops.nms(boxes, scores, thr), _numpy_ops.nms(boxes, scores, thr))
    np.testing.assert_array_equal(
        ops.batched_nms(boxes, scores, classes, thr), _numpy_ops.batched_nms(boxes, scores, classes, thr)
    )


@needs_kernels
def test_output_types_and_empty():
    keep = ops.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)
    assert keep.dtype == np.int64 and keep.shape == (0,)
    keep = ops.batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5)
    assert keep.dtype == np.int64 and keep.shape == (0,)
    # float64 / int inputs are converted, lists too
    keep = ops.nms([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], [0.9, 0.8, 0.7], 0.5)
    assert keep.tolist() == [0, 2]


@pytest.mark.parametrize(
    "args,match",
    [
        ((np.zeros((3, 5)), np.zeros(3)), r"\(N, 4\)"),
        ((np.zeros((3, 4)), np.zeros(2)), r"scores must have shape \(3,\)"),
        ((np.zeros((3, 4), dtype=object), np.zeros(3)), "numeric"),
    ],
)
def test_nms_invalid_inputs(args, match):
    with pytest.raises(InvalidInputError, match=match):
        ops.nms(*args, 0.5)


def test_batched_nms_invalid_class_ids():
    with pytest.raises(InvalidInputError, match="class_ids"):
        ops.batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(3, np.float32), 0.5)
    with pytest.raises(InvalidInputError, match="class_ids"):
        ops.batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(2, np.int64), 0.5)
    with pytest.raises(InvalidInputError, match="iou_threshold"):
        ops.nms(np.zeros((3, 4)), np.zeros(3), "high")


def test_matches_torchvision_live():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    rng = np.random.default_rng(5)
    for n in (0, 10, 500, 1000, 1001, 2500):
        c = rng.uniform(0, 640, (max(1, n // 8), 2))[rng.integers(0, max(1, n // 8), n)] + rng.normal(0, 5, (n, 2))
        wh = rng.uniform(10, 120, (n, 2))
        boxes = np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)
        scores = (np.round(rng.random(n) * 20) / 20).astype(np.float32)
        classes = rng.integers(0, 7, n)
        tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
        for thr in (0.3, 0.5, 0.7):
            assert ops.nms(boxes, scores, thr).tolist() == torchvision.ops.nms(tb, ts, thr).tolist()
            assert (ops.batched_nms(boxes, scores, classes, thr).tolist()
                    == torchvision.ops.batched_nms(tb, ts, torch.from_numpy(classes), thr).tolist())
