"""The ``yolov5`` layout against the YOLOv5 repository's own code (the ``yolov5`` 7.0.14 package).

``tests/goldens/families/make_yolov5.py`` built a YOLOv5 architecture with seeded random weights
(``yolov5-tiny.onnx``, exported as YOLOv5's ``export.py`` does: ``[1, 6300, 5+5]``, no metadata)
and ran YOLOv5's own ``letterbox``, ONNX Runtime, ``non_max_suppression`` and ``scale_boxes`` on
real photos with several option sets. Here modelserve's decode on the same raw outputs must give
the same rows bit for bit, and the whole ``predict`` from the file must give the same detections.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import modelserve as ms
from modelserve._letterbox import scale_with
from modelserve.tasks.yolov5 import objectness_nms, yolov5_scale_row
from tests.assets import photo

HERE = Path(__file__).resolve().parents[1] / "goldens" / "families"
META = json.loads((HERE / "yolov5.json").read_text())
GOLDEN = np.load(HERE / "yolov5.npz")
MODEL = HERE / "yolov5-tiny.onnx"
PHOTOS = sorted(META["photos"])
OPTIONS = sorted(META["options"])


def _kwargs(key: str) -> dict:
    o = META["options"][key]
    return {"conf": o["conf_thres"], "iou": o["iou_thres"], "max_det": o["max_det"], "classes": o["classes"],
            "agnostic": o["agnostic"], "multi_label": o["multi_label"]}


@pytest.fixture(scope="module")
def predictor():
    with ms.load(MODEL) as p:
        yield p


def test_the_goldens_exercise_nms():
    counts = {key: sum(len(GOLDEN[f"nms:{key}:{p}"]) for p in PHOTOS) for key in OPTIONS}
    assert min(counts.values()) >= 3 and counts["default"] > counts["agnostic"] > counts["maxdet"]
    assert counts["multi_label"] > counts["default"]


@pytest.mark.parametrize("key", OPTIONS)
@pytest.mark.parametrize("name", PHOTOS)
def test_decode_equals_yolov5s_non_max_suppression(name, key):
    kw = _kwargs(key)
    classes = None if kw["classes"] is None else np.asarray(kw["classes"], np.int64)
    got = objectness_nms(GOLDEN[f"raw:{name}"][0], kw["conf"], kw["iou"], kw["max_det"], classes, kw["agnostic"],
                         kw["multi_label"])
    np.testing.assert_array_equal(got, GOLDEN[f"nms:{key}:{name}"])


def test_the_file_is_recognised_with_yolov5s_defaults(predictor):
    assert (predictor.layout, len(predictor.names), predictor.imgsz) == ("yolov5", 5, (320, 320))
    o = predictor.options
    want = META["nms_defaults"]
    assert (o.conf, o.iou, o.max_det, o.agnostic, o.multi_label) == (
        want["conf_thres"], want["iou_thres"], want["max_det"], want["agnostic"], want["multi_label"])


@pytest.mark.parametrize("key", OPTIONS)
def test_predict_equals_yolov5s_detections(predictor, key):
    kw = {k: v for k, v in _kwargs(key).items()}
    results = predictor.predict([str(photo(n)) for n in PHOTOS], **kw)
    for name, r in zip(PHOTOS, results):
        want = GOLDEN[f"det:{key}:{name}"]
        assert r.class_id.tolist() == want[:, 5].astype(np.int64).tolist(), (name, key)
        np.testing.assert_allclose(r.confidence, want[:, 4], atol=1e-6, err_msg=f"{name} {key}")
        np.testing.assert_allclose(r.xyxy, want[:, :4], atol=1e-3, err_msg=f"{name} {key}")


def _scale_boxes(boxes: np.ndarray, tensor_hw, source_hw) -> np.ndarray:
    """YOLOv5's ``scale_boxes`` (``utils/general.py``) in float32: one gain, unrounded padding, clip."""
    gain = min(tensor_hw[0] / source_hw[0], tensor_hw[1] / source_hw[1])
    pad = (tensor_hw[1] - source_hw[1] * gain) / 2, (tensor_hw[0] - source_hw[0] * gain) / 2
    b = boxes.astype(np.float32).copy()
    b[:, [0, 2]] -= np.float32(pad[0])
    b[:, [1, 3]] -= np.float32(pad[1])
    b[:, :4] /= np.float32(gain)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, source_hw[1])
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, source_hw[0])
    return b


