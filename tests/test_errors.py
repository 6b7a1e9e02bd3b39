"""Every bad input gets a clear, typed error from the one ModelserveError hierarchy."""

from __future__ import annotations

import numpy as np
import pytest

import modelserve as ms


def test_hierarchy_is_exported():
    for name in ("ModelLoadError", "EngineUnavailableError", "InvalidInputError", "QueueFullError",
                 "BatcherClosedError", "DeadlineExceededError", "RegistryError", "ModelNotFoundError",
                 "VersionConflictError", "IntegrityError", "PinMismatchError", "InvalidNameError"):
        assert issubclass(getattr(ms, name), ms.ModelserveError)
    assert issubclass(ms.InvalidInputError, ValueError)
    assert issubclass(ms.DeadlineExceededError, TimeoutError)
    assert issubclass(ms.IntegrityError, ms.RegistryError)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda tmp, model: tmp / "missing.onnx", "not found"),
        (lambda tmp, model: _write(tmp / "trunc.onnx", model.read_bytes()[:5000]), "cannot load"),
        (lambda tmp, model: _write(tmp / "empty.onnx", b""), "cannot load"),
        (lambda tmp, model: _write(tmp / "text.onnx", b"this is not a model\n" * 50), "cannot load"),
    ],
    ids=["missing", "truncated", "empty", "not-onnx"],
)
def test_bad_model_files(tmp_path, detector_path, make, match):
    with pytest.raises(ms.ModelLoadError, match=match):
        ms.load(make(tmp_path, detector_path))


def _write(path, data):
    path.write_bytes(data)
    return path


def test_model_that_is_not_a_detector(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "relu.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ms.ModelLoadError, match=r"\[batch, 3, height, width\]"):
        ms.load(path)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"device": "cuda"}, ms.EngineUnavailableError, "CUDAExecutionProvider"),
        ({"device": "cuda:1"}, ms.EngineUnavailableError, "CUDAExecutionProvider"),
        ({"device": "tpu"}, ms.InvalidInputError, "device must be"),
        ({"engine": "nosuchengine"}, ms.EngineUnavailableError, "unknown engine"),
        ({"engine_options": {"threads": 2}}, ms.InvalidInputError, "unknown onnxruntime options"),
        ({"engine_options": {"graph_optimization": "max"}}, ms.InvalidInputError, "graph_optimization"),
        ({"conf": 1.5}, ms.InvalidInputError, "conf must be"),
        ({"iou": -0.1}, ms.InvalidInputError, "iou must be"),
        ({"max_det": -1}, ms.InvalidInputError, "max_det"),
        ({"classes": ["face"]}, ms.InvalidInputError, "classes"),
        ({"channels": "bgra"}, ms.InvalidInputError, "channels"),
        ({"imgsz": (0, 320)}, ms.InvalidInputError, "imgsz"),
        ({"names": "person"}, ms.InvalidInputError, "names"),
    ],
)
def test_bad_load_arguments(detector_path, kwargs, exc, match):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers() and kwargs.get("device", "").startswith("cuda"):
        pytest.skip("this machine has CUDA")
    with pytest.raises(exc, match=match):
        ms.load(detector_path, **kwargs)


def test_source_of_wrong_type():
    with pytest.raises(ms.InvalidInputError, match="model path or an Engine"):
        ms.load(12)


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((64, 64, 3), np.float32), "must be uint8"),
        (np.zeros((64, 64, 2), np.uint8), "HxW, HxWx1, HxWx3 or HxWx4"),
        (np.zeros((2, 64, 64, 3), np.uint8), "HxW, HxWx1, HxWx3 or HxWx4"),
        (np.zeros((0, 64, 3), np.uint8), "non-zero size"),
        (np.zeros((64, 0), np.uint8), "non-zero size"),
        (b"\x89PNG\r\n\x1a\n garbage", "cannot decode"),
        (b"", "0 bytes"),
        ("/nonexistent/photo.jpg", "not found"),
        (12345, "must be a path, bytes"),
        (None, "must be a path, bytes"),
    ],
    ids=["float", "2-channels", "4d", "zero-height", "zero-width", "corrupt-bytes", "empty-bytes",
         "missing-file", "int", "none"],
)
def test_bad_images(predictor, image, match):
    with pytest.raises(ms.InvalidInputError, match=match):
        predictor.predict(image)


def test_truncated_jpeg(predictor, photo):
    data = photo("bus.jpg").read_bytes()
    with pytest.raises(ms.InvalidInputError, match="cannot decode"):
        predictor.predict(data[: len(data) // 3])


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (and holds no pixel data)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused(predictor, tmp_path):
    bomb = _png_header(100_000, 100_000)  # 10 gigapixels claimed by a few dozen bytes
    with pytest.raises(ms.InvalidInputError, match="refusing to decode"):
        predictor.predict(bomb)
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    with pytest.raises(ms.InvalidInputError, match="refusing to decode"):
        predictor.predict(str(path))


def test_directory_as_image(predictor, tmp_path):
    with pytest.raises(ms.InvalidInputError, match="directory"):
        predictor.predict(str(tmp_path))


def test_bad_image_in_a_batch_names_the_problem(predictor, bgr):
    with pytest.raises(ms.InvalidInputError, match="uint8"):
        predictor.predict([bgr("bus.jpg"), np.zeros((4, 4, 3), np.float64)])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"conf": 2}, "conf"), ({"iou": "high"}, "iou"), ({"max_det": 2.5}, "max_det"),
     ({"classes": 3.0}, "classes"), ({"agnostic": "yes"}, "agnostic")],
)
def test_bad_predict_overrides(predictor, bgr, kwargs, match):
    with pytest.raises(ms.InvalidInputError, match=match):
        predictor.predict(bgr("astronaut.png"), **kwargs)


def test_tiny_and_extreme_images_do_not_crash(predictor):
    for shape in [(1, 1, 3), (1, 4000, 3), (3000, 2, 3), (2, 2)]:
        r = predictor.predict(np.full(shape, 128, np.uint8))
        assert len(r) == 0 or r.xyxy.shape[1] == 4


def test_the_hierarchy_drawn_in_the_errors_module_names_every_error():
    """The tree in modelserve/_errors.py's docstring is the map users read: every ModelserveError
    subclass the package defines (the serving ones too) is drawn there, under its parent."""
    import modelserve._errors as errors_module
    import modelserve.serving.errors  # noqa: F401  (defines the serving errors)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("modelserve"):
                yield sub
                yield from subclasses(sub)

    tree = errors_module.__doc__
    for cls in subclasses(ms.ModelserveError):
        assert f"── {cls.__name__} " in tree, cls.__name__
