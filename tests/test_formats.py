"""The model files Ultralytics' exports produce: what loads, and what is refused with how to export."""

from __future__ import annotations

import numpy as np
import pytest

import modelserve as ms


@pytest.mark.parametrize("name", ["yolo11n.pt", "best.PT", "weights.pth"])
def test_a_pytorch_checkpoint_says_how_to_export_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04 not a model modelserve can run")
    with pytest.raises(ms.ModelLoadError, match=r"PyTorch checkpoint.*yolo export model=.* format=onnx"):
        ms.load(path)


@pytest.mark.parametrize("name, fmt", [("m.torchscript", "TorchScript"), ("m_saved_model", "TensorFlow SavedModel"),
                                       ("m.tflite", "TensorFlow Lite"), ("m_ncnn_model", "NCNN")])
def test_other_export_formats_are_named(tmp_path, name, fmt):
    path = tmp_path / name
    if "." in name:
        path.write_bytes(b"\0" * 16)
    else:
        path.mkdir()
    with pytest.raises(ms.ModelLoadError, match=rf"{fmt} export, which no modelserve engine runs.*format=onnx"):
        ms.load(path)


@pytest.fixture(scope="module")
def openvino_export(detector_path, tmp_path_factory):
    """A folder laid out as `yolo export format=openvino` writes it: <stem>.xml, <stem>.bin, metadata.yaml."""
    ov = pytest.importorskip("openvino")
    folder = tmp_path_factory.mktemp("exports") / "detector_openvino_model"
    folder.mkdir()
    ov.save_model(ov.convert_model(str(detector_path)), str(folder / "detector.xml"), compress_to_fp16=False)
    (folder / "metadata.yaml").write_text("description: Ultralytics model\nstride: 32\ntask: detect\n")
    return folder


def test_an_openvino_export_folder_loads_as_its_xml(openvino_export, detector_path, bgr):
    img = bgr("bus.jpg")
    with ms.load(openvino_export) as folder, ms.load(openvino_export / "detector.xml") as xml, \
            ms.load(detector_path) as onnx:
        assert folder.engine.name == "openvino" and folder.task == "detect" and folder.names == onnx.names
        a, b, c = folder.predict(img), xml.predict(img), onnx.predict(img)
    assert len(a) and a.class_id.tolist() == b.class_id.tolist() == c.class_id.tolist()
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_allclose(a.xyxy, c.xyxy, atol=0.1)


def test_a_folder_that_is_no_openvino_export_is_refused(tmp_path, openvino_export):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ms.ModelLoadError, match="not an OpenVINO export.*found nothing"):
        ms.load(empty)
    two = tmp_path / "two"
    two.mkdir()
    for stem in ("a", "b"):
        (two / f"{stem}.xml").write_bytes((openvino_export / "detector.xml").read_bytes())
        (two / f"{stem}.bin").write_bytes(b"")
    with pytest.raises(ms.ModelLoadError, match=r"expected one <name>.xml.*found a.bin, a.xml, b.bin, b.xml"):
        ms.load(two)
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "m.xml").write_bytes(b"<net/>")
    with pytest.raises(ms.ModelLoadError, match="with its <name>.bin"):
        ms.load(lone)
