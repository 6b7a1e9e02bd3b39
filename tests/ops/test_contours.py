"""modelserve._contours: OpenCV's outer contours and Ultralytics' segmentation polygons, exactly.

* ``external_contours`` against ``cv2.findContours(mask, RETR_EXTERNAL, CHAIN_APPROX_SIMPLE)``
  (where cv2 is importable: it is in the dev extras) on hypothesis-generated masks (holes, blobs
  inside holes, diagonal-only connections, lines, single pixels, border-touching shapes, any
  layout), on real masks of a segmentation model and on large inputs; the kernel against the
  pure-Python fallback.
* ``mask_polygon`` against Ultralytics' ``ops.masks2segments`` and ``Results.masks.xy`` (live
  where ultralytics is importable) and against goldens (tests/goldens/ops/contours.npz, made by
  ``python tests/ops/test_contours.py --make-goldens`` in an env with ultralytics 8.4.190 and
  OpenCV) that run without either: seeded generated masks, and real masks of the seeded
  segmentation model (tests/goldens/tasks/seg.npz) stored as box crops, whose polygons must equal
  Ultralytics' polygons of the full masks once shifted by the crop's corner.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelserve import _backend, _contours, ops
from modelserve._errors import InvalidInputError

try:
    import cv2
except ImportError:  # cv2 is in the dev extras; without it only the goldens run
    cv2 = None

HERE = Path(__file__).resolve().parents[1]
GOLDENS = HERE / "goldens" / "ops" / "contours.npz"
SEG_GOLDENS = HERE / "goldens" / "tasks" / "seg.npz"
SEG_MODEL = HERE / "goldens" / "tasks" / "models" / "seg.onnx"
REAL_PHOTOS = ("bus.jpg", "zidane.jpg", "astronaut.png")
needs_cv2 = pytest.mark.skipif(cv2 is None, reason="opencv (cv2) is not installed")
needs_kernel = pytest.mark.skipif(_contours._k_contours is None, reason="contours kernel not built")

KINDS = ("rect", "ring", "nested", "disk", "line", "pixel", "checker", "diag", "noise")


# ----------------------------------------------------------------------------- helpers


def _paint(m: np.ndarray, kind: str, box: tuple[int, int, int, int], op: str, t: int, seed: int,
           density: float) -> np.ndarray:
    """``m`` with one shape drawn in the box ``(y0, x0, y1, x1)`` (which may stick out of the
    mask: border-touching shapes) with ``op`` (or, xor, clear)."""
    h, w = m.shape
    y0, x0, y1, x1 = box
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
    depth = np.minimum(np.minimum(yy - y0, y1 - 1 - yy), np.minimum(xx - x0, x1 - 1 - xx))
    if kind == "rect":
        s = inside
    elif kind == "ring":  # a blob with a hole
        s = inside & (depth < t)
    elif kind == "nested":  # rings inside the holes of rings: blobs inside holes
        s = inside & ((depth // t) % 2 == 0)
    elif kind == "disk":
        cy, cx, ry, rx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2, max((y1 - y0) / 2, 0.5), max((x1 - x0) / 2, 0.5)
        s = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    elif kind == "line":  # horizontal, vertical, diagonal or anti-diagonal
        s = inside & [yy == y0, xx == x0, yy - y0 == xx - x0, yy - y0 == x1 - 1 - xx][(t + seed) % 4]
    elif kind == "pixel":
        s = (yy == y0) & (xx == x0)
    elif kind == "checker":  # pixels connected only diagonally
        s = inside & ((yy + xx) % 2 == 0)
    elif kind == "diag":  # parallel diagonal strokes t apart
        s = inside & ((yy - xx) % (t + 1) == 0)
    else:
        s = inside & (np.random.default_rng(seed).random((h, w)) < density)
    if op == "or":
        return m | s
    if op == "xor":
        return m ^ s
    return m & ~s


@st.composite
def _masks(draw) -> np.ndarray:
    h, w = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    m = np.zeros((h, w), bool)
    if h and w:
        for _ in range(draw(st.integers(0, 5))):
            y0, x0 = draw(st.integers(-3, h)), draw(st.integers(-3, w))
            box = (y0, x0, draw(st.integers(y0, h + 3)), draw(st.integers(x0, w + 3)))
            m = _paint(m, draw(st.sampled_from(KINDS)), box, draw(st.sampled_from(("or", "or", "xor", "clear"))),
                       draw(st.integers(1, 3)), draw(st.integers(0, 2**16)), draw(st.floats(0, 1)))
    return m


def _layout(m: np.ndarray, how: str) -> np.ndarray:
    """The same foreground in another dtype or memory layout."""
    if how == "u8":
        return m.astype(np.uint8) * np.uint8(255)
    if how == "u8-values":
        return np.where(m, np.arange(m.size, dtype=np.int64).reshape(m.shape) % 254 + 1, 0).astype(np.uint8)
    if how == "strided":
        big = np.zeros((m.shape[0] * 2, m.shape[1] * 3), bool)
        big[::2, ::3] = m
        return big[::2, ::3]
    if how == "fortran":
        return np.asfortranarray(m)
    if how == "reversed":
        return np.ascontiguousarray(m[::-1, ::-1])[::-1, ::-1]
    return m


def _cv2(m: np.ndarray) -> list[np.ndarray]:
    """cv2's outer contours, reshaped to (k, 2)."""
    if m.size == 0:
        return []
    u8 = np.ascontiguousarray(np.asarray(m) != 0, np.uint8)
    return [c.reshape(-1, 2) for c in cv2.findContours(u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]]


