"""The NumPy reference breaks exactly tied scores like torch's unstable sort, i.e. like the kernels.

Where torch sorts unstably (Ultralytics' ``argsort(descending=True)[:max_nms]`` cut, and
``torchvision.ops.batched_nms``'s final ``scores[kept].sort(descending=True)`` above 1000 boxes),
torch and the kernels run libstdc++'s ``std::sort``; ``_numpy_ops.torch_sort_order`` emulates it.
Hypothesis compares the two backends of ``modelserve.ops`` bit for bit on heavily tied scores;
fixed cases pin permutations produced by ``std::sort`` itself (GCC 12) so the reference is checked
even where the kernels are not built.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelserve import _nms, _numpy_ops, ops

needs_kernels = pytest.mark.skipif(_nms._k_nms is None, reason="Cython kernels not built")

TIED = np.array([0.3, 0.5, 0.5, 0.9], np.float32)  # 0.5 twice: more ties


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _on_both_backends(fn):
    """``(fn() on the kernels, fn() on the NumPy reference)``, the backend chosen via the
    environment variable as a user would (the fallback's one-time RuntimeWarning silenced)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ops.KERNELS_ENV, raising=False)
        assert ops.backend() == "cython"
        kernel = fn()
        mp.setenv(ops.KERNELS_ENV, "numpy")
        assert ops.backend() == "numpy"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            reference = fn()
    return kernel, reference


@st.composite
def tied_raw_outputs(draw):
    """``[B, 4+nc, N]`` outputs whose scores come from a tiny set (plus some NaN), so that a small
    ``max_nms`` cuts through a run of tied candidates."""
    batch = draw(st.integers(1, 2))
    nc = draw(st.integers(1, 3))
    n = draw(st.integers(0, 40) | st.integers(40, 400))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    raw = np.empty((batch, 4 + nc, n), np.float32)
    raw[:, 0:2] = rng.uniform(0, 200, (batch, 2, n))
    raw[:, 2:4] = rng.uniform(1, 40, (batch, 2, n))
    values = TIED[: draw(st.integers(1, 4))]
    raw[:, 4:] = rng.choice(values, (batch, nc, n))
    nan = rng.random((batch, nc, n)) < draw(st.sampled_from([0.0, 0.02, 0.2]))
    raw[:, 4:][nan] = np.nan
    return raw


@needs_kernels
@settings(max_examples=200, deadline=None)
@given(
    raw=tied_raw_outputs(),
    max_nms=st.integers(0, 40),
    conf=st.sampled_from([0.0, 0.25, 0.4]),
    iou=st.sampled_from([0.0, 0.45, 0.7, 1.0]),
    max_det=st.sampled_from([0, 1, 5, 300]),
    agnostic=st.booleans(),
    classes=st.none() | st.lists(st.integers(0, 3), max_size=2),
)
def test_yolo_postprocess_max_nms_cut_through_ties(raw, max_nms, conf, iou, max_det, agnostic, classes):
    kernel, reference = _on_both_backends(
        lambda: ops.yolo_postprocess(
            raw, conf=conf, iou=iou, max_det=max_det, agnostic=agnostic, classes=classes, max_nms=max_nms
        )
    )
    assert len(kernel) == len(reference) == raw.shape[0]
    for k, r in zip(kernel, reference):
        assert _bits_equal(k, r)


@needs_kernels
@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1001, 1400),
    seed=st.integers(0, 2**32 - 1),
    levels=st.integers(1, 4),
    nan_rate=st.sampled_from([0.0, 0.05]),
    ncls=st.integers(1, 4),
    thr=st.sampled_from([0.3, 0.7, 1.0]),
)
def test_batched_nms_per_class_path_orders_ties_like_torch(n, seed, levels, nan_rate, ncls, thr):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1000, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 60, (n, 2))], 1).astype(np.float32)
    scores = rng.choice(TIED[:levels], n)
    scores[rng.random(n) < nan_rate] = np.nan
    classes = rng.integers(0, ncls, n)
    kernel, reference = _on_both_backends(lambda: ops.batched_nms(boxes, scores, classes, thr))
    assert kernel.dtype == reference.dtype == np.int64
    np.testing.assert_array_equal(kernel, reference)  # the same boxes, in the same order


@needs_kernels
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1001, 3000), seed=st.integers(0, 2**32 - 1), levels=st.integers(1, 6))
def test_batched_nms_nothing_suppressed_is_the_torch_sort_order(n, seed, levels):
    # Disjoint boxes: every box is kept and the result is the whole std::sort permutation.
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=np.float32) * 10
    boxes = np.stack([x, x, x + 5, x + 5], 1)
    scores = rng.choice(np.array([0.1, 0.5, 0.5, 0.9, np.nan, 0.0, -0.0], np.float32)[: levels + 1], n)
    classes = rng.integers(0, 3, n)
    kernel, reference = _on_both_backends(lambda: ops.batched_nms(boxes, scores, classes, 0.5))
    np.testing.assert_array_equal(kernel, reference)
    assert sorted(kernel.tolist()) == list(range(n))
    np.testing.assert_array_equal(_numpy_ops.torch_sort_order(scores), kernel)


