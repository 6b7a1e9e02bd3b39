"""The Ultralytics views (``r.boxes``, ``r.obb``, ``r.masks``, ``r.keypoints``, ``c.probs``) against
Ultralytics' own values for every task model (the committed goldens: CI needs no torch), and what
they are as objects: read-only views, ndarrays that stay ndarrays, aligned after filtering."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import modelserve as ms

from ._goldens import HERE, MODELS, OPTION_CASE, assert_tree_close, cases, golden_result, masks, polygons, task_of

#: ONNX Runtime ran Ultralytics' goldens: the same engine gives the parity tests' bounds.
PX, SCORE, NORM = 0.01, 1e-4, 2e-5


@pytest.fixture(scope="module")
def predictors():
    opened: dict[str, ms.Predictor] = {}

    def get(model: str) -> ms.Predictor:
        if model not in opened:
            opened[model] = ms.load(HERE / "models" / f"{model}.onnx", engine="onnxruntime")
        return opened[model]

    yield get
    for p in opened.values():
        p.close()


def _check_probs(c, g, key: str) -> None:
    probs = c.probs
    assert isinstance(probs, np.ndarray) and probs.shape == g[f"{key}:probs"].shape
    np.testing.assert_allclose(probs.data, g[f"{key}:probs"], atol=1e-5)
    assert probs.top1 == int(g[f"{key}:top1"]) and probs.top5 == g[f"{key}:top5"].tolist()
    assert isinstance(probs.top1conf, np.float32) and probs.top5conf.dtype == np.float32
    np.testing.assert_allclose(probs.top1conf, g[f"{key}:top1conf"], atol=1e-5)
    np.testing.assert_allclose(probs.top5conf, g[f"{key}:top5conf"], atol=1e-5)


def _check_boxes(r, g, key: str, task: str) -> None:
    b = r.boxes
    n = len(g[f"{key}:cls"])
    assert len(b) == n and b.shape == (n, 6) and b.orig_shape == r.orig_shape and b.id is None and not b.is_track
    np.testing.assert_array_equal(b.cls, g[f"{key}:cls"].astype(np.float32))
    assert b.cls.dtype == np.float32 and b.conf.dtype == np.float32 and b.data.dtype == np.float32
    np.testing.assert_allclose(b.conf, g[f"{key}:conf"], atol=SCORE, err_msg=key)
    np.testing.assert_array_equal(b.data, np.concatenate([b.xyxy, b.conf[:, None], b.cls[:, None]], 1))
    if task == "obb":
        o = r.obb
        assert len(o) == n and o.shape == (n, 7) and o.id is None
        np.testing.assert_allclose(o.xywhr[:, :4], g[f"{key}:xywhr"][:, :4], atol=PX, err_msg=key)
        np.testing.assert_allclose(o.xywhr[:, 4], g[f"{key}:xywhr"][:, 4], atol=SCORE, err_msg=key)
        np.testing.assert_allclose(o.xyxyxyxy, g[f"{key}:corners"], atol=2 * PX, err_msg=key)
        np.testing.assert_allclose(o.xyxyxyxyn, g[f"{key}:corners_n"], atol=NORM, err_msg=key)
        np.testing.assert_allclose(o.xyxy, g[f"{key}:obb_xyxy"], atol=2 * PX, err_msg=key)
        np.testing.assert_array_equal(o.data, np.concatenate([o.xywhr, o.conf[:, None], o.cls[:, None]], 1))
        np.testing.assert_array_equal(b.xyxy, r.xyxy)  # boxes: the corners' bounds, as obb.xyxy
        return
    assert r.obb is None
    np.testing.assert_allclose(b.xyxy, g[f"{key}:xyxy"], atol=PX, err_msg=key)
    np.testing.assert_allclose(b.xywh, g[f"{key}:xywh"], atol=PX, err_msg=key)
    np.testing.assert_allclose(b.xyxyn, g[f"{key}:xyxyn"], atol=NORM, err_msg=key)
    np.testing.assert_allclose(b.xywhn, g[f"{key}:xywhn"], atol=NORM, err_msg=key)


def _check_task_arrays(r, g, key: str, task: str) -> None:
    if task == "pose":
        k, want = r.keypoints, g[f"{key}:keypoints"]
        assert isinstance(k, np.ndarray) and k.has_visible and k.shape == want.shape
        np.testing.assert_allclose(k.xy, want[..., :2], atol=PX, err_msg=key)
        np.testing.assert_allclose(k.conf, want[..., 2], atol=SCORE, err_msg=key)
        np.testing.assert_allclose(k.xyn, g[f"{key}:keypoints_xyn"], atol=NORM, err_msg=key)
        np.testing.assert_array_equal(k.data, r.keypoints)
    else:
        assert r.keypoints is None
    if task == "segment":
        m, want = r.masks, masks(g, key)
        assert m.shape == want.shape and m.data.dtype == bool and m.orig_shape == r.orig_shape
        want_xy, want_xyn = polygons(g, key), polygons(g, key, "polygons_n")
        assert len(m.xy) == len(m.xyn) == len(want_xy) == len(m), key
        for i in range(len(m)):
            union = (m[i] | want[i]).sum()
            assert union == 0 or (m[i] & want[i]).sum() / union >= 0.99, key
            if np.array_equal(m[i], want[i]):  # the same mask: the same polygon, bit for bit
                np.testing.assert_array_equal(m.xy[i], want_xy[i], err_msg=f"{key} {i}")
                np.testing.assert_array_equal(m.xyn[i], want_xyn[i], err_msg=f"{key} {i}")
    else:
        assert r.masks is None


@pytest.mark.parametrize("model", MODELS)
def test_views_equal_ultralytics(model, predictors, bgr):
    """Every view of every case, predicted here, against ``YOLO(onnx).predict`` on the same file."""
    task, g = task_of(model), np.load(HERE / f"{model}.npz")
    p = predictors(model)
    for key, photo, options in cases(model):
        r = p.predict(bgr(photo), **options)
        if task == "classify":
            _check_probs(r, g, key)
            continue
        if r.class_id.tolist() != g[f"{key}:cls"].tolist():
            pytest.fail(f"{model} {key}: other detections than Ultralytics' (see tests/tasks/test_parity.py)")
        _check_boxes(r, g, key, task)
        _check_task_arrays(r, g, key, task)


@pytest.mark.parametrize("model", MODELS)
def test_views_compute_what_ultralytics_computes(model, predictors, bgr):
    """From Ultralytics' own boxes, keypoints and masks, the derived values (centres, sizes,
    normalised coordinates, polygons) are Ultralytics' to the bit (corners within float32 cos/sin)."""
    task, g = task_of(model), np.load(HERE / f"{model}.npz")
    names = predictors(model).names
    for key, photo, _ in cases(model):
        r = golden_result(task, g, key, names, bgr(photo).shape[:2])
        if task == "classify":
            assert r.probs.top1 == int(g[f"{key}:top1"]) and r.probs.top5 == g[f"{key}:top5"].tolist()
            assert r.probs.top1conf == g[f"{key}:top1conf"]
            np.testing.assert_array_equal(r.probs.top5conf, g[f"{key}:top5conf"])
        elif task == "obb":
            np.testing.assert_allclose(r.obb.xyxyxyxyn, g[f"{key}:corners_n"], atol=1e-6, rtol=0)
            np.testing.assert_allclose(r.obb.xyxy, g[f"{key}:obb_xyxy"], atol=1e-3, rtol=0)
        else:
            for name in ("xywh", "xyxyn", "xywhn"):
                np.testing.assert_array_equal(getattr(r.boxes, name), g[f"{key}:{name}"], err_msg=f"{key} {name}")
        if task == "pose":
            np.testing.assert_array_equal(r.keypoints.xyn, g[f"{key}:keypoints_xyn"])
        if task == "segment":
            for got, want in zip(r.masks.xyn, polygons(g, key, "polygons_n"), strict=True):
                np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def results(predictors, bgr):
    """One bus.jpg result per task model (seg, pose, obb, cls)."""
    return {m: predictors(m).predict(bgr("bus.jpg")) for m in ("seg", "pose", "obb", "cls")}


