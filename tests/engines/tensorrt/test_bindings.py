"""Binding layout from TensorRT's named-tensor API, profiles per context, batch limits and feed
checks, on fake engines (no GPU)."""

from __future__ import annotations

import numpy as np
import pytest

import modelserve as ms
from modelserve.engines.tensorrt.bindings import (
    Binding,
    binding_layout,
    check_feed,
    identical_profiles,
    max_batch_of,
    unresolved_outputs,
)

from .trt_fakes import F32, FAKE_TRT, PROF, FakeContext, FakeEngine


def test_binding_layout_from_named_tensors():
    fake = FakeEngine([
        ("images", "IN", [-1, 3, -1, -1], "FLOAT"),
        ("scale", "IN", [1, 2], "FLOAT"),
        ("output0", "OUT", [-1, 22, -1], "FLOAT"),
        ("aux", "OUT", [1, 4], "HALF"),
    ], {"images": [PROF, ([1, 3, 32, 32], [1, 3, 64, 64], [2, 3, 64, 64])]})
    ins, outs = binding_layout(fake, FAKE_TRT)
    assert ins == [Binding("images", True, F32, (None, 3, None, None), ((1, 3, 32, 32), (8, 3, 320, 320), (32, 3, 320, 320))),
                   Binding("scale", True, F32, (1, 2), ((1, 2),) * 3)]  # a static input: its shape, no profile query
    assert outs == [Binding("output0", False, F32, (None, 22, None), None),
                    Binding("aux", False, np.dtype(np.float16), (1, 4), None)]
    ins1, _ = binding_layout(fake, FAKE_TRT, profile_index=1)
    assert ins1[0].profile == ((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 64, 64))


@pytest.mark.parametrize(
    "profiles, expected",
    [
        ([PROF], [0]),
        ([PROF, PROF, PROF], [0, 1, 2]),
        ([PROF, ([1, 3, 32, 32], [1, 3, 64, 64], [2, 3, 64, 64]), PROF], [0, 2]),  # a different profile is not used
    ],
)
def test_identical_profiles_give_one_per_context(profiles, expected):
    fake = FakeEngine([("images", "IN", [-1, 3, -1, -1], "FLOAT"), ("out", "OUT", [-1, 5], "FLOAT")],
                       {"images": profiles})
    ins, _ = binding_layout(fake, FAKE_TRT)
    assert identical_profiles(fake, ins) == expected


def test_static_engines_share_profile_zero():
    fake = FakeEngine([("images", "IN", [1, 3, 640, 640], "FLOAT"), ("out", "OUT", [1, 5], "FLOAT")])
    ins, _ = binding_layout(fake, FAKE_TRT)
    assert identical_profiles(fake, ins) is None


@pytest.mark.parametrize(
    "bindings, expected",
    [
        ([Binding("images", True, F32, (None, 3, None, None), tuple(tuple(p) for p in PROF))], 32),
        ([Binding("images", True, F32, (1, 3, 640, 640), ((1, 3, 640, 640),) * 3)], 1),  # a static batch of 1
        ([Binding("a", True, F32, (None, 3), ((1, 3), (4, 3), (16, 3))),
          Binding("b", True, F32, (None, 2), ((1, 2), (2, 2), (8, 2)))], 8),  # what every input accepts
        ([], None),
        ([Binding("s", True, F32, (), ((), (), ()))], None),  # a scalar has no batch axis
    ],
)
def test_max_batch_of(bindings, expected):
    assert max_batch_of(bindings) == expected


def test_unresolved_outputs_finds_data_dependent_shapes():
    ins = [Binding("images", True, F32, (None, 3, None, None), tuple(tuple(p) for p in PROF))]
    outs = [Binding("output0", False, F32, (None, 22, None), None), Binding("nms", False, F32, (None, 6), None)]
    ctx = FakeContext(unknown={"nms"})
    assert unresolved_outputs(ctx, ins, outs) == ["nms"]
    assert ctx.shapes["images"] == (8, 3, 320, 320)  # probed at the profile's optimum
    assert unresolved_outputs(FakeContext(), ins, outs[:1]) == []


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.zeros((33, 3, 64, 64), np.float32), "outside the engine's profile"),
        (np.zeros((1, 3, 352, 64), np.float32), "outside the engine's profile"),
        (np.zeros((1, 3, 64, 64), np.float64), "expected float32"),
        (np.zeros((3, 64, 64), np.float32), "expected float32 with shape"),
    ],
)
def test_feeds_are_checked_against_the_profile(arr, match):
    b = Binding("images", True, F32, (None, 3, None, None), ((1, 3, 32, 32), (8, 3, 320, 320), (32, 3, 320, 320)))
    check_feed(b, np.zeros((32, 3, 320, 32), np.float32))  # the corners of the profile are fine
    with pytest.raises(ms.InvalidInputError, match=match):
        check_feed(b, arr)
