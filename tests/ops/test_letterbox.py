"""modelserve.ops.letterbox / letterbox_geometry / scale_boxes: exactness and validation.

Exactness is checked three ways: against SHA-256 digests of Ultralytics' real preprocess output
(tests/goldens/ops/letterbox.json, made by make_goldens.py), against OpenCV live (cv2 is a dev
dependency), and kernel against the NumPy reference on random inputs (hypothesis).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelserve import _backend, _letterbox, _numpy_ops, ops
from modelserve._errors import InvalidInputError

GOLDENS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "goldens", "ops")
needs_kernels = pytest.mark.skipif(_letterbox._k_letterbox is None, reason="Cython kernels not built")


def golden_image(h: int, w: int) -> np.ndarray:
    """Same images as make_goldens.letterbox_image."""
    return np.random.default_rng(h * 100003 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)


def cv2_pipeline(img: np.ndarray, shape, auto: bool = False, stride: int = 32, dtype=np.float32, pad=114):
    """Ultralytics' LetterBox + preprocess, written with cv2 and NumPy (no torch)."""
    cv2 = pytest.importorskip("cv2")
    h, w = img.shape[:2]
    r = min(shape[0] / h, shape[1] / w)
    new_unpad = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = shape[1] - new_unpad[0], shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    dw, dh = dw / 2, dh / 2
    if (w, h) != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad, pad, pad))
    chw = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))
    if dtype == np.uint8:
        return chw
    if dtype == np.float16:
        return (chw.astype(np.float64) / 255).astype(np.float16)
    return chw.astype(np.float32) / np.float32(255)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


# --- Ultralytics goldens ------------------------------------------------------------------------

with open(os.path.join(GOLDENS, "letterbox.json"), encoding="utf-8") as _fh:
    _LETTERBOX_GOLDENS = json.load(_fh)["cases"]


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_matches_ultralytics_goldens(backend, monkeypatch):
    if backend == "cython" and _letterbox._k_letterbox is None:
        pytest.skip("Cython kernels not built")
    if backend == "numpy":
        monkeypatch.setenv("MODELSERVE_KERNELS", "numpy")
        monkeypatch.setattr(_backend, "_warned_fallback", True)
    images: dict = {}
    for case in _LETTERBOX_GOLDENS:
        h, w = case["hw"]
        if backend == "numpy" and h * w > 1000 * 1000:
            continue  # the reference is slow on 4K; the kernel covers it
        img = images.setdefault((h, w), golden_image(h, w))
        dtype = np.float16 if case["dtype"] == "float16" else np.float32
        t, _ = ops.letterbox(img, tuple(case["new_shape"]), auto=case["auto"], dtype=dtype)
        assert list(t.shape) == case["shape"], case
        assert hashlib.sha256(t.tobytes()).hexdigest() == case["sha256"], case


# --- OpenCV, live -------------------------------------------------------------------------------

SIZES = [(480, 640), (720, 1280), (1080, 1920), (2160, 3840), (1, 1), (2, 3), (1, 3000), (3000, 1),
         (37, 101), (101, 37), (811, 1079), (321, 640), (640, 640), (5, 7)]


@needs_kernels
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("shape,auto", [((640, 640), False), ((640, 640), True), ((320, 320), False), ((1280, 1280), False)])
def test_matches_opencv_pipeline(hw, shape, auto):
    img = np.random.default_rng(hw[0] * 7 + hw[1]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    expected = cv2_pipeline(img, shape, auto)
    got, info = ops.letterbox(img, shape, auto=auto)
    assert same_bits(got, expected)
    assert info.output_hw == expected.shape[1:]


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float16, np.uint8])
def test_other_dtypes_match(dtype):
    img = np.random.default_rng(1).integers(0, 256, (719, 1283, 3), dtype=np.uint8)
    got, _ = ops.letterbox(img, 640, dtype=dtype)
    assert same_bits(got, cv2_pipeline(img, (640, 640), dtype=dtype))


@needs_kernels
def test_options_out_slot_rgb_pad():
    img = np.random.default_rng(2).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    batch = np.full((2, 3, 640, 640), -1.0, np.float32)
    t, info = ops.letterbox(img, 640, out=batch[1], pad_value=0)
    assert np.shares_memory(t, batch[1])
    assert (batch[0] == -1).all()
    assert same_bits(batch[1], cv2_pipeline(img, (640, 640), pad=0))
    bgr, _ = ops.letterbox(img, 640, bgr_to_rgb=False)
    rgb, _ = ops.letterbox(img, 640)
    assert same_bits(bgr, np.ascontiguousarray(rgb[::-1]))
    # a non-contiguous input view is accepted (copied), result identical
    big = np.zeros((300, 1000, 3), np.uint8)
    big[:, ::2] = img
    view = big[:, ::2]
    assert same_bits(ops.letterbox(view, 640)[0], rgb)