def test_empty_results_have_empty_views(predictors, bgr):
    """chelsea.png gives these models nothing (as Ultralytics): every view is empty, shaped."""
    img = bgr("chelsea.png")
    h, w = img.shape[:2]
    seg, pose, obb = (predictors(m).predict(img) for m in ("seg", "pose", "obb"))
    for r in (seg, pose, obb, ms.Detections.empty({0: "a"}, (h, w))):
        b = r.boxes
        assert len(r) == len(b) == 0 and not b and list(b) == []
        assert b.xyxy.shape == b.xywh.shape == b.xyxyn.shape == b.xywhn.shape == (0, 4) and b.data.shape == (0, 6)
        assert r.summary() == [] and r.to_json(schema="ultralytics") == "[]"
        assert r.to_csv().splitlines()[0].startswith("name,class,confidence,box_x1") and len(r.to_csv().splitlines()) == 1
    assert seg.masks.shape == (0, h, w) and seg.masks.xy == [] and seg.masks.xyn == [] and not seg.masks
    assert pose.keypoints.xy.shape == (0, 17, 2) and pose.keypoints.conf.shape == (0, 17)
    assert obb.obb.xyxyxyxy.shape == (0, 4, 2) and obb.obb.xyxy.shape == (0, 4) and obb.obb.data.shape == (0, 7)
    e = ms.Detections.empty()
    assert e.masks is None and e.keypoints is None and e.obb is None


