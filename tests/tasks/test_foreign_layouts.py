"""Detector outputs in other families' layouts, without Ultralytics metadata, are refused at load
with a ModelLoadError that names the layout, never read as thousands of classes (issue 17's
first guard: YOLOv5/YOLOv7 ``[B, N, 5+nc]`` and YOLOX ``[B, N, 5+nc]`` exports from their own
repositories; recognising them properly is still to come)."""

from __future__ import annotations

import numpy as np
import pytest

import modelserve as ms

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _constant_model(path, out: np.ndarray, hw=(640, 640), metadata=None):
    """A model whose one output is ``out`` (the input is read, times zero, so it is really an input)."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *hw])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out.shape))
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


@pytest.mark.parametrize(("shape", "family"), [((1, 25200, 85), "YOLOv5 classic, 80 classes"),
                                               ((1, 3549, 6), "YOLOX at 416, 1 class (ddddocr's detector)")])
def test_rows_layouts_without_metadata_are_refused_at_load(tmp_path, shape, family):
    rng = np.random.default_rng(0)
    out = rng.random(shape).astype(np.float32)
    out[..., :4] *= 640
    path = _constant_model(tmp_path / "m.onnx", out, hw=(640, 640) if shape[1] == 25200 else (416, 416))
    with pytest.raises(ms.ModelLoadError, match=r"YOLOv5/YOLOv7/YOLOX.*not read without metadata") as info:
        ms.load(path)
    assert f"{shape[1]} boxes" in str(info.value), family


def test_an_ultralytics_layout_without_metadata_still_loads(tmp_path):
    out = np.zeros((1, 84, 8400), np.float32)  # [B, 4+80, anchors]
    with ms.load(_constant_model(tmp_path / "m.onnx", out)) as p:
        assert len(p.names) == 80
        assert len(p.predict(np.zeros((640, 640, 3), np.uint8))) == 0