def _assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    """Same contours, in the same order, each (k, 2) int32."""
    assert isinstance(got, list) and len(got) == len(want)
    assert [a.shape for a in got] == [b.shape for b in want]
    assert all(a.dtype == np.int32 for a in got)
    if got:
        np.testing.assert_array_equal(np.concatenate(got), np.concatenate(want))


def _numpy_backend(fn, *args):
    """fn(*args) with the pure-Python fallback."""
    old = os.environ.get(ops.KERNELS_ENV)
    os.environ[ops.KERNELS_ENV] = "numpy"
    try:
        if _backend._warned_fallback:
            return fn(*args)
        with pytest.warns(RuntimeWarning):
            return fn(*args)
    finally:
        if old is None:
            del os.environ[ops.KERNELS_ENV]
        else:
            os.environ[ops.KERNELS_ENV] = old


def _ultralytics():
    """Ultralytics' masks2segments, or None."""
    try:
        from ultralytics.utils import ops as uops
    except ImportError:
        return None
    return uops.masks2segments


def _seg_masks() -> dict[str, np.ndarray]:
    """Real masks: what Ultralytics' own predict gave for the seeded segmentation model."""
    out = {}
    with np.load(SEG_GOLDENS) as g:
        for name in REAL_PHOTOS:
            shape = tuple(int(v) for v in g[f"{name}:masks_shape"])
            out[name] = np.unpackbits(g[f"{name}:masks"])[: int(np.prod(shape))].reshape(shape).astype(bool)
    return out