def test_filtering_keeps_the_views_aligned(results):
    seg, pose, obb = results["seg"], results["pose"], results["obb"]
    for r in (seg, pose, obb):
        keep = r.confidence > np.median(r.confidence)
        idx = np.flatnonzero(keep)
        sub = r[keep]
        assert 3 < len(sub) < len(r)
        np.testing.assert_array_equal(sub.boxes.data, r.boxes.data[keep])
        np.testing.assert_array_equal(r.boxes[keep].data, sub.boxes.data)
        np.testing.assert_array_equal(r.boxes[idx[::-1]].xyxy, r.xyxy[idx[::-1]])
        assert sub.summary() == [r.summary()[i] for i in idx]
    sub = seg[seg.confidence > np.median(seg.confidence)]
    idx = np.flatnonzero(seg.confidence > np.median(seg.confidence))
    for i, k in enumerate(idx):
        np.testing.assert_array_equal(sub.masks.xy[i], seg.masks.xy[k])
        np.testing.assert_array_equal(sub.masks.data[i], seg.masks.data[k])
    top = np.argsort(-pose.confidence)[:5]
    np.testing.assert_array_equal(pose[top].keypoints.xyn, pose.keypoints.xyn[top])
    np.testing.assert_array_equal(obb[2:5].obb.xyxyxyxy, obb.obb.xyxyxyxy[2:5])