@needs_kernels
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 80), w=st.integers(1, 80),
    nh=st.integers(1, 120), nw=st.integers(1, 120),
    auto=st.booleans(), scaleup=st.booleans(), stride=st.sampled_from([1, 8, 32]),
    dtype=st.sampled_from([np.float32, np.float16, np.uint8]), rgb=st.booleans(),
    pad=st.integers(0, 255), seed=st.integers(0, 2**32 - 1),
)
def test_kernel_equals_reference(h, w, nh, nw, auto, scaleup, stride, dtype, rgb, pad, seed):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    got, info = ops.letterbox(img, (nh, nw), auto=auto, stride=stride, scaleup=scaleup, pad_value=pad,
                              bgr_to_rgb=rgb, dtype=dtype)
    ref = np.empty_like(got)
    _numpy_ops.letterbox_into(img, ref, info.resized_wh, info.pad_lt, pad, rgb)
    assert same_bits(got, ref)


@settings(max_examples=80, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), nh=st.integers(1, 700), nw=st.integers(1, 700))
def test_reference_resize_equals_opencv(h, w, nh, nw):
    cv2 = pytest.importorskip("cv2")
    img = np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    expected = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(_numpy_ops.resize_bilinear(img, nw, nh), expected)


def test_matches_ultralytics_live():
    pytest.importorskip("torch")
    augment = pytest.importorskip("ultralytics.data.augment")
    import torch

    for hw in [(1080, 1920), (33, 77), (810, 1080)]:
        img = golden_image(*hw)
        x = augment.LetterBox((640, 640), auto=False)(image=img)
        t = torch.from_numpy(x).unsqueeze(0).permute(0, 3, 1, 2).contiguous().flip(1).float().div_(255)
        assert same_bits(ops.letterbox(img)[0], t[0].numpy())


# --- geometry and scale_boxes ------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 5000), w=st.integers(1, 5000), nh=st.integers(1, 2000), nw=st.integers(1, 2000),
       auto=st.booleans(), scaleup=st.booleans(), stride=st.sampled_from([1, 16, 32, 64]))
def test_geometry_is_ultralytics(h, w, nh, nw, auto, scaleup, stride):
    # LetterBox.get_params, verbatim arithmetic
    r = min(nh / h, nw / w)
    if not scaleup:
        r = min(r, 1.0)
    new_unpad = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = nw - new_unpad[0], nh - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    dw, dh = dw / 2, dh / 2
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    info = ops.letterbox_geometry((h, w), (nh, nw), auto=auto, stride=stride, scaleup=scaleup)
    assert info.resized_wh == new_unpad
    assert info.pad_lt == (left, top)
    assert info.output_hw == (new_unpad[1] + top + bottom, new_unpad[0] + left + right)