def _crop(m: np.ndarray, margin: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The nonzero pixels' bounding box widened by ``margin`` (clipped to the mask): (crop, (x0, y0))."""
    r, c = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    y0, x0 = max(int(r[0]) - margin, 0), max(int(c[0]) - margin, 0)
    return m[y0:int(r[-1]) + 1 + margin, x0:int(c[-1]) + 1 + margin], (x0, y0)


# ----------------------------------------------------------------------------- goldens


def _corpus() -> list[tuple[np.ndarray, tuple[int, int], np.ndarray | None]]:
    """(mask, offset, full mask or None): seeded generated masks, fixed edge cases, real crops."""
    rng = np.random.default_rng(20250)
    cases: list[tuple[np.ndarray, tuple[int, int], np.ndarray | None]] = []
    fixed = [np.ones((1, 1), bool), np.ones((1, 9), bool), np.ones((9, 1), bool), np.ones((7, 5), bool),
             np.eye(6, dtype=bool), np.eye(6, dtype=bool)[::-1], np.zeros((4, 4), bool), np.zeros((0, 3), bool)]
    cases += [(m, (0, 0), None) for m in fixed]
    for k in range(300):
        big = k % 25 == 0
        h, w = (int(v) for v in rng.integers(1, 90 if big else 41, 2))
        m = np.zeros((h, w), bool)
        for _ in range(int(rng.integers(1, 6))):
            y0, x0 = int(rng.integers(-3, h + 1)), int(rng.integers(-3, w + 1))
            box = (y0, x0, int(rng.integers(y0, h + 4)), int(rng.integers(x0, w + 4)))
            m = _paint(m, KINDS[int(rng.integers(len(KINDS)))], box, ("or", "or", "xor", "clear")[int(rng.integers(4))],
                       int(rng.integers(1, 4)), int(rng.integers(2**16)), float(rng.random()))
        cases.append((m, (0, 0), None))
    for name, masks in _seg_masks().items():
        for i in range(0, len(masks), {"bus.jpg": 5, "zidane.jpg": 2}.get(name, 3)):
            if masks[i].any():
                crop, off = _crop(masks[i], i % 3)
                cases.append((crop, off, masks[i]))
    return cases


def make_goldens(path: Path = GOLDENS) -> None:
    import ultralytics

    masks2segments = _ultralytics()
    bits, ends, shapes, offsets, pts, lens, counts, poly, plens = [], [0], [], [], [], [], [], [], []
    for m, off, full in _corpus():
        src = m if full is None else full
        b = np.packbits(m)
        bits.append(b)
        ends.append(ends[-1] + len(b))
        shapes.append(m.shape)
        offsets.append(off)
        cs = _cv2(src)
        counts.append(len(cs))
        for c in cs:
            pts.append(c)
            lens.append(len(c))
        p = masks2segments(src[None].astype(np.uint8))[0] if src.size else np.zeros((0, 2), np.float32)
        poly.append(p)
        plens.append(len(p))
    np.savez_compressed(
        path, mask_bits=np.concatenate(bits), mask_ends=np.array(ends, np.int64), shapes=np.array(shapes, np.int64),
        offsets=np.array(offsets, np.int64), contour_pts=np.concatenate(pts).astype(np.int32),
        contour_lens=np.array(lens, np.int64), contour_counts=np.array(counts, np.int64),
        poly=np.concatenate(poly).astype(np.float32), poly_lens=np.array(plens, np.int64),
        versions=np.array([ultralytics.__version__, cv2.__version__]),
    )


def _golden_cases() -> list[dict]:
    if not GOLDENS.is_file():
        return []
    with np.load(GOLDENS) as z:
        d = {k: z[k] for k in z.files}
    cases, ci, pi, pp, cp = [], 0, 0, 0, 0
    for k, (h, w) in enumerate(d["shapes"].tolist()):
        m = np.unpackbits(d["mask_bits"][d["mask_ends"][k]:d["mask_ends"][k + 1]])[: h * w].reshape(h, w).astype(bool)
        cs = []
        for _ in range(int(d["contour_counts"][k])):
            n = int(d["contour_lens"][ci])
            cs.append(d["contour_pts"][cp:cp + n])
            ci, cp = ci + 1, cp + n
        n = int(d["poly_lens"][pi])
        cases.append({"mask": m, "offset": tuple(int(v) for v in d["offsets"][k]), "contours": cs,
                      "poly": d["poly"][pp:pp + n]})
        pi, pp = pi + 1, pp + n
    return cases


GOLDEN_CASES = _golden_cases()


def test_goldens_exist():
    assert len(GOLDEN_CASES) >= 350
    assert sum(c["offset"] != (0, 0) for c in GOLDEN_CASES) >= 40  # real crops
    assert sum(len(c["contours"]) > 1 for c in GOLDEN_CASES) >= 100  # merges


def test_goldens_kernel_and_fallback():
    """Every golden with the default backend, and with the pure-Python fallback (a subset of the
    large real crops, which the fallback traces slowly)."""
    for k, c in enumerate(GOLDEN_CASES):
        off = np.array(c["offset"], np.int32)
        want = [p - off for p in c["contours"]]
        _assert_same(_contours.external_contours(c["mask"]), want)
        got = _contours.mask_polygon(c["mask"], c["offset"])
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, c["poly"], err_msg=str(k))
        if c["offset"] == (0, 0) or k % 4 == 0:
            _assert_same(_numpy_backend(_contours.external_contours, c["mask"]), want)
            np.testing.assert_array_equal(_numpy_backend(_contours.mask_polygon, c["mask"], c["offset"]), c["poly"])