def test_one_image_gives_its_detections_and_an_int_gives_one_detection(results):
    """``predict(image)`` is that image's Detections; ``r[i]`` one Detection row (with its task
    values); Ultralytics' ``results[0].boxes`` fails loudly instead of reading the first box."""
    seg, pose, obb = results["seg"], results["pose"], results["obb"]
    for r in (seg, pose, obb):
        d = r[0]
        assert isinstance(d, ms.Detection) and isinstance(r[-1], ms.Detection) and isinstance(r[np.int64(1)], ms.Detection)
        xyxy, conf, cls, name = d  # still the 4-tuple it was
        np.testing.assert_array_equal(xyxy, r.xyxy[0])
        assert (conf, cls, name) == (float(r.confidence[0]), int(r.class_id[0]), r.class_names[0])
        assert d.orig_shape == r.orig_shape and r[-1].confidence == float(r.confidence[-1])
        assert isinstance(r[0:1], ms.Detections) and isinstance(r[[0]], ms.Detections) and len(r[0:1]) == 1
        for attr in ("boxes", "masks", "keypoints", "probs", "obb", "names", "plot", "to_json"):
            with pytest.raises(AttributeError, match=rf"results\[0\]\.{attr}, use r\.{attr} on the Detections"):
                getattr(d, attr)
        with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
            d.nonsense  # noqa: B018
        with pytest.raises(ms.InvalidInputError, match="out of range"):
            r[len(r)]
        with pytest.raises(ms.InvalidInputError, match="bool"):
            r[True]
        assert [x.confidence for x in r] == [r[i].confidence for i in range(len(r))]
    with pytest.raises(AttributeError, match=r"own keypoints are \.kpts"):
        pose[0].keypoints  # noqa: B018
    np.testing.assert_array_equal(pose[3].kpts, pose.keypoints[3])
    np.testing.assert_array_equal(obb[3].xywhr, obb.xywhr[3])
    np.testing.assert_array_equal(obb[3].corners, obb.corners[3])
    np.testing.assert_array_equal(seg[3].mask, seg.masks[3])
    np.testing.assert_array_equal(seg[3].polygon, seg.masks.xy[3])
    assert seg[3].mask_crop[1] == seg.mask_crop(3)[1] and pose[0].xywhr is None and pose[0].mask is None
    assert obb[0].kpts is None and obb[0].polygon is None and seg[0].corners is None


def test_boxes_index_and_iterate_as_ultralytics(results):
    r = results["pose"]
    b = r.boxes
    one = b[0]
    assert isinstance(one, type(b)) and len(one) == 1 and one.xyxy.shape == (1, 4) and one.cls.shape == (1,)
    np.testing.assert_array_equal(one.xyxy[0], r.xyxy[0])
    rows = list(b)
    assert len(rows) == len(r) and all(len(x) == 1 for x in rows)
    np.testing.assert_array_equal(np.concatenate([x.data for x in rows]), b.data)
    assert [int(x.cls[0]) for x in rows] == r.class_id.tolist()
    np.testing.assert_array_equal(b[-2:].conf, r.confidence[-2:])
    for bad in (True, np.True_, (0, 1)):
        with pytest.raises(IndexError):
            b[bad]
    with pytest.raises(IndexError):
        b[len(r)]
    assert b.cpu() is b and b.numpy() is b and r.obb is None and results["obb"].obb[0].xywhr.shape == (1, 5)


def test_views_never_write_into_the_result(results):
    r = results["pose"]
    before = r.xyxy.copy()
    for arr in (r.boxes.xyxy, r.boxes.conf, r.keypoints.xy, r.keypoints.conf, r.keypoints.data,
                results["seg"].masks.data, results["cls"].probs.data, results["obb"].obb.xywhr):
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[...] = 0
    with pytest.raises(AttributeError, match="read-only"):
        r.boxes.conf = None
    computed = r.boxes.xywh
    computed += 1  # computed values are the caller's own
    np.testing.assert_array_equal(r.xyxy, before)


def test_result_arrays_are_still_plain_numpy(results):
    """``r.masks``, ``r.keypoints`` and ``c.probs`` are the arrays they always were: indexing,
    arithmetic and NumPy functions give plain ndarrays; only the result's own array has the views."""
    seg, pose, cls = results["seg"], results["pose"], results["cls"]
    m = seg.masks
    assert isinstance(m, np.ndarray) and m.dtype == bool and m.shape == (len(seg), *seg.orig_shape)
    for derived in (m[0], m[1:3], m[:, 0], m & m, np.logical_or(m, m), np.concatenate([m, m]), pose.keypoints * 2,
                    pose.keypoints[..., :2], cls.probs[:10], cls.probs - 1, np.sort(cls.probs)):
        assert type(derived) is np.ndarray
    assert type(m.sum()) is np.int64 and type(cls.probs.max()) is np.float32
    assert bool(m) and len(m) == len(seg) and bool(pose.keypoints) and bool(cls.probs)
    np.testing.assert_array_equal(m, seg.masks)
    with pytest.raises(AttributeError, match="copied from Detections.masks"):
        m.copy().xy  # noqa: B018
    assert m.cpu() is m and m.numpy() is m
    back = pickle.loads(pickle.dumps(m))
    assert type(back) is np.ndarray and np.array_equal(back, m)
    k = pickle.loads(pickle.dumps(pose.keypoints))
    np.testing.assert_array_equal(k.xyn, pose.keypoints.xyn)
    p = pickle.loads(pickle.dumps(cls.probs))
    assert p.top5 == cls.top5
    for r in (seg, pose, results["obb"]):
        again = pickle.loads(pickle.dumps(r))
        assert again.summary() == r.summary()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(seg)).masks.xy[0], seg.masks.xy[0])