def _regression_raw() -> np.ndarray:
    # 40 disjoint boxes, one class: 0.9 at every 7th anchor, 0.5 elsewhere; max_nms=10 keeps the six
    # 0.9s and four of the 34 tied 0.5s, the four that std::sort puts first.
    n = 40
    raw = np.zeros((1, 5, n), np.float32)
    raw[0, 0] = np.arange(n) * 100 + 50
    raw[0, 1] = 50
    raw[0, 2:4] = 10
    raw[0, 4] = 0.5
    raw[0, 4, ::7] = 0.9
    return raw


#: The anchors Ultralytics (torch's argsort, i.e. std::sort) keeps for ``_regression_raw()``, in
#: order. A stable sort would keep anchors 0, 7, 14, 21, 28, 35, 1, 2, 3, 4.
REGRESSION_ANCHORS = [21, 0, 35, 7, 14, 28, 30, 23, 24, 25]


def test_regression_reference_max_nms_cut_keeps_std_sort_choice():
    (det,) = _numpy_ops.yolo_postprocess(_regression_raw(), 0.25, 0.7, 300, None, False, 10)
    anchors = ((det[:, 0] + 5 - 50) / 100).astype(int).tolist()
    assert anchors == REGRESSION_ANCHORS
    assert det[:, 4].tolist() == [np.float32(0.9)] * 6 + [np.float32(0.5)] * 4


@needs_kernels
def test_regression_backends_agree_on_max_nms_cut():
    raw = _regression_raw()
    kernel, reference = _on_both_backends(lambda: ops.yolo_postprocess(raw, max_nms=10))
    assert _bits_equal(kernel[0], reference[0])
    assert ((kernel[0][:, 0] + 5 - 50) / 100).astype(int).tolist() == REGRESSION_ANCHORS


def _digits(text: str) -> list[float]:
    return [int(c) / 10 for c in text]


#: (scores, the permutation ``std::sort`` leaves them in with torch's comparator), computed with a
#: C++ program calling GCC 12's libstdc++ ``std::sort`` on ``{float v; int64_t i;}`` pairs.
STD_SORT_CASES = [
    # 17 equal: one partition step (17 > _S_threshold), then the final insertion sort
    ([0.5] * 17, [8, 16, 15, 14, 13, 12, 11, 10, 9, 0, 7, 6, 5, 4, 3, 2, 1]),
    # NaNs first and tied with each other, -0.0 tied with 0.0
    (
        [0.5, np.nan, 0.0, 0.5, -0.0, 0.9, np.nan, 0.5, 0.0, 0.9, -0.0, 0.5, np.nan, 0.3, 0.5, 0.0, 0.9, 0.3,
         -0.0, 0.5],
        [1, 6, 12, 16, 5, 9, 19, 0, 14, 11, 7, 3, 13, 17, 10, 8, 4, 15, 18, 2],
    ),
    (
        [0.5] * 40,
        [30, 21, 22, 23, 24, 25, 26, 27, 28, 29, 20, 31, 32, 33, 34, 35, 36, 37, 38, 39,
         10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 11, 12, 13, 14, 15, 16, 17, 18, 19],
    ),
    (
        _digits("933339953355555355335595555535999555559593399535"),
        [0, 22, 44, 43, 5, 6, 40, 38, 30, 31, 32, 35, 25, 26, 27, 29, 33, 34, 24, 36, 37, 39, 45, 47,
         21, 7, 10, 11, 12, 13, 14, 17, 20, 16, 23, 8, 1, 46, 2, 3, 4, 42, 41, 9, 19, 28, 18, 15],
    ),
]


@pytest.mark.parametrize("scores,expected", STD_SORT_CASES, ids=["17-equal", "nan-signed-zero", "40-equal", "48-tied"])
def test_torch_sort_order_is_std_sort(scores, expected):
    got = _numpy_ops.torch_sort_order(np.asarray(scores, np.float32))
    assert got.dtype == np.int64
    assert got.tolist() == expected


def test_torch_sort_order_without_ties_is_the_stable_order():
    rng = np.random.default_rng(0)
    scores = rng.permutation(5000).astype(np.float32) / 5000
    scores[[3, 17]] = np.nan, 1.0  # one NaN is not a tie
    np.testing.assert_array_equal(_numpy_ops.torch_sort_order(scores), _numpy_ops.sort_order(scores))
    for n in range(3):
        np.testing.assert_array_equal(_numpy_ops.torch_sort_order(np.full(n, 0.5, np.float32)), np.arange(n))


@needs_kernels
@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 3000), seed=st.integers(0, 2**32 - 1), levels=st.integers(1, 7))
def test_the_torch_order_kernel_is_the_emulation(n, seed, levels):
    """``_nms.torch_order`` (the kernel the YOLOv5 head sorts with) gives the emulated std::sort order."""

    rng = np.random.default_rng(seed)
    scores = rng.choice(np.array([0.1, 0.5, 0.9, np.nan, 0.0, -0.0, 0.3], np.float32)[:levels], n)
    np.testing.assert_array_equal(_nms.torch_order(scores, kernels=True), _numpy_ops.torch_sort_order(scores))
    np.testing.assert_array_equal(_nms.torch_order(scores, kernels=False), _numpy_ops.torch_sort_order(scores))