def test_live_goldens_still_match_installed_references():
    masks2segments = _ultralytics()
    if masks2segments is None or cv2 is None:
        pytest.skip("needs ultralytics and cv2")
    for c in GOLDEN_CASES[::7]:
        if c["offset"] == (0, 0) and c["mask"].size:
            _assert_same(_cv2(c["mask"]), c["contours"])
            np.testing.assert_array_equal(masks2segments(c["mask"][None].astype(np.uint8))[0], c["poly"])


# ----------------------------------------------------------------------------- against cv2 / Ultralytics


@needs_cv2
@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(m=_masks(), how=st.sampled_from(("bool", "u8", "u8-values", "strided", "fortran", "reversed")))
def test_random_masks_match_cv2_and_fallback(m, how):
    arr = _layout(m, how)
    want = _cv2(m)
    _assert_same(_contours.external_contours(arr), want)
    _assert_same(_numpy_backend(_contours.external_contours, arr), want)
    poly = _contours.mask_polygon(arr)
    np.testing.assert_array_equal(_numpy_backend(_contours.mask_polygon, arr), poly)
    masks2segments = _ultralytics()
    if masks2segments is not None:
        np.testing.assert_array_equal(poly, masks2segments(m[None].astype(np.uint8))[0])


@given(m=_masks(), dy=st.integers(0, 5), dx=st.integers(0, 5), pad=st.integers(0, 3))
@settings(max_examples=150, deadline=None, derandomize=True)
def test_crop_padded_by_zeros_gives_translated_contours(m, dy, dx, pad):
    """A mask that is zero outside a box has the contours and polygon of the box, shifted."""
    full = np.zeros((m.shape[0] + dy + pad, m.shape[1] + dx + pad), bool)
    full[dy:dy + m.shape[0], dx:dx + m.shape[1]] = m
    shift = np.array([dx, dy], np.int32)
    _assert_same(_contours.external_contours(full), [c + shift for c in _contours.external_contours(m)])
    np.testing.assert_array_equal(_contours.mask_polygon(m, (dx, dy)), _contours.mask_polygon(full))


@needs_cv2
def test_real_masks_match_cv2_crops_and_fallback():
    """Every mask Ultralytics gave for the seeded seg model on three photos (most have several
    contours): cv2's contours, and the same polygon from any zero-padded crop of the box."""
    for name, masks in _seg_masks().items():
        for i, m in enumerate(masks):
            _assert_same(_contours.external_contours(m), _cv2(m))
            if not m.any():
                continue
            poly = _contours.mask_polygon(m)
            for margin in (0, 2):
                crop, off = _crop(m, margin)
                np.testing.assert_array_equal(_contours.mask_polygon(crop, off), poly, err_msg=f"{name} {i}")
            if i < 6:
                np.testing.assert_array_equal(_numpy_backend(_contours.mask_polygon, m), poly)


def test_live_ultralytics_masks_xy_on_real_masks():
    """Ultralytics' own Results.masks.xy (masks2segments, then scale_coords) on the real masks."""
    pytest.importorskip("torch")
    if _ultralytics() is None:
        pytest.skip("ultralytics is not installed")
    import torch
    from ultralytics.engine.results import Masks

    for name, masks in _seg_masks().items():
        xy = Masks(torch.from_numpy(masks), masks.shape[1:]).xy
        assert len(xy) == len(masks)
        for m, want in zip(masks, xy):
            np.testing.assert_array_equal(_contours.mask_polygon(m), want, err_msg=name)


def test_predictor_mask_crops_give_the_full_masks_polygons(photo):
    """modelserve's own seg predictions: each detection's box crop gives its full mask's polygon
    (and the full mask cv2's contours)."""
    pytest.importorskip("onnxruntime")
    import modelserve as ms

    with ms.load(SEG_MODEL) as p:
        for name in ("bus.jpg", "zidane.jpg"):
            r = p.predict(str(photo(name)))
            assert len(r) > 5
            masks = r.masks
            for i in range(0, len(r), 4):
                crop, off = r.mask_crop(i)
                poly = _contours.mask_polygon(masks[i])
                np.testing.assert_array_equal(_contours.mask_polygon(crop, off), poly)
                if cv2 is not None:
                    _assert_same(_contours.external_contours(masks[i]), _cv2(masks[i]))


# ----------------------------------------------------------------------------- merging


def _ultralytics_merge(segs):
    from ultralytics.data.converter import merge_multi_segment

    return np.concatenate(merge_multi_segment([s.reshape(-1, 2) for s in segs]))


