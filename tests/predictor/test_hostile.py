"""The Predictor and ``load`` under hostile models, arguments and images (issue 10).

Every test feeds an input that an earlier version got wrong with no error, crashed on, hung on, or
answered with an untyped exception, and checks the typed error or the right answer instead:
models whose output batch does not follow the input batch, models of other tasks, absurd sizes,
size arguments that parse wrongly (``imgsz="64"`` became ``(6, 4)``), FIFOs given as paths,
closed or undecodable PIL images, and numpy scalars as thresholds."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

import modelserve as ms

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

NC = 3
NAMES = {i: f"c{i}" for i in range(NC)}


# ------------------------------------------------------------------ small real ONNX models


def _save(path, nodes, inits, out_dims, meta, in_batch="batch"):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [in_batch, 3, "height", "width"])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_dims)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = {"names": repr(NAMES), "stride": "32", "imgsz": "[64, 64]", "task": "detect", **meta}
    helper.set_model_props(model, {k: v for k, v in props.items() if v is not None})
    onnx.save(model, str(path))
    return path


def _mean_nodes(first_only: bool):
    """m: the mean pixel of each image ([B, 1, 1]), or of the first image only ([1, 1, 1])."""
    nodes = []
    src = "images"
    if first_only:
        nodes.append(helper.make_node("Slice", ["images", "s0", "s1", "s_axis"], ["first"]))
        src = "first"
    nodes.append(helper.make_node("ReduceMean", [src], ["m4"], axes=[1, 2, 3], keepdims=1))
    nodes.append(helper.make_node("Reshape", ["m4", "shape_b11"], ["m"]))
    inits = [("s0", np.array([0], np.int64)), ("s1", np.array([1], np.int64)), ("s_axis", np.array([0], np.int64)),
             ("shape_b11", np.array([-1, 1, 1], np.int64))]
    return nodes, inits


def end2end_model(path, *, first_only: bool, out_batch, n_rows: int = 20):
    """An end-to-end detector: rows (x1, y1, x2, y2, conf, class) whose confidences are the mean
    pixel (0..1) times a per-row factor, so different images give different detections."""
    nodes, inits = _mean_nodes(first_only)
    i = np.arange(n_rows, dtype=np.float32)
    boxes = np.stack([i, i, i + 10, i + 20], 1)[None]  # [1, n, 4] tensor pixels
    factor = np.linspace(0.2, 1.0, n_rows, dtype=np.float32)[None, :, None]  # [1, n, 1]
    cls = (i % NC)[None, :, None].astype(np.float32)
    nodes += [
        helper.make_node("Mul", ["m", "factor"], ["conf"]),  # [B, n, 1]
        helper.make_node("Shape", ["conf"], ["conf_shape"]),
        helper.make_node("Slice", ["conf_shape", "s0", "s1", "s0"], ["bdim"]),
        helper.make_node("Concat", ["bdim", "tail4"], ["bshape4"], axis=0),
        helper.make_node("Expand", ["boxes", "bshape4"], ["boxes_b"]),
        helper.make_node("Concat", ["bdim", "tail1"], ["bshape1"], axis=0),
        helper.make_node("Expand", ["cls", "bshape1"], ["cls_b"]),
        helper.make_node("Concat", ["boxes_b", "conf", "cls_b"], ["output0"], axis=2),
    ]
    inits += [("factor", factor), ("boxes", boxes), ("cls", cls),
              ("tail4", np.array([n_rows, 4], np.int64)), ("tail1", np.array([n_rows, 1], np.int64))]
    return _save(path, nodes, inits, [out_batch, n_rows, 6], {"end2end": "True"})


def const_model(path, out_dims, meta=None, *, first_only=False, in_batch="batch"):
    """A model whose only output is the mean pixel broadcast to ``out_dims`` (its layout is what
    these tests are about, not its values)."""
    nodes, inits = _mean_nodes(first_only)
    rank = len(out_dims)
    nodes = nodes[:-1] + [helper.make_node("Reshape", ["m4", "shape_r"], ["m"]),
                          helper.make_node("Expand", ["m", "target"], ["output0"])]
    inits = inits[:-1] + [("shape_r", np.array([-1] + [1] * (rank - 1), np.int64)),
                          ("target", np.array([1] + [d if isinstance(d, int) else 1 for d in out_dims[1:]], np.int64))]
    return _save(path, nodes, inits, out_dims, meta or {}, in_batch=in_batch)


def _images():
    rng = np.random.default_rng(0)
    return [np.full((64, 64, 3), v, np.uint8) for v in (250, 120, 40)] + [rng.integers(0, 255, (48, 80, 3), np.uint8)]


# ------------------------------------------------------------------ output batch != input batch (item 5)


def test_output_batch_fixed_at_one_runs_one_image_at_a_time(tmp_path):
    p = ms.load(end2end_model(tmp_path / "e2e.onnx", first_only=True, out_batch=1))
    images = _images()
    alone = [p.predict(img, conf=0.1) for img in images]
    assert len({len(r) for r in alone}) > 1  # the images really give different answers
    for batch in (images[:3], images):  # same sizes, and mixed sizes
        together = p.predict(batch, conf=0.1)
        assert len(together) == len(batch)
        for a, b in zip(alone, together):
            np.testing.assert_array_equal(a.xyxy, b.xyxy)
            np.testing.assert_array_equal(a.confidence, b.confidence)
            np.testing.assert_array_equal(a.class_id, b.class_id)


def test_output_batch_fixed_at_one_with_batching(tmp_path):
    with ms.load(end2end_model(tmp_path / "e2e.onnx", first_only=True, out_batch=1),
                 batching=ms.Batching(max_batch_size=4, max_delay_ms=5)) as p:
        images = _images()[:3]
        alone = [p.predict(img, conf=0.1) for img in images]
        results: list = [None] * 3
        threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, p.predict(images[k], conf=0.1)))
                   for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for a, b in zip(alone, results):
            np.testing.assert_array_equal(a.confidence, b.confidence)


@pytest.mark.parametrize("kind", ["end2end", "yolo"])
def test_output_batch_that_silently_ignores_the_batch_is_an_error(tmp_path, kind):
    """The declared output batch is dynamic, so only the run can tell: 3 images in, 1 answer out."""
    if kind == "end2end":
        path = end2end_model(tmp_path / "m.onnx", first_only=True, out_batch="batch")
    else:
        path = const_model(tmp_path / "m.onnx", ["batch", 4 + NC, 84], first_only=True)
    p = ms.load(path)
    images = _images()
    assert len(p.predict(images[0], conf=0.0)) >= 0  # one image: one answer, fine
    for batch in (images[:3], images):
        with pytest.raises(ms.ModelLoadError, match="answered a batch of"):
            p.predict(batch)


def test_output_batch_fixed_above_one_with_dynamic_input_is_refused(tmp_path):
    with pytest.raises(ms.ModelLoadError, match="output batch is fixed at 2"):
        ms.load(const_model(tmp_path / "m.onnx", [2, 20, 6], {"end2end": "True"}))


# ------------------------------------------------------------------ layouts that fit no detector (item 15)


@pytest.mark.parametrize(
    "dims, meta, match",
    [
        (["batch", NC], {}, "classifier"),
        (["batch", 4 + NC, 20, 20], {}, r"\[batch, 4\+classes, boxes\]"),
        (["batch", 4 + NC + 32, 84], {}, "segmentation"),
        (["batch", 4 + NC + 51, 84], {}, r"4 \+ 54"),
        (["batch", 4 + NC, 84], {"task": "segment"}, "task 'segment'"),
        (["batch", 4 + NC, 84], {"task": "classify"}, "task 'classify'"),
        (["batch", 20, 7], {"end2end": "True"}, r"\[batch, N, 6\]"),
    ],
    ids=["classifier", "4d", "segment-head", "pose-head", "task-segment", "task-classify", "end2end-7"],
)
def test_models_that_are_not_detectors_are_refused_at_load(tmp_path, dims, meta, match):
    with pytest.raises(ms.ModelLoadError, match=match):
        ms.load(const_model(tmp_path / "m.onnx", dims, meta))


def test_names_must_cover_every_class(tmp_path, detector_path):
    with pytest.raises(ms.ModelLoadError, match="4\\+3"):
        ms.load(detector_path, names=["a", "b", "c"])


def test_end2end_rows_with_bad_classes_or_scores_are_an_error(tmp_path):
    """Rows whose class column is not a class id of the model, or whose confidence is not a
    score, raise instead of passing through as detections."""
    class Rows(ms.Engine):
        name = "rows-test"

        def __init__(self, rows):
            self.rows = np.asarray(rows, np.float32)
            self.inputs = (ms.TensorSpec("images", (None, 3, None, None), np.dtype(np.float32)),)
            self.outputs = (ms.TensorSpec("output0", (None, len(self.rows), 6), np.dtype(np.float32)),)
            self.metadata = {"names": repr(NAMES), "end2end": "True", "imgsz": "[64, 64]"}
            self.device = "cpu"

        def run(self, feeds):
            return [np.repeat(self.rows[None], len(feeds["images"]), 0)]

    img = np.zeros((64, 64, 3), np.uint8)
    good = ms.load(Rows([[1, 2, 30, 40, 0.9, 2]])).predict(img)
    assert good.class_id.tolist() == [2]
    for row, match in [([1, 2, 30, 40, 0.9, 110], "class id 110"), ([1, 2, 30, 40, 0.9, 1.5], "class id 1.5"),
                       ([1, 2, 30, 40, 640.0, 0], "confidence of 640"), ([1, 2, 30, 40, np.inf, 0], "confidence")]:
        with pytest.raises(ms.ModelLoadError, match=match):
            ms.load(Rows([row])).predict(img)


def test_raw_logit_scores_are_an_error(detector_path, bgr):
    class Logits(ms.Engine):
        name = "logits-test"

        def __init__(self, inner):
            self.inner, self.inputs, self.outputs = inner, inner.inputs, inner.outputs
            self.metadata, self.device = inner.metadata, "cpu"

        def run(self, feeds):
            raw = self.inner.run(feeds)[0].copy()
            raw[:, 4:] *= 100.0  # no longer sigmoid scores
            return [raw]

    with ms.load(detector_path) as real:
        with pytest.raises(ms.ModelLoadError, match="outside \\[0, 1\\]"):
            ms.load(Logits(real.engine)).predict(bgr("bus.jpg"))


# ------------------------------------------------------------------ sizes (items 7 and 13)


def _with_meta(src, dst, **meta):
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(meta)
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize(
    "imgsz, match",
    [("64", "of ints"), ("320", "of ints"), (True, "of ints"), ((320, 320.7), "of ints"), (320.0, "of ints"),
     ((320, 320, 3), "of ints"), ((), "of ints"), (float("nan"), "of ints"), (10**6, "at most 8192"),
     ((320, 9000), "at most 8192")],
    ids=["str64", "str320", "bool", "float-in-tuple", "float", "three", "empty", "nan", "1e6", "9000"],
)
def test_bad_imgsz_is_refused(detector_path, imgsz, match):
    with pytest.raises(ms.InvalidInputError, match=match):
        ms.load(detector_path, imgsz=imgsz)


def test_good_imgsz_forms(detector_path):
    assert ms.load(detector_path, imgsz=[256]).imgsz == (256, 256)
    assert ms.load(detector_path, imgsz=np.array([256, 320])).imgsz == (256, 320)
    assert ms.load(detector_path, imgsz=np.int64(300)).imgsz == (320, 320)  # rounded up to the stride
    assert ms.load(detector_path, imgsz=8192).imgsz == (8192, 8192)


@pytest.mark.parametrize(
    "meta, match",
    [({"imgsz": "[True, True]"}, "imgsz from metadata"), ({"imgsz": "[100000, 100000]"}, "at most 8192"),
     ({"imgsz": "'64'"}, "imgsz from metadata"), ({"imgsz": "[320, 320.5]"}, "imgsz from metadata"),
     ({"stride": "100000"}, "stride"), ({"stride": "0"}, "stride"), ({"stride": "nan"}, "stride"),
     ({"stride": "9" * 5000}, "stride"), ({"imgsz": "[8190, 8190]", "stride": "100"}, "MAX_IMGSZ")],
    ids=["bools", "huge", "str", "float", "stride-huge", "stride-0", "stride-nan", "stride-5000-digits",
         "rounded-beyond"],
)
def test_absurd_metadata_is_refused_at_load(tmp_path, detector_path, meta, match):
    with pytest.raises(ms.ModelLoadError, match=match):
        ms.load(_with_meta(detector_path, tmp_path / "m.onnx", **meta))


# ------------------------------------------------------------------ thresholds as numpy scalars (item 15)


def test_numpy_scalar_thresholds(predictor, bgr):
    img = bgr("bus.jpg")
    expected = predictor.predict(img, conf=0.3, iou=0.5)
    for conf, iou in [(np.float32(0.3), np.float32(0.5)), (np.float64(0.3), np.float16(0.5))]:
        got = predictor.predict(img, conf=conf, iou=iou)
        np.testing.assert_array_equal(got.xyxy, expected.xyxy)
    assert len(predictor.predict(img, max_det=np.int32(1))) == 1
    assert len(predictor.predict(img, max_det=10**30)) == len(predictor.predict(img))  # no limit
    for bad in ({"conf": np.float32("nan")}, {"conf": 10**400}, {"iou": np.bool_(True)}, {"max_det": np.float32(3)}):
        with pytest.raises(ms.InvalidInputError):
            predictor.predict(img, **bad)


# ------------------------------------------------------------------ paths that are not files (item 4)


def _no_hang(fn, timeout=10.0):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it has not returned in time."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"{fn} still blocked after {timeout} s")
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _release(fifo):
    try:  # a reader blocked on the FIFO (old behaviour) gets EOF and lets go
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def test_predict_on_a_fifo_path_does_not_hang(predictor, tmp_path):
    fifo = tmp_path / "frame.jpg"
    os.mkfifo(fifo)
    try:
        with pytest.raises(ms.InvalidInputError, match="FIFO"):
            _no_hang(lambda: predictor.predict(str(fifo)))
    finally:
        _release(fifo)


def test_predict_on_a_device_path(predictor):
    with pytest.raises(ms.InvalidInputError, match="character device"):
        _no_hang(lambda: predictor.predict("/dev/zero"))


def test_load_of_a_fifo_model_does_not_hang(tmp_path):
    fifo = tmp_path / "det.onnx"
    os.mkfifo(fifo)
    try:
        with pytest.raises(ms.ModelLoadError, match="FIFO"):
            _no_hang(lambda: ms.load(fifo))
    finally:
        _release(fifo)


# ------------------------------------------------------------------ images that fail to decode (item 13)


def test_closed_pil_image(predictor, photo):
    from PIL import Image

    img = Image.open(photo("bus.jpg"))
    img.load()
    img.close()
    with pytest.raises(ms.InvalidInputError, match="closed image"):
        predictor.predict(img)


@pytest.mark.parametrize("form", ["path", "bytes"])
def test_any_decoder_failure_is_typed_and_chained(predictor, photo, monkeypatch, form):
    """Importing Ultralytics replaces ``PIL.Image.open``; whatever a replaced decoder raises
    surfaces as InvalidInputError with the cause chained (a PNG: JPEGs are decoded by
    libjpeg-turbo, see tests/predictor/test_jpeg.py)."""
    from PIL import Image

    class Boom(RuntimeError):
        pass

    def broken(*args, **kwargs):
        raise Boom("a patched Image.open failed")

    monkeypatch.setattr(Image, "open", broken)
    source = str(photo("astronaut.png")) if form == "path" else photo("astronaut.png").read_bytes()
    with pytest.raises(ms.InvalidInputError, match="patched Image.open failed") as info:
        predictor.predict(source)
    assert isinstance(info.value.__cause__, Boom)


# ------------------------------------------------------------------ strict JSON (item 15)


def _strict(text):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_to_json_is_strict_json_with_non_finite_numbers():
    d = ms.Detections(np.array([[np.nan, 1, np.inf, -np.inf]], np.float32), np.array([0.5], np.float32),
                      np.array([0]), {0: "a"}, (10, 10), {"preprocess": float("nan")})
    out = _strict(d.to_json())
    assert out["detections"][0]["xyxy"] == [None, 1.0, None, None]
    assert out["speed"]["preprocess"] is None
    assert _strict(d.to_json(indent=2)) == out


@pytest.mark.parametrize("kwargs", [{"xyxy": [["a", 1, 2, 3]]}, {"xyxy": [[1, 2, 3]]}, {"class_id": ["x"]},
                                    {"confidence": [0.5, 0.6]}])
def test_detections_from_bad_arrays(kwargs):
    base = {"xyxy": [[1, 2, 3, 4]], "confidence": [0.5], "class_id": [0]}
    with pytest.raises(ms.InvalidInputError):
        ms.Detections(**{**base, **kwargs})
