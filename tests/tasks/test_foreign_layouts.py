"""Detector layouts without Ultralytics metadata: recognised from the output's shape where the shape
settles it, stated with ``layout=`` where it does not, and refused at load (never guessed) when it
could be read two ways or fits none. Also the run-time sanity of the rows layouts: scores that are
not probabilities raise instead of answering.

The models here are one-node ONNX graphs whose output is a fixed array (real files, run by ONNX
Runtime); the families' decode is checked exactly against their own code in ``test_yolov5.py`` and ``test_yolox.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import modelserve as ms

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

IMAGE = np.full((480, 640, 3), 90, np.uint8)


def _constant_model(path, out: np.ndarray, hw=(640, 640), metadata=None, out_shape=None, in_shape=None):
    """A model whose one output is ``out`` (the input is read, times zero, so it is really an input)."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, in_shape or [1, 3, *hw])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape or list(out.shape))
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(out)),
             helper.make_node("ReduceSum", ["images"], ["s"], keepdims=0),
             helper.make_node("Mul", ["s", "zero"], ["sz"]),
             helper.make_node("Add", ["c", "sz"], ["output0"])]
    graph = helper.make_graph(nodes, "m", [x], [y], initializer=[numpy_helper.from_array(np.float32(0), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def _rows(n: int, cols: int, seed: int = 0, size: float = 640) -> np.ndarray:
    """Plausible decoded rows: boxes in the input, objectness and class scores in [0, 1]."""
    rng = np.random.default_rng(seed)
    out = rng.random((1, n, cols)).astype(np.float32)
    out[..., :2] *= size
    out[..., 2:4] = out[..., 2:4] * size / 4 + 2
    return out


def test_yolov5_rows_are_recognised_from_three_anchors_per_cell(tmp_path):
    out = _rows(25200, 85)  # 3 x (80^2 + 40^2 + 20^2) rows at 640, 80 classes
    with ms.load(_constant_model(tmp_path / "m.onnx", out)) as p:
        assert (p.layout, len(p.names)) == ("yolov5", 80)
        assert (p.options.conf, p.options.iou, p.options.max_det) == (0.25, 0.45, 1000)  # detect.py's
        r = p.predict(IMAGE)
        assert 0 < len(r) <= 1000 and r.confidence.max() <= 1
        assert (r.xyxy[:, [0, 2]] <= 640).all() and (r.xyxy[:, [1, 3]] <= 480).all()


def test_p6_yolov5_rows_are_recognised(tmp_path):
    out = _rows(3 * (80 * 80 + 40 * 40 + 20 * 20 + 10 * 10), 8)  # strides 8..64 at 640, 3 classes
    with ms.load(_constant_model(tmp_path / "m.onnx", out)) as p:
        assert (p.layout, len(p.names)) == ("yolov5", 3)


def test_one_grid_cell_per_row_needs_layout(tmp_path):
    out = _rows(3549, 6, size=1)  # YOLOX at 416 with one class: raw or decoded cannot be told apart
    path = _constant_model(tmp_path / "m.onnx", out, hw=(416, 416))
    with pytest.raises(ms.ModelLoadError, match=r"one per grid cell.*layout='yolox'.*layout='yolov5'"):
        ms.load(path)
    with ms.load(path, layout="yolox") as p:
        assert (p.layout, len(p.names), p.options.conf, p.options.agnostic) == ("yolox", 1, 0.1, True)
        assert len(p.predict(IMAGE)) > 0


def test_one_class_yolov5_or_yolov7_rows_need_layout(tmp_path):
    path = _constant_model(tmp_path / "m.onnx", _rows(25200, 6))
    with pytest.raises(ms.ModelLoadError, match=r"one class.*layout='yolov5'.*layout='yolov7'"):
        ms.load(path)
    with ms.load(path, layout="yolov7") as p7, ms.load(path, layout="yolov5") as p5:
        r7, r5 = p7.predict(IMAGE), p5.predict(IMAGE)
        assert (p7.layout, p5.layout) == ("yolov7", "yolov5")
        assert p7.options.max_det == 300
        # YOLOv7 scores one class by objectness alone, YOLOv5 by objectness x class score
        assert r7.confidence.max() > r5.confidence.max()


def test_end_to_end_rows_need_names_and_are_then_read(tmp_path):
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0] = [10, 20, 110, 220, 0.9, 2]
    rows[0, 1] = [50, 50, 60, 60, 0.1, 1]
    path = _constant_model(tmp_path / "m.onnx", rows)
    with pytest.raises(ms.ModelLoadError, match="names="):
        ms.load(path)
    with ms.load(path, names=["a", "b", "c"]) as p:
        r = p.predict(np.zeros((640, 640, 3), np.uint8))
        assert p.layout == "end2end"
        assert r.class_id.tolist() == [2] and r.xyxy.tolist() == [[10, 20, 110, 220]]


def test_ultralytics_layouts_without_metadata_still_load(tmp_path):
    with ms.load(_constant_model(tmp_path / "a.onnx", np.zeros((1, 84, 8400), np.float32))) as p:
        assert (p.layout, len(p.names)) == ("ultralytics", 80)
        assert len(p.predict(np.zeros((640, 640, 3), np.uint8))) == 0
    dynamic = _constant_model(tmp_path / "b.onnx", np.zeros((1, 84, 8400), np.float32), out_shape=[1, 84, "n"])
    with ms.load(dynamic) as p:
        assert (p.layout, len(p.names)) == ("ultralytics", 80)


@pytest.mark.parametrize(("in_shape", "n", "match"), [
    ([1, 3, "h", "w"], 25200, "dynamic size"),  # a dynamic input has no grid to compare rows with
    (None, 1000, "fits no known layout"),
])
def test_shapes_that_fit_no_layout_are_refused(tmp_path, in_shape, n, match):
    path = _constant_model(tmp_path / "m.onnx", _rows(n, 85), in_shape=in_shape)
    with pytest.raises(ms.ModelLoadError, match=match):
        ms.load(path)


def test_a_stated_layout_must_fit_the_output(tmp_path):
    path = _constant_model(tmp_path / "m.onnx", np.zeros((1, 84, 8400), np.float32))
    with pytest.raises(ms.ModelLoadError, match=r"yolov5 output \[batch, rows, 5\+80"):
        ms.load(path, layout="yolov5", names=[str(i) for i in range(80)])
    with pytest.raises(ms.InvalidInputError, match="layout must be one of"):
        ms.load(path, layout="yolov8")
    with pytest.raises(ms.InvalidInputError, match="detector's layout"):
        ms.load(path, layout="yolox", task="pose", names=["a"])


def test_yolox_rows_must_match_the_input_grid(tmp_path):
    path = _constant_model(tmp_path / "m.onnx", _rows(3549, 6, size=1), hw=(640, 640))
    with pytest.raises(ms.ModelLoadError, match="not YOLOX's raw head for this input"):
        ms.load(path, layout="yolox")  # at load: the input is fixed


def test_yolox_keeps_every_box_by_default_as_yolox_does(tmp_path):
    out = _rows(8400, 6, size=1)
    with ms.load(_constant_model(tmp_path / "m.onnx", out), layout="yolox") as p:
        assert len(p.predict(IMAGE, conf=0.0)) > 300  # no max_det cap unless asked
        assert len(p.predict(IMAGE, conf=0.0, max_det=5)) == 5


def test_a_rows_model_with_a_tiny_input_and_many_classes_is_not_read_channels_first(tmp_path):
    out = _rows(3 * (8 * 8 + 4 * 4 + 2 * 2), 605, size=64)  # [1, 252, 605]: YOLOv5 at 64x64, 600 classes
    with ms.load(_constant_model(tmp_path / "m.onnx", out, hw=(64, 64))) as p:
        assert (p.layout, len(p.names)) == ("yolov5", 600)


def test_one_class_rows_with_yolov5s_export_metadata_are_yolov5(tmp_path):
    path = _constant_model(tmp_path / "m.onnx", _rows(25200, 6), metadata={"stride": "32", "names": "{0: 'face'}"})
    with ms.load(path) as p:
        assert (p.layout, p.names) == ("yolov5", {0: "face"})


def test_a_stated_rows_layout_needs_one_output(tmp_path):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("a", "b")]
    nodes = [helper.make_node("Identity", ["images"], ["a"]), helper.make_node("Identity", ["images"], ["b"])]
    model = helper.make_model(helper.make_graph(nodes, "m", [x], outs), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(ms.ModelLoadError, match=r"layout='yolov5' reads one output.*has 2"):
        ms.load(tmp_path / "m.onnx", layout="yolov5", names=["a"])


def test_multi_label_is_only_for_the_yolov5_family(tmp_path):
    path = _constant_model(tmp_path / "m.onnx", np.zeros((1, 84, 8400), np.float32))
    with pytest.raises(ms.InvalidInputError, match="multi_label"):
        ms.load(path, multi_label=True)
    with ms.load(path) as p, pytest.raises(ms.InvalidInputError, match="multi_label"):
        p.predict(IMAGE, multi_label=True)


@pytest.mark.parametrize(("layout", "column", "value", "what"), [
    ("yolov5", 4, 639.99, "objectness"), ("yolov5", 7, 3.5, "class score"), ("yolov5", 4, np.nan, "objectness"),
    ("yolox", 4, 2.0, "objectness"), ("yolox", 5, -0.5, "class score"),
])
def test_scores_that_are_not_probabilities_raise(tmp_path, layout, column, value, what):
    n, hw = (25200, (640, 640)) if layout == "yolov5" else (8400, (640, 640))
    out = _rows(n, 8, size=640 if layout == "yolov5" else 1)
    out[0, :50, column] = value
    out[0, :50, 4] = np.maximum(out[0, :50, 4], 0.9) if column != 4 else value
    with ms.load(_constant_model(tmp_path / "m.onnx", out, hw=hw), layout=layout) as p:
        with pytest.raises(ms.ModelLoadError, match=f"{what} of"):
            p.predict(IMAGE)
