"""``modelserve.ops`` under hostile arguments (issue 10): sizes and strides that parsed silently
wrong or raised untyped errors, thresholds beyond float's range, and ``out`` buffers that overlap
the image they are computed from. Each case is the input an earlier version mishandled; the
kernels' bit-identical results for valid inputs are covered by the other ``test_ops_*`` files."""

from __future__ import annotations

import numpy as np
import pytest

import modelserve as ms
from modelserve import ops

IMG = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)


@pytest.mark.parametrize(
    "new_shape",
    ["64", "6", b"64", True, False, 64.0, (64, 64.5), (64, "64"), (True, 64), (64, 64, 64), (), [[64, 64]],
     float("nan"), None, np.array([[64, 64]])],
    ids=["str", "str1", "bytes", "true", "false", "float", "float-pair", "str-pair", "bool-pair", "triple", "empty",
         "nested", "nan", "none", "2d-array"],
)
def test_new_shape_must_be_ints(new_shape):
    with pytest.raises(ms.InvalidInputError, match="new_shape must be an int or \\(height, width\\) of ints"):
        ops.letterbox(IMG, new_shape)
    with pytest.raises(ms.InvalidInputError, match="new_shape"):
        ops.letterbox_geometry((48, 64), new_shape)


@pytest.mark.parametrize("new_shape, expect", [(64, (64, 64)), ([64], (64, 64)), ((32, 64), (32, 64)),
                                               (np.int32(32), (32, 32)), (np.array([32, 64]), (32, 64))])
def test_new_shape_good_forms(new_shape, expect):
    tensor, info = ops.letterbox(IMG, new_shape)
    assert info.output_hw == expect and tensor.shape == (3, *expect)


def test_new_shape_beyond_the_limit():
    with pytest.raises(ms.InvalidInputError, match=f"at most {ops.MAX_IMGSZ}"):
        ops.letterbox(IMG, 100_000)
    with pytest.raises(ms.InvalidInputError, match=f"at most {ops.MAX_IMGSZ}"):
        ops.letterbox(IMG, (32, ops.MAX_IMGSZ + 1))


@pytest.mark.parametrize("stride", [float("nan"), "a", "32", 32.0, 0, -32, True, None, 10**6],
                         ids=["nan", "a", "str32", "float", "zero", "negative", "bool", "none", "huge"])
def test_stride_must_be_an_int(stride):
    with pytest.raises(ms.InvalidInputError, match="stride must be an int"):
        ops.letterbox(IMG, 64, auto=True, stride=stride)
    with pytest.raises(ms.InvalidInputError, match="stride must be an int"):
        ops.letterbox_geometry((48, 64), 64, stride=stride)


@pytest.mark.parametrize("pad", ["114", 114.5, True, -1, 256, None])
def test_pad_value_must_be_a_byte(pad):
    with pytest.raises(ms.InvalidInputError, match="pad_value"):
        ops.letterbox(IMG, 64, pad_value=pad)


@pytest.mark.parametrize("hw", [(0, 10), (10, 0), ("48", 64), (48.0, 64), (48,), None])
def test_source_sizes_are_checked(hw):
    with pytest.raises(ms.InvalidInputError):
        ops.letterbox_geometry(hw, 64)
    with pytest.raises(ms.InvalidInputError):
        ops.scale_boxes(np.zeros((1, 4), np.float32), (64, 64), hw)
    with pytest.raises(ms.InvalidInputError):
        ops.scale_boxes(np.zeros((1, 4), np.float32), hw, (64, 64))


# ---------------------------------------------------------------- out overlapping the image (item 9)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_out_overlapping_the_image_is_refused(dtype):
    n = 3 * 64 * 64
    if dtype == np.uint8:
        buf = np.zeros(n + 3 * 48 * 64 * 2, np.uint8)
        image = buf[n // 2 : n // 2 + 48 * 64 * 3].reshape(48, 64, 3)  # inside the output tensor
        out = buf[:n].reshape(3, 64, 64)
    else:
        raw = np.zeros(n * 4, np.uint8)
        out = raw.view(np.float32).reshape(3, 64, 64)
        image = raw[100 : 100 + 48 * 64 * 3].reshape(48, 64, 3)
    image[...] = IMG
    before = image.copy()
    with pytest.raises(ms.InvalidInputError, match="overlap"):
        ops.letterbox(image, 64, out=out, dtype=dtype)
    np.testing.assert_array_equal(image, before)  # the input is untouched


def test_out_beside_the_image_in_one_buffer_is_fine():
    n = 3 * 64 * 64
    buf = np.zeros(n + 48 * 64 * 3, np.uint8)
    out = buf[:n].reshape(3, 64, 64)
    image = buf[n:].reshape(48, 64, 3)
    image[...] = IMG
    got, _ = ops.letterbox(image, 64, out=out, dtype=np.uint8)
    expected, _ = ops.letterbox(IMG, 64, dtype=np.uint8)
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------- thresholds (item 13)


def test_nms_threshold_beyond_float_range():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 9, 9]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    np.testing.assert_array_equal(ops.nms(boxes, scores, 10**400), [0, 1, 2])  # like +inf: nothing suppressed
    np.testing.assert_array_equal(ops.nms(boxes, scores, -(10**400)), [0])  # like -inf: everything suppressed
    np.testing.assert_array_equal(ops.batched_nms(boxes, scores, np.zeros(3, np.int64), 10**400), [0, 1, 2])
    with pytest.raises(ms.InvalidInputError, match="iou_threshold"):
        ops.nms(boxes, scores, "0.5")


@pytest.mark.parametrize("kwargs, match", [({"conf": 10**400}, "conf must be finite"), ({"iou": -(10**400)}, "iou"),
                                           ({"conf": True}, "conf"), ({"max_det": True}, "max_det")])
def test_postprocess_arguments_beyond_float_range(kwargs, match):
    with pytest.raises(ms.InvalidInputError, match=match):
        ops.yolo_postprocess(np.zeros((1, 6, 10), np.float32), **kwargs)


def test_postprocess_counts_beyond_any_limit():
    raw = np.zeros((1, 6, 10), np.float32)
    raw[0, 2:4] = 5
    raw[0, 4] = 0.9
    expected = ops.yolo_postprocess(raw)
    for kwargs in ({"max_det": 10**30}, {"max_nms": 10**30}, {"max_det": 2**63}):
        got = ops.yolo_postprocess(raw, **kwargs)
        np.testing.assert_array_equal(got[0], expected[0])