def test_normalised_coordinates_need_the_image_size():
    d = ms.Detections([[1, 2, 3, 4]], [0.5], [0], {0: "a"}, keypoints=[[[1, 2, 0.5]]])
    np.testing.assert_array_equal(d.boxes.xywh, [[2, 3, 2, 2]])
    for read in (lambda: d.boxes.xyxyn, lambda: d.boxes.xywhn, lambda: d.keypoints.xyn,
                 lambda: d.summary(normalize=True)):
        with pytest.raises(ms.InvalidInputError, match="image size"):
            read()
    two_d = ms.Detections([[1, 2, 3, 4]], [0.5], [0], {0: "a"}, (10, 20), keypoints=[[[1, 2]]])
    assert two_d.keypoints.conf is None and not two_d.keypoints.has_visible
    np.testing.assert_allclose(two_d.keypoints.xyn, [[[0.05, 0.2]]])


def test_golden_key_for_the_option_case_exists():
    """The option case (max_det=5, agnostic) is in every detection model's goldens."""
    for model in MODELS:
        g = np.load(HERE / f"{model}.npz")
        if task_of(model) != "classify":
            assert f"{OPTION_CASE}:conf" in g.files and f"{OPTION_CASE}:summary" in g.files, model


@pytest.mark.parametrize("model", MODELS)
def test_views_equal_live_ultralytics(model, predictors, bgr):
    """Where torch and Ultralytics are installed: the same comparisons against ``YOLO(onnx).predict``
    run now, plus ``summary()`` and ``to_json(schema="ultralytics")`` against Ultralytics' own."""
    pytest.importorskip("torch")
    ultralytics = pytest.importorskip("ultralytics")
    import json
    import sys

    sys.path.insert(0, str(HERE))
    from make_goldens import MODELS as SPEC
    from make_goldens import store

    task, imgsz = SPEC[model]
    yolo = ultralytics.YOLO(str(HERE / "models" / f"{model}.onnx"), task=task)
    p = predictors(model)
    for key, photo, options in cases(model):
        img = bgr(photo)
        kwargs = {"conf": options.get("conf", 0.25), "iou": options.get("iou", 0.7), "max_det": options.get("max_det", 300),
                  "agnostic_nms": options.get("agnostic", False), **({"retina_masks": True} if task == "segment" else {})}
        theirs = yolo.predict(img, imgsz=imgsz, verbose=False, device="cpu", **kwargs)[0]
        want: dict = {}
        store(want, key, task, theirs)
        ours = p.predict(img, **options)
        if task == "classify":
            _check_probs(ours, want, key)
        else:
            assert ours.class_id.tolist() == want[f"{key}:cls"].tolist(), key
            _check_boxes(ours, want, key, task)
            _check_task_arrays(ours, want, key, task)
        atol = 2e-4 if task == "obb" else 0.0
        assert_tree_close(ours.summary(), theirs.summary(), atol, key)
        assert_tree_close(ours.summary(normalize=True, decimals=3), theirs.summary(normalize=True, decimals=3), atol, key)
        assert_tree_close(json.loads(ours.to_json(schema="ultralytics")), json.loads(theirs.to_json()), atol, key)