@pytest.mark.parametrize("seed", range(30))
def test_merge_multi_segment_matches_ultralytics(seed):
    pytest.importorskip("ultralytics")
    rng = np.random.default_rng(seed)
    segs = [rng.integers(0, [12, 30][seed % 2], (int(rng.integers(1, 9)), 2)).astype(np.int32)
            for _ in range(int(rng.integers(2, 7)))]
    want = _ultralytics_merge(segs)
    got = _contours.merge_multi_segment(segs)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_numpy_backend(_contours.merge_multi_segment, segs), want)


def test_merge_multi_segment_known_order():
    """Three segments: the middle one is walked backwards (its second joining point comes first)."""
    a = np.int32([[0, 0], [1, 0]])
    b = np.int32([[5, 0], [4, 0], [3, 0]])  # joins a at (3, 0) (index 2) and c at (5, 0) (index 0)
    c = np.int32([[7, 0], [8, 0]])
    got = _contours.merge_multi_segment([a, b, c]).tolist()
    assert got == [[1, 0], [0, 0], [1, 0],  # a as a ring from its joining point (1, 0)
                   [3, 0], [4, 0], [5, 0],  # b reversed, from (3, 0) to its join with c, (5, 0)
                   [7, 0], [8, 0], [7, 0],  # c as a ring from (7, 0)
                   [5, 0], [3, 0]]  # back: the rest of b's ring (3, 0) (4, 0) (5, 0) (3, 0) after 2 steps


@pytest.mark.parametrize("bad", [[], [np.int32([[0, 0]])], np.int32([[[0, 0]], [[1, 1]]]), "ab",
                                 [np.int32([[0, 0]]), np.int64([[1, 1]])], [np.int32([[0, 0]]), np.zeros((0, 2), np.int32)],
                                 [np.int32([[0, 0]]), np.int32([[1, 1, 1]])], [np.int32([[0, 0]]), [[1, 1]]]])
def test_merge_multi_segment_hostile_inputs(bad):
    with pytest.raises(InvalidInputError):
        _contours.merge_multi_segment(bad)


def test_min_index_ties_and_int32_wrap_both_backends():
    a = np.int32([[0, 0], [2, 0], [0, 2]])
    b = np.int32([[1, 0], [1, 1]])  # (0,0)-(1,0), (2,0)-(1,0), ... all tied at 1: first wins
    assert _contours._min_index(a, b) == (0, 0)
    assert _numpy_backend(_contours._min_index, a, b) == (0, 0)
    # dx = 49999: dx * dx wraps in int32 (NumPy's int32 arithmetic, as in Ultralytics) to a
    # negative number, so the far point wins
    far = np.int32([[0, 0], [50000, 0]])
    near = np.int32([[1, 0]])
    with np.errstate(over="ignore"):
        assert int((((far[:, None] - near[None]) ** 2).sum(-1)).argmin()) == 1
    assert _contours._min_index(far, near) == (1, 0)
    assert _numpy_backend(_contours._min_index, far, near) == (1, 0)


# ----------------------------------------------------------------------------- edge and hostile inputs


@pytest.mark.parametrize("shape", [(0, 0), (0, 7), (7, 0)])
def test_empty_masks(shape):
    for arr in (np.zeros(shape, bool), np.zeros(shape, np.uint8)):
        assert _contours.external_contours(arr) == []
        p = _contours.mask_polygon(arr, (3, 4))
        assert p.shape == (0, 2) and p.dtype == np.float32
        assert _numpy_backend(_contours.external_contours, arr) == []


def test_small_and_degenerate_masks():
    assert [c.tolist() for c in _contours.external_contours(np.ones((1, 1), bool))] == [[[0, 0]]]
    assert [c.tolist() for c in _contours.external_contours(np.ones((1, 5), bool))] == [[[0, 0], [4, 0]]]
    assert [c.tolist() for c in _contours.external_contours(np.ones((5, 1), bool))] == [[[0, 0], [0, 4]]]
    assert [c.tolist() for c in _contours.external_contours(np.ones((3, 4), bool))] == [[[0, 0], [0, 2], [3, 2], [3, 0]]]
    assert _contours.external_contours(np.zeros((3, 4), np.uint8)) == []
    m = np.zeros((5, 5), bool)
    m[0, 0] = m[4, 4] = m[0, 4] = True  # OpenCV lists the last found (lowest) first
    assert [c.tolist() for c in _contours.external_contours(m)] == [[[4, 4]], [[4, 0]], [[0, 0]]]
    ring = np.ones((7, 7), bool)
    ring[1:6, 1:6] = False
    ring[3, 3] = True  # a blob inside the hole: not an outer contour
    assert len(_contours.external_contours(ring)) == 1
    assert _contours.mask_polygon([[True, False], [False, True]]).tolist() == [[0.0, 0.0], [1.0, 1.0]]