def test_scale_boxes_round_trip():
    info = ops.letterbox_geometry((720, 1280), 640)
    boxes = np.array([[0, 140, 640, 500], [320, 320, 330, 330]], np.float32)
    out = ops.scale_boxes(boxes, info.output_hw, info.source_hw)
    assert np.allclose(out[0], [0, 0, 1280, 720])
    assert np.allclose(out[1], [640, 360, 660, 380])


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image,kwargs,match",
    [
        (np.zeros((10, 10), np.uint8), {}, r"\(H, W, 3\)"),
        (np.zeros((10, 10, 4), np.uint8), {}, r"\(H, W, 3\)"),
        (np.zeros((10, 10, 3), np.float32), {}, "uint8"),
        (np.zeros((0, 10, 3), np.uint8), {}, "non-zero"),
        ([[1, 2, 3]], {}, "numpy array"),
        (np.zeros((10, 10, 3), np.uint8), {"dtype": np.float64}, "float32, float16 or uint8"),
        (np.zeros((10, 10, 3), np.uint8), {"new_shape": (0, 10)}, "positive"),
        (np.zeros((10, 10, 3), np.uint8), {"new_shape": (1, 2, 3)}, "new_shape"),
        (np.zeros((10, 10, 3), np.uint8), {"pad_value": 300}, "pad_value"),
        (np.zeros((10, 10, 3), np.uint8), {"stride": 0}, "stride"),
        (np.zeros((10, 10, 3), np.uint8), {"out": np.zeros((3, 64, 64), np.float32)}, "shape"),
        (np.zeros((10, 10, 3), np.uint8), {"out": np.zeros((3, 640, 640), np.float64)}, "out must be"),
        (np.zeros((10, 10, 3), np.uint8), {"out": np.zeros((3, 640, 1280), np.float32)[:, :, ::2]}, "contiguous"),
    ],
)
def test_invalid_inputs_raise(image, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        ops.letterbox(image, **kwargs)


def test_scale_boxes_matches_ultralytics_live():
    torch = pytest.importorskip("torch")
    uops = pytest.importorskip("ultralytics.utils.ops")
    rng = np.random.default_rng(0)
    for _ in range(100):
        sh, sw = (int(v) for v in rng.integers(1, 3000, 2))
        th, tw = (int(v) for v in rng.choice([256, 320, 384, 640], 2))
        boxes = rng.uniform(-50, 700, (20, 4)).astype(np.float32)
        expected = uops.scale_boxes((th, tw), torch.from_numpy(boxes.copy()), (sh, sw)).numpy()
        assert np.array_equal(ops.scale_boxes(boxes, (th, tw), (sh, sw)), expected)


_SIMD_CHECK = """
import numpy as np
from modelserve import _numpy_ops, ops
assert ops.backend() == "cython"
rng = np.random.default_rng(3)
sizes = [(720, 1280), (1080, 810), (37, 101), (1, 1), (5, 3000), (333, 517), (100, 100), (61, 29)]
shapes = [(320, 320), (97, 211), (480, 640), (64, 1000), (40, 23)]
for i, (h, w) in enumerate(sizes):
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for shape in shapes:
        for dtype in (np.float32, np.float16, np.uint8):
            got, info = ops.letterbox(img, shape, auto=bool(i % 2), dtype=dtype)
            ref = np.empty_like(got)
            _numpy_ops.letterbox_into(img, ref, info.resized_wh, info.pad_lt, 114, True)
            assert got.tobytes() == ref.tobytes(), (h, w, shape, dtype)
print("ok")
"""


@needs_kernels
@pytest.mark.parametrize("level", ["sse2", "ssse3", "native"])
def test_every_simd_path_is_exact(level):
    """The kernel picks SSE2, SSSE3 or AVX2+F16C code at run time; MODELSERVE_SIMD caps it, so
    each path is checked here (in a subprocess: the choice is made once per process)."""
    import subprocess
    import sys

    env = dict(os.environ)
    env.pop("MODELSERVE_KERNELS", None)
    if level != "native":
        env["MODELSERVE_SIMD"] = level
    proc = subprocess.run([sys.executable, "-c", _SIMD_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@needs_kernels
def test_plan_checks_its_tables_and_buffers():
    """The kernel's plan refuses tap tables that would read outside the image, and buffers that
    do not match its geometry, with ValueError instead of touching memory."""
    taps = _letterbox._taps(30, 10, True) + _letterbox._taps(20, 8, False)
    plan = _letterbox._k_letterbox.Plan(20, 30, 16, 16, 10, 8, 3, 4, *taps, _letterbox._LUT32, _letterbox._LUT16)
    img = np.zeros((20, 30, 3), np.uint8)
    out = np.empty((1, 3, 16, 16), np.float32)
    assert plan.run(img, out, 0, 114, True) == 0
    ref, _ = ops.letterbox(img, (16, 16))
    # the placement is the plan's own (left 3, top 4), not letterbox's centring: compare one pixel
    assert out[0, 0, 4, 3] == ref[0, 4, 3] and out[0, 0, 0, 0] == np.float32(114) / np.float32(255)
    bad = [t.copy() for t in taps]
    bad[0][-1] = 3 * 30  # x offset one pixel past the row
    with pytest.raises(ValueError, match="tap tables"):
        _letterbox._k_letterbox.Plan(20, 30, 16, 16, 10, 8, 3, 4, *bad, _letterbox._LUT32, _letterbox._LUT16)
    bad = [t.copy() for t in taps]
    bad[4][0] = 20  # row past the image
    with pytest.raises(ValueError, match="tap tables"):
        _letterbox._k_letterbox.Plan(20, 30, 16, 16, 10, 8, 3, 4, *bad, _letterbox._LUT32, _letterbox._LUT16)
    with pytest.raises(ValueError, match="tap tables"):
        _letterbox._k_letterbox.Plan(20, 30, 16, 16, 10, 8, 3, 4, *(t[:3] for t in taps), _letterbox._LUT32, _letterbox._LUT16)
    with pytest.raises(ValueError, match="geometry"):
        _letterbox._k_letterbox.Plan(20, 30, 16, 16, 10, 8, 7, 4, *taps, _letterbox._LUT32, _letterbox._LUT16)  # 7 + 10 > 16
    with pytest.raises(ValueError, match="does not match"):
        plan.run(np.zeros((20, 31, 3), np.uint8), out, 0, 114, True)
    with pytest.raises(ValueError, match="does not match"):
        plan.run(img, np.empty((1, 3, 16, 16), np.float16), 0, 114, True)
    with pytest.raises((ValueError, BufferError)):
        plan.run(img, np.empty((3, 16, 32), np.float32)[:, :, ::2], 0, 114, True)  # not contiguous
    frozen = np.empty((3, 16, 16), np.float32)
    frozen.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):
        plan.run(img, frozen, 0, 114, True)
    with pytest.raises(ValueError, match="pad value"):
        plan.run(img, out, 0, 256, True)
