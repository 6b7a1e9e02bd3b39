"""Optimisation profiles: computed from the model's inputs, or given and checked (no GPU)."""

from __future__ import annotations

import pytest

import modelserve as ms
from modelserve.engines._onnxinfo import OnnxTensor, read_onnx_info
from modelserve.engines.tensorrt.profiles import check_profile, profile_shapes

from .trt_fakes import F32

DYN = OnnxTensor("images", F32, ("batch", 3, "height", "width"))


def test_profile_for_the_real_detector(detector_path, fixed_detector_path):
    info = read_onnx_info(detector_path)
    assert profile_shapes(info.inputs, imgsz=320, max_batch=32, opt_batch=8) == {
        "images": ((1, 3, 32, 32), (8, 3, 320, 320), (32, 3, 320, 320))
    }
    fixed = read_onnx_info(fixed_detector_path)
    assert profile_shapes(fixed.inputs) == {"images": ((1, 3, 640, 640),) * 3}


@pytest.mark.parametrize(
    "tensor, kwargs, expected",
    [
        # the default covers the micro-batcher's default max_batch_size (32), optimum 8
        (DYN, {"imgsz": 640}, ((1, 3, 32, 32), (8, 3, 640, 640), (32, 3, 640, 640))),
        (DYN, {"imgsz": (300, 500), "stride": 32}, ((1, 3, 32, 32), (8, 3, 320, 512), (32, 3, 320, 512))),
        (DYN, {"imgsz": 640, "min_imgsz": 320}, ((1, 3, 320, 320), (8, 3, 640, 640), (32, 3, 640, 640))),
        (DYN, {"imgsz": 320, "max_batch": 4}, ((1, 3, 32, 32), (4, 3, 320, 320), (4, 3, 320, 320))),  # opt <= max
        (DYN, {"imgsz": 320, "max_batch": 64, "opt_batch": 1}, ((1, 3, 32, 32), (1, 3, 320, 320), (64, 3, 320, 320))),
        (OnnxTensor("images", F32, (4, 3, "h", "w")), {"imgsz": 64}, ((4, 3, 32, 32), (4, 3, 64, 64), (4, 3, 64, 64))),
        (OnnxTensor("images", F32, ("b", 3, 640, 640)), {"max_batch": 16, "opt_batch": 16},
         ((1, 3, 640, 640), (16, 3, 640, 640), (16, 3, 640, 640))),
    ],
)
def test_profile_shapes(tensor, kwargs, expected):
    assert profile_shapes([tensor], **kwargs)["images"] == expected


@pytest.mark.parametrize(
    "tensor, kwargs, match",
    [
        (OnnxTensor("tokens", F32, ("b", "seq")), {}, "cannot infer an optimisation profile"),
        (OnnxTensor("x", F32, ("b", "c", "h", "w")), {}, "cannot infer"),
        (DYN, {"max_batch": 0}, "max_batch"),
        (DYN, {"opt_batch": 9, "max_batch": 8}, "opt_batch"),
        (DYN, {"opt_batch": 33}, r"opt_batch \(33\) must be <= max_batch \(32\)"),
        (DYN, {"imgsz": (0, 320)}, "imgsz"),
        (DYN, {"imgsz": 64, "min_imgsz": 128}, "must not exceed"),
    ],
)
def test_profile_errors(tensor, kwargs, match):
    with pytest.raises(ms.InvalidInputError, match=match):
        profile_shapes([tensor], **kwargs)


def test_explicit_profile_is_checked():
    good = {"images": ((1, 3, 64, 64), (2, 3, 320, 320), (4, 3, 320, 320))}
    assert check_profile(good, [DYN]) == good
    with pytest.raises(ms.InvalidInputError, match="exactly the inputs"):
        check_profile({"x": good["images"]}, [DYN])
    with pytest.raises(ms.InvalidInputError, match="min <= opt <= max"):
        check_profile({"images": ((1, 3, 64, 64), (8, 3, 64, 64), (4, 3, 64, 64))}, [DYN])


@pytest.mark.parametrize(
    "triple",
    [
        ("1364", (2, 3, 320, 320), (4, 3, 320, 320)),  # a string is no shape: not (1, 3, 6, 4)
        ((1, 3, 64.5, 64), (2, 3, 320, 320), (4, 3, 320, 320)),  # nor is 64.5 a dimension
        ((1, 3, 64, 64), (2, 3, 320, 320)),  # two shapes
        5,
    ],
)
def test_explicit_profile_needs_three_int_shapes(triple):
    with pytest.raises(ms.InvalidInputError, match=r"must be \(min_shape, opt_shape, max_shape\) of ints"):
        check_profile({"images": triple}, [DYN])