@pytest.mark.parametrize("source_hw", [(1080, 810), (333, 500), (500, 333), (7, 1000), (481, 641)])
def test_boxes_map_back_with_yolov5s_unrounded_padding(source_hw):
    rng = np.random.default_rng(1)
    boxes = (rng.random((50, 4)) * 330 - 5).astype(np.float32)
    row = yolov5_scale_row((320, 320), source_hw)
    np.testing.assert_array_equal(scale_with(boxes.copy(), row), _scale_boxes(boxes, (320, 320), source_hw))
    if source_hw == (333, 500):  # pad 53.44: Ultralytics' scale_boxes rounds it to 53, YOLOv5's does not
        assert not np.array_equal(ms.ops.scale_boxes(boxes, (320, 320), source_hw),
                                  _scale_boxes(boxes, (320, 320), source_hw))


def test_predict_from_bytes_and_arrays_agree(predictor):
    path = photo("zidane.jpg")
    a = predictor.predict(path.read_bytes())
    b = predictor.predict(str(path))
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    assert len(a) == len(GOLDEN["det:default:zidane.jpg"])


# -- YOLOv7: its own NMS (reproduced in torch from its published source by make_yolov7.py) ----------

V7 = json.loads((HERE / "yolov7.json").read_text())
V7_GOLDEN = np.load(HERE / "yolov7.npz")


@pytest.mark.parametrize("tag", ["", "1cls:"])
@pytest.mark.parametrize("key", sorted(V7["options"]))
@pytest.mark.parametrize("name", V7["photos"])
def test_yolov7_decode_equals_its_non_max_suppression(name, key, tag):
    o = V7["options"][key]
    raw = GOLDEN[f"raw:{name}"][0]
    if tag:
        raw = np.ascontiguousarray(raw[:, :6])
    classes = None if o["classes"] is None else np.asarray(o["classes"], np.int64)
    got = objectness_nms(raw, o["conf_thres"], o["iou_thres"], 300, classes, o["agnostic"], o["multi_label"],
                         family="yolov7")
    np.testing.assert_array_equal(got, V7_GOLDEN[f"nms:{tag}{key}:{name}"])


def test_yolov7_and_yolov5_differ_where_their_code_does():
    raw = np.ascontiguousarray(GOLDEN["raw:zidane.jpg"][0][:, :6])  # one class
    v5 = objectness_nms(raw, 0.25, 0.45, 300, None, False, False, family="yolov5")
    v7 = objectness_nms(raw, 0.25, 0.45, 300, None, False, False, family="yolov7")
    assert len(v7) > len(v5) and v7[:, 4].max() > v5[:, 4].max()  # objectness alone vs obj x cls


def test_yolov5s_own_export_metadata_gives_names_not_the_ultralytics_layout(tmp_path, predictor):
    """YOLOv5's export.py writes ``stride`` and ``names`` into the ONNX file (not ``task``/``imgsz``,
    which only Ultralytics writes): the names are used and the layout is still read from the shape."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(MODEL))
    names = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 4: "airplane"}
    for key, value in {"stride": "32", "names": str(names)}.items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / "yolov5-exported.onnx"
    onnx.save(model, str(path))
    with ms.load(path) as p:
        assert (p.layout, p.names) == ("yolov5", names)
        a, b = p.predict(str(photo("bus.jpg"))), predictor.predict(str(photo("bus.jpg")))
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        assert a.class_names[:3] == [names[int(c)] for c in b.class_id[:3]]
