"""modelserve._rotated: Ultralytics 8.4's rotated NMS (fast-NMS with probiou), exactly.

Goldens (tests/goldens/ops/nms_rotated.npz, made from Ultralytics 8.4.190 / torch 2.14 CPU by
``python tests/ops/test_nms_rotated.py --make-goldens`` in an env with ultralytics) pin the kept
indices, in order, of ``TorchNMS.fast_nms(..., iou_func=batch_probiou)`` and of the class-aware
``non_max_suppression(rotated=True, return_idxs=True)``, on clustered sets with tied scores,
rotated near-duplicates, degenerate (zero-size) boxes, NaN/inf rows and several thresholds. These
run without torch; live comparisons run where torch and ultralytics are installed.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from modelserve import _backend, _nms, _rotated, ops
from modelserve._errors import InvalidInputError

GOLDENS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "goldens", "ops", "nms_rotated.npz")
needs_kernels = pytest.mark.skipif(_rotated._k_obb is None or _nms._k_nms is None, reason="kernels not built")
THRESHOLDS = (0.05, 0.1, 0.3, 0.45, 0.5, 0.7, 0.9, 1.0, -0.1)


def _gen(rng: np.random.Generator, n: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xywhr float32, scores float32, classes int64) of one test set."""
    k = max(1, n // 8)
    cen = rng.uniform(0, 640, (k, 2))
    lab = rng.integers(0, k, n)
    xy = cen[lab] + rng.normal(0, 6, (n, 2))
    wh = rng.uniform(4, 90, (n, 2))
    r = rng.uniform(-np.pi / 2, np.pi, (n, 1))
    b = np.concatenate([xy, wh, r], 1).astype(np.float32)
    s = rng.random(n).astype(np.float32)
    cls = rng.integers(0, 4, n)
    if kind == "ties":
        s = (np.round(s * 10) / 10).astype(np.float32)
    elif kind == "alltied":
        s[:] = np.float32(0.5)
    elif kind == "neardup":  # rotated near-duplicates of a few boxes
        src = rng.integers(0, k, n)
        b = b[src].copy()
        b[:, :2] += rng.normal(0, 0.5, (n, 2)).astype(np.float32)
        b[:, 4] += rng.normal(0, 0.05, n).astype(np.float32)
        s = (np.round(s * 50) / 50).astype(np.float32)
    elif kind == "degenerate":
        m = rng.random(n) < 0.3
        b[m, 2] = 0
        b[rng.random(n) < 0.2, 3] = 0
        b[rng.random(n) < 0.1, 2:4] = 0
        b[rng.random(n) < 0.1, 4] = 0
        # a zero-width or zero-height box is axis-aligned here: rotated, its rank-1 covariance's
        # determinant is pure rounding noise of cos/sin, which torch computes with MKL (1 ulp apart)
        b[(b[:, 2] == 0) | (b[:, 3] == 0), 4] = 0
    elif kind == "hostile":
        b[rng.random(n) < 0.05, 0] = np.nan
        b[rng.random(n) < 0.05, 2] = np.inf
        b[rng.random(n) < 0.05, 4] = np.nan
        s[rng.random(n) < 0.05] = np.nan
        s[rng.random(n) < 0.05] = -0.0
        s[rng.random(n) < 0.05] = 0.0
    return b, s, cls


KINDS = ("plain", "ties", "alltied", "neardup", "degenerate", "hostile")


def _cases(seed: int = 20240):
    rng = np.random.default_rng(seed)
    out = []
    for kind in KINDS:
        for n in (0, 1, 2, 7, 40, 150, 400):
            if n == 0 and kind != "plain":
                continue
            b, s, c = _gen(rng, n, kind)
            out.append((b, s, c, float(rng.choice(THRESHOLDS))))
    for kind in ("ties", "neardup"):
        b, s, c = _gen(rng, 1200, kind)
        out.append((b, s, c, 0.7))
    return out


def _torch_fast_nms(b, s, thr):
    import torch
    from ultralytics.utils.metrics import batch_probiou
    from ultralytics.utils.nms import TorchNMS

    return TorchNMS.fast_nms(torch.from_numpy(b), torch.from_numpy(s), thr, iou_func=batch_probiou).numpy()


def _ultralytics_batched(b, s, c, thr):
    """Ultralytics' non_max_suppression(rotated=True) on one image: (1, 4 + nc + 1, N) with each
    box's score in its class's channel only; conf_thres 0 keeps every box with score > 0."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    n, nc = b.shape[0], 4
    pred = np.zeros((1, 4 + nc + 1, n), np.float32)
    pred[0, :4] = b[:, :4].T
    pred[0, 4 + c, np.arange(n)] = s
    pred[0, 4 + nc] = b[:, 4]
    _, keepi = non_max_suppression(torch.from_numpy(pred), 0.0, thr, nc=nc, rotated=True, return_idxs=True,
                                   max_det=100000, max_nms=100000)
    return keepi[0].numpy().astype(np.int64).reshape(-1)


def _batched_inputs(b, s):
    """What non_max_suppression passes through: boxes with score > 0 (finite-score rows)."""
    with np.errstate(invalid="ignore"):
        return np.nonzero(s > 0)[0]


def make_goldens(path: str = GOLDENS) -> None:
    data = {}
    cases = _cases()
    for k, (b, s, c, thr) in enumerate(cases):
        data[f"c{k}_boxes"], data[f"c{k}_scores"], data[f"c{k}_classes"] = b, s, c
        data[f"c{k}_thr"] = np.float64(thr)
        data[f"c{k}_nms"] = _torch_fast_nms(b, s, thr).astype(np.int64)
        t = thr if 0 <= thr <= 1 else 0.5
        sel = _batched_inputs(b, s)
        data[f"c{k}_bthr"] = np.float64(t)
        data[f"c{k}_batched"] = _ultralytics_batched(b, s, c, t) if b.shape[0] and np.isfinite(b[sel]).all() \
            else np.full(1, -1, np.int64)
    data["count"] = np.int64(len(cases))
    np.savez_compressed(path, **data)


def _load():
    with np.load(GOLDENS) as z:
        d = {k: z[k] for k in z.files}
    names = ("boxes", "scores", "classes", "thr", "nms", "bthr", "batched")
    return [{nm: d[f"c{k}_{nm}"] for nm in names} for k in range(int(d["count"]))]


CASES = _load() if os.path.exists(GOLDENS) else []


def _both(fn, *args):
    """fn(*args) with the kernel and with the NumPy fallback; asserts they agree; returns it."""
    got = fn(*args)
    old = os.environ.get(ops.KERNELS_ENV)
    os.environ[ops.KERNELS_ENV] = "numpy"
    try:
        with pytest.warns(RuntimeWarning) if not _backend._warned_fallback else _nullcontext():
            ref = fn(*args)
    finally:
        if old is None:
            del os.environ[ops.KERNELS_ENV]
        else:
            os.environ[ops.KERNELS_ENV] = old
    np.testing.assert_array_equal(got, ref)
    return got


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_goldens_exist():
    assert len(CASES) >= 30


@pytest.mark.parametrize("k", range(len(CASES)))
def test_nms_rotated_matches_ultralytics_goldens(k):
    c = CASES[k]
    got = _both(_rotated.nms_rotated, c["boxes"], c["scores"], float(c["thr"]))
    np.testing.assert_array_equal(got, c["nms"])
    assert got.dtype == np.int64


@pytest.mark.parametrize("k", range(len(CASES)))
def test_batched_matches_ultralytics_non_max_suppression_goldens(k):
    c = CASES[k]
    if c["batched"].size == 1 and c["batched"][0] == -1:
        pytest.skip("Ultralytics' pipeline not run on non-finite boxes")
    sel = _batched_inputs(c["boxes"], c["scores"])
    got = _both(_rotated.batched_nms_rotated, c["boxes"][sel], c["scores"][sel], c["classes"][sel], float(c["bthr"]))
    np.testing.assert_array_equal(sel[got], c["batched"])


def test_batched_equals_offset_boxes():
    rng = np.random.default_rng(3)
    b, s, c = _gen(rng, 300, "ties")
    off = c.astype(np.float32) * np.float32(7680)
    shifted = b.copy()
    shifted[:, 0] += off
    shifted[:, 1] += off
    np.testing.assert_array_equal(_rotated.batched_nms_rotated(b, s, c, 0.5), _rotated.nms_rotated(shifted, s, 0.5))
    # different classes never suppress each other: identical boxes of 4 classes all survive
    one = np.tile(np.float32([[100, 100, 50, 20, 0.3]]), (4, 1))
    assert sorted(_rotated.batched_nms_rotated(one, np.float32([0.9, 0.8, 0.7, 0.6]), np.arange(4), 0.1)) == [0, 1, 2, 3]
    assert list(_rotated.nms_rotated(one, np.float32([0.9, 0.8, 0.7, 0.6]), 0.1)) == [0]


@needs_kernels
@pytest.mark.parametrize("seed", range(40))
def test_kernel_equals_numpy_fallback_random(seed):
    rng = np.random.default_rng(1000 + seed)
    kind = KINDS[seed % len(KINDS)]
    b, s, c = _gen(rng, int(rng.integers(1, 500)), kind)
    thr = float(rng.choice(THRESHOLDS))
    _both(_rotated.nms_rotated, b, s, thr)
    _both(_rotated.batched_nms_rotated, b, s, c, thr)
    iou = _both(_rotated.probiou, b[:50], b[:70])
    assert iou.shape == (min(50, len(b)), min(70, len(b))) and iou.dtype == np.float32


def test_fast_nms_semantics_suppressed_box_still_suppresses():
    # A > B > C; A suppresses B, B suppresses C, A does not touch C: fast-NMS drops C too.
    b = np.float32([[0, 0, 20, 20, 0], [12, 0, 20, 20, 0], [24, 0, 20, 20, 0]])
    iou = _rotated.probiou(b, b)
    thr = float(iou[0, 2]) + 0.01
    assert iou[0, 1] > thr and iou[1, 2] > thr
    assert list(_rotated.nms_rotated(b, np.float32([0.9, 0.8, 0.7]), thr)) == [0]


def test_threshold_compared_in_float32():
    b = np.float32([[0, 0, 20, 20, 0], [3, 0, 20, 20, 0]])
    v = float(_rotated.probiou(b, b)[0, 1])
    s = np.float32([0.9, 0.8])
    assert list(_rotated.nms_rotated(b, s, v)) == [0, 1]  # iou == float32(thr): not greater
    assert list(_rotated.nms_rotated(b, s, np.nextafter(np.float32(v), np.float32(-1)))) == [0]
    assert list(_rotated.nms_rotated(b, s, -0.0)) == [0]
    assert list(_rotated.nms_rotated(b, s, -1e-9)) == []  # negative: the zeroed triangle suppresses all
    assert list(_rotated.nms_rotated(b, s, 10**400)) == [0, 1]


@pytest.mark.parametrize("fn", ["nms", "batched"])
def test_hostile_inputs_give_typed_errors(fn):
    def call(b, s, thr=0.5, c=None):
        if fn == "nms":
            return _rotated.nms_rotated(b, s, thr)
        return _rotated.batched_nms_rotated(b, s, np.zeros(len(s), np.int64) if c is None else c, thr)

    ok_b, ok_s = np.zeros((3, 5), np.float32), np.zeros(3, np.float32)
    for b, s in [(np.zeros((3, 4)), ok_s), (np.zeros(5), np.zeros(1)), (ok_b, np.zeros(2)), (ok_b, np.zeros((3, 1))),
                 (ok_b.astype(object), ok_s), (np.array([["a"] * 5] * 3), ok_s), (ok_b, ok_s.astype(complex)),
                 (np.zeros((3, 5, 1)), ok_s)]:
        with pytest.raises(InvalidInputError):
            call(b, s)
    for thr in (float("nan"), np.float32("nan"), "0.5", None, True, [0.5]):
        with pytest.raises(InvalidInputError):
            call(ok_b, ok_s, thr)
    if fn == "batched":
        for c in (np.zeros(3, np.float32), np.zeros(2, np.int64), np.zeros((3, 1), np.int64), None and 0):
            if c is None:
                continue
            with pytest.raises(InvalidInputError):
                call(ok_b, ok_s, 0.5, c)
    with pytest.raises(InvalidInputError):
        _rotated.probiou(np.zeros((2, 4)), np.zeros((2, 5)))
    with pytest.raises(InvalidInputError):
        _rotated.probiou(np.zeros((2, 5)), "x")


def test_edge_sizes_and_values_never_crash():
    for n in (0, 1, 2):
        b = np.zeros((n, 5), np.float32)
        k = _both(_rotated.nms_rotated, b, np.ones(n, np.float32), 0.5)
        assert k.dtype == np.int64 and len(k) == min(n, 1)
        assert _rotated.probiou(b, np.zeros((0, 5))).shape == (n, 0)
    bad = np.float32([[np.nan] * 5, [np.inf] * 5, [-np.inf, 0, np.inf, np.inf, np.inf], [0, 0, 0, 0, 0],
                      [1e38, 1e38, 1e38, 1e38, 1e38], [0, 0, 1e-30, 1e-30, 0], [5, 5, 10, 10, 0.5]])
    s = np.float32([np.nan, np.inf, -np.inf, 0, -0.0, 1, 0.5])
    k = _both(_rotated.nms_rotated, bad, s, 0.5)
    assert sorted(k.tolist()) == sorted(set(k.tolist())) and all(0 <= i < 7 for i in k)
    _both(_rotated.probiou, bad, bad)
    _both(_rotated.batched_nms_rotated, bad, s, np.array([0, 1, -5, 2**40, 3, 3, 3]), 0.5)
    big = np.random.default_rng(0).uniform(0, 1e4, (20000, 5)).astype(np.float32)  # large n, no n x n matrix
    k = _rotated.nms_rotated(big, np.ones(20000, np.float32), 0.5)
    assert 0 < len(k) <= 20000
    # integer and float64 inputs are converted
    np.testing.assert_array_equal(_rotated.nms_rotated(bad.astype(np.float64), s.astype(np.float64), 0.5), k[:0].tolist() or
                                  _rotated.nms_rotated(bad, s, 0.5))
    assert list(_rotated.nms_rotated(np.array([[1, 1, 4, 4, 0]]), np.array([3]), 1)) == [0]


def test_releases_gil_threads_agree():
    import threading

    rng = np.random.default_rng(5)
    b, s, _ = _gen(rng, 2000, "ties")
    want = _rotated.nms_rotated(b, s, 0.5)
    got = [None] * 4

    def work(i):
        got[i] = _rotated.nms_rotated(b, s, 0.5)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g in got:
        np.testing.assert_array_equal(g, want)


# ------------------------------------------------------------------ live comparisons (torch)


@pytest.mark.parametrize("seed", range(60))
def test_live_nms_matches_ultralytics(seed):
    pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    b, s, c = _gen(rng, int(rng.integers(1, 600)), kind)
    thr = float(rng.choice(THRESHOLDS))
    np.testing.assert_array_equal(_rotated.nms_rotated(b, s, thr), _torch_fast_nms(b, s, thr))
    if kind != "hostile":
        t = thr if 0 <= thr <= 1 else 0.5
        sel = _batched_inputs(b, s)
        got = _rotated.batched_nms_rotated(b[sel], s[sel], c[sel], t)
        np.testing.assert_array_equal(sel[got], _ultralytics_batched(b, s, c, t))


def test_live_goldens_still_match_installed_ultralytics():
    pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    for c in CASES[:20]:
        np.testing.assert_array_equal(_torch_fast_nms(c["boxes"], c["scores"], float(c["thr"])), c["nms"])


if __name__ == "__main__":
    if "--make-goldens" in sys.argv:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        make_goldens()
        print("wrote", GOLDENS)