@needs_cv2
@pytest.mark.parametrize("case", ["row", "column", "broadcast", "checker", "stripes", "readonly"])
def test_large_inputs_match_cv2(case):
    rng = np.random.default_rng(7)
    if case == "row":
        m = rng.random((1, 200_000)) < 0.5
    elif case == "column":
        m = rng.random((200_000, 1)) < 0.5
    elif case == "broadcast":  # zero strides
        m = np.broadcast_to(np.True_, (3000, 2500))
    elif case == "checker":  # one blob, connected only diagonally
        yy, xx = np.mgrid[0:1500, 0:1500]
        m = (yy + xx) % 2 == 0
    elif case == "stripes":
        m = np.zeros((1200, 1600), bool)
        m[:, ::3] = True
        m[::5] = False
    else:
        m = rng.random((600, 700)) < 0.45
        m.flags.writeable = False
    _assert_same(_contours.external_contours(m), _cv2(m))
    if case in ("row", "readonly"):
        _assert_same(_numpy_backend(_contours.external_contours, m), _cv2(m))


@pytest.mark.parametrize("bad", [
    np.zeros((3, 3, 1), bool), np.zeros(5, bool), np.zeros((), bool), np.zeros((2, 2), np.float32),
    np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int8), np.zeros((2, 2), complex), np.zeros((2, 2), object),
    np.array([["a", "b"]]), None, "mask", [[0.5, 1.0]], 3,
])
def test_hostile_masks_give_typed_errors(bad):
    with pytest.raises(InvalidInputError):
        _contours.external_contours(bad)
    with pytest.raises(InvalidInputError):
        _contours.mask_polygon(bad)


def test_sides_beyond_int32_points_are_refused():
    with pytest.raises(InvalidInputError, match="at most"):
        _contours.mask_polygon(np.broadcast_to(np.False_, (1, 2**31)))  # zero strides: no memory


@pytest.mark.parametrize("offset", [(1.0, 2), (True, 0), ("1", 2), (1, 2, 3), (1,), None, 5, (2**40, 0),
                                    np.array([0.5, 1])])
def test_hostile_offsets_give_typed_errors(offset):
    with pytest.raises(InvalidInputError):
        _contours.mask_polygon(np.ones((2, 2), bool), offset)


def test_offsets_accept_numpy_ints_and_lists():
    m = np.ones((2, 3), bool)
    want = _contours.mask_polygon(m) + np.float32([7, 9])
    for off in ((7, 9), [7, 9], (np.int64(7), np.uint8(9)), np.array([7, 9])):
        np.testing.assert_array_equal(_contours.mask_polygon(m, off), want)
    np.testing.assert_array_equal(_contours.mask_polygon(m, (-7, 0)), _contours.mask_polygon(m) - np.float32([7, 0]))


def test_inputs_are_not_modified():
    m = np.random.default_rng(1).random((30, 30)) < 0.5
    u8 = m.astype(np.uint8) * 3
    before, before8 = m.copy(), u8.copy()
    _contours.mask_polygon(m)
    _contours.external_contours(u8)
    _numpy_backend(_contours.external_contours, u8)
    np.testing.assert_array_equal(m, before)
    np.testing.assert_array_equal(u8, before8)


@needs_kernel
def test_releases_gil_threads_agree():
    masks = _seg_masks()["bus.jpg"][:40]
    want = [_contours.mask_polygon(m) for m in masks]
    got: list = [None] * 4

    def work(i):
        got[i] = [_contours.mask_polygon(m) for m in masks]

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g in got:
        for a, b in zip(g, want):
            np.testing.assert_array_equal(a, b)


if __name__ == "__main__":
    if "--make-goldens" in sys.argv:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        make_goldens()
        print("wrote", GOLDENS)
