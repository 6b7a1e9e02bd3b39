"""modelserve.ops.yolo_postprocess: exactly what Ultralytics' non_max_suppression keeps.

Goldens (tests/goldens/ops/postprocess.npz, made by make_goldens.py with ultralytics 8.4 and
torchvision) cover 80/5/3/1 classes, ties, NaN/inf scores, agnostic NMS, a class filter,
max_det 0, max_nms truncation, empty outputs and a real YOLOv8n output (nudenet on a photo).
Hypothesis compares the kernel with the NumPy reference; a live test runs where Ultralytics is.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelserve import _backend, _letterbox, _nms, _numpy_ops, ops
from modelserve._errors import InvalidInputError

GOLDENS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "goldens", "ops")
needs_kernels = pytest.mark.skipif(_nms._k_nms is None, reason="Cython kernels not built")


def _load_cases():
    with np.load(os.path.join(GOLDENS, "postprocess.npz")) as z:
        data = {k: z[k] for k in z.files}
    cases = []
    for k in range(int(data["count"])):
        raw = data[f"p{k}_raw"]
        kwargs = json.loads(str(data[f"p{k}_kwargs"]))
        dets = [data[f"p{k}_det{b}"] for b in range(raw.shape[0])]
        cases.append((raw, kwargs, dets))
    return cases


CASES = _load_cases()


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@needs_kernels
@pytest.mark.parametrize("k", range(len(CASES)))
def test_kernel_matches_ultralytics_goldens(k):
    raw, kwargs, expected = CASES[k]
    got = ops.yolo_postprocess(raw, **kwargs)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert _bits_equal(g, e), (kwargs, g.shape, e.shape)


def test_reference_matches_ultralytics_goldens():
    for raw, kwargs, expected in CASES:
        n_cand = int((np.nan_to_num(raw[:, 4:].max(1), nan=-1) > kwargs["conf"]).sum())
        if n_cand > 3000:
            continue  # too slow for the O(n^2) reference; small cases cover its logic
        classes = None if kwargs["classes"] is None else np.asarray(kwargs["classes"])
        got = _numpy_ops.yolo_postprocess(raw, kwargs["conf"], kwargs["iou"], kwargs["max_det"], classes,
                                          kwargs["agnostic"], kwargs["max_nms"])
        for g, e in zip(got, expected):
            assert _bits_equal(g, e), kwargs


special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 0.25])


@st.composite
def raw_outputs(draw):
    batch = draw(st.integers(1, 2))
    nc = draw(st.integers(1, 4))
    n = draw(st.integers(0, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    raw = np.empty((batch, 4 + nc, n), np.float32)
    raw[:, 0:2] = rng.uniform(0, 100, (batch, 2, n))
    raw[:, 2:4] = rng.uniform(-5, 60, (batch, 2, n))
    levels = draw(st.integers(2, 30))  # few levels: many ties
    raw[:, 4:] = rng.choice(np.linspace(0, 1, levels), (batch, nc, n))
    for b, c, i, v in draw(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 99), st.integers(0, 999), special), max_size=6)):
        if n:
            raw[b % batch, c % (4 + nc), i % n] = v
    return raw


@needs_kernels
@settings(max_examples=150, deadline=None)
@given(
    raw=raw_outputs(),
    conf=st.sampled_from([0.0, 0.001, 0.25, 0.5, 0.1]),
    iou=st.sampled_from([0.0, 0.45, 0.7, 1.0]),
    max_det=st.integers(0, 12),
    agnostic=st.booleans(),
    classes=st.none() | st.lists(st.integers(-1, 5), max_size=3),
)
def test_kernel_equals_reference(raw, conf, iou, max_det, agnostic, classes):
    got = ops.yolo_postprocess(raw, conf=conf, iou=iou, max_det=max_det, agnostic=agnostic, classes=classes)
    cls = None if classes is None else np.asarray(classes, dtype=np.int64)
    ref = _numpy_ops.yolo_postprocess(raw, conf, iou, max_det, cls, agnostic, 30000)
    assert len(got) == len(ref) == raw.shape[0]
    for g, r in zip(got, ref):
        assert _bits_equal(g, r)


@settings(max_examples=100, deadline=None)
@given(
    raw=raw_outputs(),
    tensor_hw=st.sampled_from([(32, 32), (64, 96), (320, 256)]),
    source_hws=st.lists(st.tuples(st.integers(1, 400), st.integers(1, 400)), min_size=2, max_size=2),
    backend=st.sampled_from(["cython", "numpy"] if _nms._k_nms is not None else ["numpy"]),
)
def test_fused_scaling_equals_postprocess_then_scale_boxes(raw, tensor_hw, source_hws, backend):
    """The Predictor's fused path (_yolo_detections with scale rows) is bit-identical to
    yolo_postprocess followed by scale_boxes, NaN, inf and signed zeros included, on both backends,
    and hands back the arrays Detections holds (float32 xyxy and confidence, int64 class_id)."""
    scale = np.stack([_letterbox.scale_row(tensor_hw, hw) for hw in source_hws[: raw.shape[0]]])
    old = os.environ.get(ops.KERNELS_ENV)
    os.environ[ops.KERNELS_ENV] = backend
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            arrays = _nms.yolo_detections(raw, 0.1, 0.6, 20, None, False, 30000, scale, backend == "cython")
            plain = ops.yolo_postprocess(raw, conf=0.1, iou=0.6, max_det=20)
    finally:
        if old is None:
            del os.environ[ops.KERNELS_ENV]
        else:
            os.environ[ops.KERNELS_ENV] = old
    assert len(arrays) == len(plain) == raw.shape[0]
    for (xyxy, conf, cls), p, hw in zip(arrays, plain, source_hws):
        assert xyxy.dtype == np.float32 and conf.dtype == np.float32 and cls.dtype == np.int64
        assert xyxy.shape == (len(p), 4) and conf.shape == cls.shape == (len(p),)
        assert _bits_equal(xyxy, ops.scale_boxes(p[:, :4], tensor_hw, hw))
        assert _bits_equal(conf, p[:, 4].copy())
        assert cls.tolist() == p[:, 5].astype(np.int64).tolist()


@needs_kernels
@settings(max_examples=60, deadline=None)
@given(raw=raw_outputs(), agnostic=st.booleans())
def test_corners_first_path_is_the_same_on_both_backends(raw, agnostic):
    """Half-precision outputs reach NMS with their corners already computed (model_boxes): the
    kernel's xyxy mode equals the NumPy version's, rows and anchors, bit for bit."""
    corners, xyxy = _nms.model_boxes(raw.astype(np.float16))
    assert xyxy and corners.dtype == np.float32
    nc = raw.shape[1] - 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fast = _nms.yolo_select(corners, nc, 0.1, 0.6, 20, None, agnostic, 30000, True, True)
        slow = _nms.yolo_select(corners, nc, 0.1, 0.6, 20, None, agnostic, 30000, False, True)
    for b, ((d1, a1), (d2, a2)) in enumerate(zip(fast, slow)):
        assert _bits_equal(d1, d2) and a1.tolist() == a2.tolist()
        # the rows' boxes are the corner channels as they are (no second xywh2xyxy)
        assert _bits_equal(d1[:, :4], np.ascontiguousarray(corners[b, :4][:, a1].T))


@pytest.mark.skipif(_nms._k_nms is None, reason="Cython kernels not built")
def test_yolo_detections_kernel_rejects_inconsistent_shapes():
    raw = np.zeros((2, 6, 10), np.float32)
    no_scale = np.zeros((0, 12), np.float32)  # (0, 12): boxes stay in tensor pixels
    allowed = np.ones(2, np.uint8)
    with pytest.raises(ValueError, match="inconsistent"):
        _nms._k_nms.yolo_detections(raw, 0.25, 0.7, 5, allowed, False, 100, 7680.0, np.zeros((1, 12), np.float32))
    with pytest.raises(ValueError, match="inconsistent"):
        _nms._k_nms.yolo_detections(raw, 0.25, 0.7, 5, np.ones(1, np.uint8), False, 100, 7680.0, no_scale)
    assert [len(x) for x, _, _ in _nms._k_nms.yolo_detections(raw, 0.25, 0.7, 5, allowed, False, 100, 7680.0,
                                                            no_scale)] == [0, 0]


@needs_kernels
def test_shapes_and_edge_cases():
    raw = np.zeros((3, 6, 0), np.float32)
    out = ops.yolo_postprocess(raw)
    assert len(out) == 3 and all(o.shape == (0, 6) and o.dtype == np.float32 for o in out)
    raw = np.zeros((1, 5, 4), np.float32)
    raw[0, 4] = [0.9, 0.1, 0.8, 0.3]
    raw[0, 2:4] = 10
    raw[0, 0] = [0, 0, 100, 200]
    out = ops.yolo_postprocess(raw)[0]
    assert out[:, 4].tolist() == pytest.approx([0.9, 0.8, 0.3])  # box 2 has IoU 0 with box 0
    assert ops.yolo_postprocess(raw, max_det=0)[0].shape == (0, 6)
    assert ops.yolo_postprocess(raw.astype(np.float16))[0].shape == (3, 6)  # half inputs converted
    nan = raw.copy()
    nan[0, 4, 0] = np.nan
    assert ops.yolo_postprocess(nan)[0][:, 4].tolist() == pytest.approx([0.8, 0.3])


@pytest.mark.parametrize(
    "raw,kwargs,match",
    [
        (np.zeros((1, 4, 10), np.float32), {}, "nc >= 1"),
        (np.zeros((84, 10), np.float32), {}, r"\(B, 4\+nc, N\)"),
        (np.zeros((1, 84, 10), np.int32), {}, "float"),
        ([[1.0]], {}, "numpy array"),
        (np.zeros((1, 84, 10), np.float32), {"conf": float("nan")}, "conf"),
        (np.zeros((1, 84, 10), np.float32), {"iou": "x"}, "iou"),
        (np.zeros((1, 84, 10), np.float32), {"max_det": -1}, "max_det"),
        (np.zeros((1, 84, 10), np.float32), {"max_det": "many"}, "max_det"),
        (np.zeros((1, 84, 10), np.float32), {"max_nms": 2.5}, "max_nms"),
        (np.zeros((1, 84, 10), np.float32), {"classes": ["a"]}, "classes"),
    ],
)
def test_invalid_inputs(raw, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        ops.yolo_postprocess(raw, **kwargs)


def test_matches_ultralytics_live():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    nms_mod = pytest.importorskip("ultralytics.utils.nms")
    rng = np.random.default_rng(11)
    raw = np.zeros((2, 84, 8400), np.float32)
    raw[:, 0:2] = rng.uniform(0, 640, (2, 2, 8400))
    raw[:, 2:4] = rng.uniform(10, 200, (2, 2, 8400))
    raw[:, 4:] = np.round(rng.random((2, 80, 8400)) ** 6 * 40) / 40
    for conf in (0.25, 0.001):
        ref = nms_mod.non_max_suppression(torch.from_numpy(raw), conf, 0.7, max_det=300)
        got = ops.yolo_postprocess(raw, conf=conf, iou=0.7, max_det=300)
        for g, r in zip(got, ref):
            assert _bits_equal(g, r.numpy())


# --- backend selection -------------------------------------------------------------------------


def test_numpy_backend_forced_by_environment(monkeypatch):
    monkeypatch.setenv("MODELSERVE_KERNELS", "numpy")
    monkeypatch.setattr(_backend, "_warned_fallback", False)
    assert ops.backend() == "numpy"
    raw = CASES[3][0]
    with pytest.warns(RuntimeWarning, match="MODELSERVE_KERNELS=numpy"):
        ref = ops.yolo_postprocess(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only once per process
        ops.nms(np.zeros((1, 4)), np.ones(1), 0.5)
    for g, e in zip(ref, CASES[3][2]):
        assert _bits_equal(g, e)


def test_numpy_backend_when_not_built(monkeypatch):
    monkeypatch.delenv("MODELSERVE_KERNELS", raising=False)
    monkeypatch.setattr(_nms, "_k_nms", None)
    monkeypatch.setattr(_backend, "KERNELS_IMPORT_ERROR", "No module named 'modelserve._kernels._nms'")
    monkeypatch.setattr(_backend, "_warned_fallback", False)
    assert ops.backend() == "numpy"
    with pytest.warns(RuntimeWarning, match="build_ext --inplace"):
        ops.nms(np.zeros((1, 4)), np.ones(1), 0.5)


@needs_kernels
def test_cython_backend_by_default(monkeypatch):
    monkeypatch.delenv("MODELSERVE_KERNELS", raising=False)
    assert ops.backend() == "cython"
